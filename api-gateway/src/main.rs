//! The API gateway as a standalone process.

fn main() -> std::process::ExitCode {
    platform_http::run_main::<api_gateway::Gateway>()
}
