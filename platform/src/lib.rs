//! `platform`: the whole platform in one process, for a laptop.
//!
//! [`up`] starts every service and the gateway on their own loopback ports, talking to each
//! other over HTTP and gRPC exactly as they do when deployed apart, on embedded defaults
//! (SQLite files under `DATA_DIR`; no server needed). [`migrate`] applies every service's
//! migrations.
//!
//! Configuration is the services' own, read from the environment: a variable with the
//! service's prefix (`USER_SERVICE_PORT`) wins over the bare one (`JWT_SECRET`), which all
//! services share. Ports are never shared: a bare `PORT` sets the gateway's only.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use api_gateway::Gateway;
use platform_config::{ConfigError, Env, ExposeSecret};
use platform_http::{BoxError, CancellationToken, Service};
use user_service::Application as UserService;

/// Variables that identify one process and so are never read bare for a hosted service.
const PER_SERVICE: &[&str] = &["PORT", "GRPC_PORT", "SERVICE_NAME"];

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{service} failed to start: {source}")]
    Start {
        service: &'static str,
        source: BoxError,
    },
}

/// Where each part listens.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub service: &'static str,
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
}

/// The running platform.
pub struct Running {
    pub endpoints: Vec<Endpoint>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), BoxError>>>,
}

impl Running {
    pub fn gateway(&self) -> Option<SocketAddr> {
        self.endpoints
            .iter()
            .find(|e| e.service == Gateway::NAME)
            .map(|e| e.http)
    }

    /// Waits until every part has stopped (after the shutdown token fired); the first error
    /// wins.
    pub async fn wait(self) -> Result<(), BoxError> {
        let mut result = Ok(());
        for task in self.tasks {
            let outcome = match task.await {
                Ok(outcome) => outcome,
                Err(join) => Err(Box::new(join) as BoxError),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

/// Per-service readers of the environment: embedded defaults, the service's prefix first.
struct Layout {
    env: Env,
}

impl Layout {
    fn new(env: &Env) -> Self {
        // One token secret for every service in the process, so they trust each other's
        // tokens; generated (and warned about) when not configured.
        let secret = platform_auth::random_secret();
        Self {
            env: env.with_defaults([("JWT_SECRET", secret.expose_secret().to_owned())]),
        }
    }

    /// The reader for a hosted (internal) service: loopback only, its own ports.
    fn service<S: Service>(&self) -> Env {
        self.env
            .with_defaults([("HOST", "127.0.0.1")])
            .isolating(PER_SERVICE)
            .with_prefix(S::ENV_PREFIX)
    }

    /// The gateway's reader: it is the entry point, so a bare `PORT` and `HOST` are its own.
    fn gateway(&self, upstream_defaults: &[(&str, String)]) -> Env {
        self.env
            .with_defaults(upstream_defaults.iter().map(|(k, v)| (*k, v.clone())))
            .isolating(&["GRPC_PORT", "SERVICE_NAME"])
            .with_prefix(Gateway::ENV_PREFIX)
    }
}

/// Reads every configuration, reporting all problems of all services at once.
fn read_configs(
    layout: &Layout,
) -> Result<(user_service::UserServiceConfig, api_gateway::GatewayConfig), ConfigError> {
    let mut all = layout.env.reader();
    let mut users_env = layout.service::<UserService>();
    let users = UserService::config_from_env(&mut users_env);
    let mut gateway_env = layout.gateway(&[]);
    let gateway = Gateway::config_from_env(&mut gateway_env);
    all.absorb(users_env);
    all.absorb(gateway_env);
    all.finish()?;
    Ok((users, gateway))
}

/// Whether the environment says JWT_SECRET explicitly (the generated one is only a default).
fn jwt_secret_configured(env: &Env) -> bool {
    env.is_set("JWT_SECRET")
}

/// Starts every service, then the gateway in front of them. Serving continues in background
/// tasks until `shutdown` fires.
pub async fn up(env: &Env, shutdown: CancellationToken) -> Result<Running, PlatformError> {
    let layout = Layout::new(env);
    let (users_config, _) = read_configs(&layout)?;
    if !jwt_secret_configured(env) {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret shared by the services in this process; tokens will not survive a restart"
        );
    }

    let users = UserService::build(users_config)
        .await
        .map_err(|source| PlatformError::Start {
            service: UserService::NAME,
            source,
        })?;
    let users_endpoint = Endpoint {
        service: UserService::NAME,
        http: users.http_addr(),
        grpc: users.grpc_addr(),
    };

    // The gateway's upstreams default to where the services actually listen.
    let mut gateway_env = layout.gateway(&[(
        "USER_SERVICE_URL",
        format!("http://{}", users_endpoint.http),
    )]);
    let gateway_config = Gateway::config_from_env(&mut gateway_env);
    gateway_env.finish()?;
    let gateway = Gateway::build(gateway_config)
        .await
        .map_err(|source| PlatformError::Start {
            service: Gateway::NAME,
            source,
        })?;
    let gateway_endpoint = Endpoint {
        service: Gateway::NAME,
        http: gateway.http_addr(),
        grpc: None,
    };

    let tasks = vec![
        tokio::spawn(users.run(shutdown.clone())),
        tokio::spawn(gateway.run(shutdown.clone())),
    ];
    Ok(Running {
        endpoints: vec![gateway_endpoint, users_endpoint],
        tasks,
    })
}

/// Applies every service's migrations.
pub async fn migrate(env: &Env) -> Result<Vec<&'static str>, PlatformError> {
    let layout = Layout::new(env);
    let (users_config, _) = read_configs(&layout)?;
    UserService::migrate(&users_config)
        .await
        .map_err(|source| PlatformError::Start {
            service: UserService::NAME,
            source,
        })?;
    Ok(vec![UserService::NAME])
}

/// The lines `platform up` prints once everything listens.
pub fn banner(running: &Running) -> String {
    let mut lines = vec!["microservices-platform is up:".to_owned()];
    for endpoint in &running.endpoints {
        let grpc = endpoint
            .grpc
            .map(|addr| format!("  gRPC {addr}"))
            .unwrap_or_default();
        lines.push(format!(
            "  {:<14} http://{}{grpc}",
            endpoint.service, endpoint.http
        ));
    }
    if let Some(gateway) = running.gateway() {
        lines.push(format!("  API docs       http://{gateway}/docs"));
    }
    lines.push("Press Ctrl-C to stop.".to_owned());
    lines.join("\n")
}
