//! The shape every runnable service has, and the `main` they all share.
//!
//! A service implements [`Service`]; its binary's `main` is `run_main::<MyService>()`, and
//! `platform up` starts several in one process through the same trait. Start-up order: read and
//! validate the whole configuration (exit code 2 with every offending variable named), then
//! start telemetry, then build (connect, migrate, bind), then serve until SIGINT/SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use platform_config::Env;
use platform_telemetry::TelemetryConfig;
use tokio_util::sync::CancellationToken;

use crate::server::{Server, shutdown_on_signal};

/// Any start-up or serving failure, reported by name.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Exit code of a process stopped by invalid configuration.
pub const EXIT_CONFIG: u8 = 2;

/// A service of the platform, startable on its own or in-process by `platform up`.
pub trait Service: Sized + Send + 'static {
    /// Everything the service reads from the environment ([`Service::config_from_env`]).
    type Config: Send + 'static;

    /// The service's name: the default `SERVICE_NAME`, its database file's name.
    const NAME: &'static str;

    /// The prefix `platform up` reads first for this service's variables (e.g.
    /// `USER_SERVICE_` so that `USER_SERVICE_PORT` wins over `PORT`).
    const ENV_PREFIX: &'static str;

    /// Reads the configuration, recording every problem in `env`.
    fn config_from_env(env: &mut Env) -> Self::Config;

    /// Applies pending database migrations and returns (`<binary> migrate`, `platform
    /// migrate`). Services without a database have nothing to do.
    fn migrate(config: &Self::Config) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = config;
        async { Ok(()) }
    }

    /// Connects, migrates and binds; nothing is served yet.
    fn build(config: Self::Config) -> impl Future<Output = Result<Self, BoxError>> + Send;

    /// The bound server the service runs (its addresses come from here).
    fn server(&self) -> &Server;

    /// Where HTTP is served (the real port when `PORT` was 0).
    fn http_addr(&self) -> SocketAddr {
        self.server().http_addr()
    }

    /// `None` for services without a gRPC side.
    fn grpc_addr(&self) -> Option<SocketAddr> {
        self.server().grpc_addr()
    }

    /// Serves until `shutdown` fires, then drains and closes pools.
    fn run(self, shutdown: CancellationToken) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// What a service process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Serve until SIGINT/SIGTERM.
    Serve,
    /// Apply pending migrations, then exit.
    Migrate,
}

/// The whole `main` of a service binary: `<binary>` serves, `<binary> migrate` applies
/// migrations and exits.
pub fn run_main<S: Service>() -> ExitCode {
    let command = match std::env::args().nth(1).as_deref() {
        None | Some("serve") => Command::Serve,
        Some("migrate") => Command::Migrate,
        Some(other) => {
            eprintln!(
                "{}: unknown command {other:?}; expected `serve` (default) or `migrate`",
                S::NAME
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    run::<S>(command)
}

/// Runs one service as this process, configured from the environment unprefixed (`PORT`,
/// `DATABASE_URL`): what a service binary does, and `platform serve <service>` in a container.
pub fn run<S: Service>(command: Command) -> ExitCode {
    let migrate_only = command == Command::Migrate;
    let mut env = Env::from_process();
    let telemetry = TelemetryConfig::from_env(&mut env);
    let config = S::config_from_env(&mut env);
    if let Err(error) = env.finish() {
        eprintln!("{}: {error}", S::NAME);
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: cannot start the async runtime: {error}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match platform_telemetry::init(S::NAME, &telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("{}: {error}", S::NAME);
                return ExitCode::FAILURE;
            }
        };
        if migrate_only {
            return match S::migrate(&config).await {
                Ok(()) => {
                    tracing::info!(service = S::NAME, "migrations applied");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    tracing::error!(service = S::NAME, %error, "migrations failed");
                    ExitCode::FAILURE
                }
            };
        }
        let service = match S::build(config).await {
            Ok(service) => service,
            Err(error) => {
                tracing::error!(service = S::NAME, %error, "start-up failed");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            service = S::NAME,
            http = %service.http_addr(),
            grpc = ?service.grpc_addr(),
            "listening"
        );
        match service.run(shutdown_on_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(service = S::NAME, %error, "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}
