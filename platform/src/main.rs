//! `platform`: `up` (the default) runs the whole platform in this process; `migrate` applies
//! every service's migrations; `events dead-letters` and `events replay` operate on the bus.

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
    /// Operate on the event bus.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// List the events consumers gave up on.
    DeadLetters {
        /// At most this many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back for delivery.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all", "event_type"])))]
    Replay {
        /// One dead letter, by the id `dead-letters` shows.
        #[arg(long)]
        id: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        /// Every dead letter of this event type (e.g. user.registered).
        #[arg(long = "type")]
        event_type: Option<String>,
    },
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
            Command::Events { command } => events(&env, command).await,
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

async fn events(env: &Env, command: EventsCommand) -> ExitCode {
    match command {
        EventsCommand::DeadLetters { limit } => match platform::dead_letters(env, limit).await {
            Ok(dead) if dead.is_empty() => {
                println!("no dead letters");
                ExitCode::SUCCESS
            }
            Ok(dead) => {
                println!(
                    "{:<24} {:<20} {:<22} {:>8}  {:<25} error",
                    "id", "group", "type", "attempts", "dead at"
                );
                for letter in dead {
                    let event_type = letter
                        .event
                        .get("type")
                        .and_then(|t| t.as_str())
                        .unwrap_or("?");
                    println!(
                        "{:<24} {:<20} {:<22} {:>8}  {:<25} {}",
                        letter.id,
                        letter.group,
                        event_type,
                        letter.attempts,
                        letter.dead_at.to_rfc3339(),
                        letter.error
                    );
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(error),
        },
        EventsCommand::Replay {
            id,
            all,
            event_type,
        } => {
            let which = match (id, all, event_type) {
                (Some(id), _, _) => platform::Replay::Id(id),
                (_, _, Some(event_type)) => platform::Replay::Type(event_type),
                _ => platform::Replay::All,
            };
            match platform::replay(env, &which).await {
                Ok(0) if matches!(which, platform::Replay::Id(_)) => {
                    eprintln!("platform: no such dead letter");
                    ExitCode::FAILURE
                }
                Ok(count) => {
                    println!(
                        "replayed {count} dead letter{}",
                        if count == 1 { "" } else { "s" }
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error),
            }
        }
    }
}

fn fail(error: platform::PlatformError) -> ExitCode {
    eprintln!("platform: {error}");
    match error {
        platform::PlatformError::Config(_) => ExitCode::from(platform_http::service::EXIT_CONFIG),
        platform::PlatformError::Start { .. } | platform::PlatformError::Bus(_) => {
            ExitCode::FAILURE
        }
    }
}
