//! An OTLP/gRPC trace receiver that counts spans and drops them: the far end of span export
//! in `scripts/bench-tracing.sh`, so the benchmark measures the platform's cost of exporting,
//! not a collector's.
//!
//!   otlp_sink ADDR        (e.g. 127.0.0.1:18750); prints the spans received on SIGTERM/Ctrl-C

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into());
    let sink = match platform_testing::otlp::Collector::start_on(&addr, false).await {
        Ok(sink) => sink,
        Err(error) => {
            eprintln!("otlp_sink: cannot listen on {addr}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("otlp_sink: listening on {}", sink.endpoint);
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            eprintln!("otlp_sink: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("{}", sink.received());
    std::process::ExitCode::SUCCESS
}
