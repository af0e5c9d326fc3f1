//! `platform`: `up` (the default) runs the whole platform in this process; `migrate` applies
//! every service's migrations; `events dead-letters` and `events replay` operate on the bus.
//! `serve <service>` and `migrate <service>` run one part alone: the multi-call binary every
//! container image holds. `probe URL` is the images' health check (they have no shell).

platform_alloc::install!();

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use platform::Part;
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
    /// Run one service alone, configured from the environment unprefixed (PORT, DATABASE_URL…).
    Serve {
        /// api-gateway, user-service, product-service, order-service, payment-service,
        /// notification-service or event-store (each image sets PLATFORM_SERVICE to its own).
        #[arg(value_parser = part, env = "PLATFORM_SERVICE")]
        service: Part,
    },
    /// Apply every service's database migrations (or one service's), then exit.
    Migrate {
        /// Only this service, configured from the environment unprefixed, as `serve` reads it.
        #[arg(value_parser = part)]
        service: Option<Part>,
    },
    /// GET an http:// URL; exit 0 on a 2xx status, 1 otherwise (the images' health check).
    Probe {
        /// Default: this container's own service, http://127.0.0.1:$PORT/health.
        url: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Operate on the event bus.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

/// The commands that operate on the whole platform.
enum Whole {
    Up,
    Migrate,
    Events(EventsCommand),
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

fn part(name: &str) -> Result<Part, String> {
    Part::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Part::ALL.iter().map(|p| p.name()).collect();
        format!("no such service; one of: {}", names.join(", "))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One part alone gets its own runtime, telemetry and configuration, as its own binary has.
    let whole = match cli.command.unwrap_or(Command::Up) {
        Command::Serve { service } => return service.run(platform_http::Command::Serve),
        Command::Migrate {
            service: Some(service),
        } => return service.run(platform_http::Command::Migrate),
        Command::Probe { url, timeout } => {
            let Some(url) = url.or_else(|| {
                std::env::var("PORT")
                    .ok()
                    .map(|port| format!("http://127.0.0.1:{port}/health"))
            }) else {
                eprintln!("probe: give a URL, or set PORT to probe http://127.0.0.1:$PORT/health");
                return ExitCode::from(platform_http::service::EXIT_CONFIG);
            };
            return match platform::probe::probe(&url, std::time::Duration::from_secs(timeout)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("probe {url}: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Up => Whole::Up,
        Command::Migrate { service: None } => Whole::Migrate,
        Command::Events { command } => Whole::Events(command),
    };
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
        let services = Part::ALL.map(Part::name);
        let _telemetry = match platform_telemetry::init_for("platform", &services, &telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("platform: {error}");
                return ExitCode::FAILURE;
            }
        };
        match whole {
            Whole::Up => {
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
            Whole::Events(command) => events(&env, command).await,
            Whole::Migrate => match platform::migrate(&env).await {
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
