//! The product service as a standalone process.

fn main() -> std::process::ExitCode {
    platform_http::run_main::<product_service::Application>()
}
