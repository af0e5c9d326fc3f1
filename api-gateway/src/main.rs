//! The API gateway as a standalone process.

platform_alloc::install!();

fn main() -> std::process::ExitCode {
    platform_http::run_main::<api_gateway::Application>()
}
