//! The order service as a standalone process.

fn main() -> std::process::ExitCode {
    platform_http::run_main::<order_service::Application>()
}
