//! `platform`: `up` (the default) runs the whole platform in this process; `migrate` applies
//! every service's migrations.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use platform_config::Env;
use platform_telemetry::TelemetryConfig;

#[derive(Parser)]
#[command(
    name = "platform",
    version,
    about = "The microservices platform in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway and every service (the default).
    Up,
    /// Apply every service's database migrations, then exit.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process().with_defaults([("LOG_FORMAT", "compact")]);
    let mut telemetry_env = env.reader();
    let telemetry = TelemetryConfig::from_env(&mut telemetry_env);
    if let Err(error) = telemetry_env.finish() {
        eprintln!("platform: {error}");
        return ExitCode::from(platform_http::service::EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("platform: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match platform_telemetry::init("platform", &telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("platform: {error}");
                return ExitCode::FAILURE;
            }
        };
        match cli.command.unwrap_or(Command::Up) {
            Command::Up => {
                let shutdown = platform_http::shutdown_on_signal();
                let running = match platform::up(&env, shutdown).await {
                    Ok(running) => running,
                    Err(error) => return fail(error),
                };
                println!("{}", platform::banner(&running));
                match running.wait().await {
                    Ok(()) => {
                        println!("stopped");
                        ExitCode::SUCCESS
                    }
                    Err(error) => {
                        eprintln!("platform: {error}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Migrate => match platform::migrate(&env).await {
                Ok(services) => {
                    for service in services {
                        println!("{service}: migrations applied");
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            },
        }
    })
}

fn fail(error: platform::PlatformError) -> ExitCode {
    eprintln!("platform: {error}");
    match error {
        platform::PlatformError::Config(_) => ExitCode::from(platform_http::service::EXIT_CONFIG),
        platform::PlatformError::Start { .. } => ExitCode::FAILURE,
    }
}
