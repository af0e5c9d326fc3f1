//! `platform`: the whole platform in one process, for a laptop, and its operations commands.
//!
//! [`up`] starts every service and the gateway on their own loopback ports, talking to each
//! other over HTTP, gRPC and the event bus exactly as they do when deployed apart, on embedded
//! defaults (SQLite files and the embedded event bus under `DATA_DIR`; no server needed).
//! [`migrate`] applies every service's migrations; [`dead_letters`] and [`replay`] operate on
//! the event bus's dead letters.
//!
//! Configuration is the services' own, read from the environment: a variable with the
//! service's prefix (`USER_SERVICE_PORT`) wins over the bare one (`JWT_SECRET`), which all
//! services share. Ports are never shared: a bare `PORT` sets the gateway's only.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use api_gateway::Application as Gateway;
use event_store::Application as EventStore;
use notification_service::Application as NotificationService;
use order_service::Application as OrderService;
use payment_service::Application as PaymentService;
use platform_config::{ConfigError, Env, ExposeSecret};
use platform_events::{BusError, DeadLetter, EventsConfig, Transport};
use platform_http::{BoxError, CancellationToken, Service};
use platform_redis::RedisConfig;
use product_service::Application as ProductService;
use user_service::Application as UserService;

pub mod probe;

/// Variables that identify one process and so are never read bare for a hosted service.
const PER_SERVICE: &[&str] = &["PORT", "GRPC_PORT", "SERVICE_NAME"];

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{service} failed to start: {source}")]
    Start {
        service: &'static str,
        source: BoxError,
    },
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
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
        self.endpoint(Gateway::NAME).map(|e| e.http)
    }

    pub fn endpoint(&self, service: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.service == service)
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
        // tokens; generated (and warned about) when not configured. Likewise one secret for
        // the services' own tokens on gRPC (unless configured, or mutual TLS is).
        let secret = platform_auth::random_secret();
        let internal = platform_auth::random_secret();
        Self {
            env: env.with_defaults([
                ("JWT_SECRET", secret.expose_secret().to_owned()),
                ("INTERNAL_AUTH_SECRET", internal.expose_secret().to_owned()),
            ]),
        }
    }

    /// The reader for a hosted (internal) service: loopback only, its own ports, and its own
    /// schema when services share one PostgreSQL `DATABASE_URL`.
    fn service<S: Service>(&self) -> Env {
        self.env
            .with_defaults([
                ("HOST", "127.0.0.1".to_owned()),
                ("DB_SCHEMA", S::NAME.replace('-', "_")),
            ])
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

    /// A hosted service's configuration; its problems are added to `all`.
    fn config<S: Service>(&self, all: &mut Env) -> S::Config {
        let mut env = self.service::<S>();
        let config = S::config_from_env(&mut env);
        all.absorb(env);
        config
    }
}

/// Every hosted service's configuration, with every problem of every service reported at once.
struct Configs {
    users: <UserService as Service>::Config,
    products: <ProductService as Service>::Config,
    payments: <PaymentService as Service>::Config,
    orders: <OrderService as Service>::Config,
    notifications: <NotificationService as Service>::Config,
    store: <EventStore as Service>::Config,
}

fn read_configs(layout: &Layout) -> Result<Configs, ConfigError> {
    let mut all = layout.env.reader();
    let users = layout.config::<UserService>(&mut all);
    let products = layout.config::<ProductService>(&mut all);
    let payments = layout.config::<PaymentService>(&mut all);
    let orders = layout.config::<OrderService>(&mut all);
    let notifications = layout.config::<NotificationService>(&mut all);
    let store = layout.config::<EventStore>(&mut all);
    let mut gateway_env = layout.gateway(&[]);
    let _ = Gateway::config_from_env(&mut gateway_env);
    all.absorb(gateway_env);
    all.finish()?;
    Ok(Configs {
        users,
        products,
        payments,
        orders,
        notifications,
        store,
    })
}

async fn start<S: Service>(config: S::Config) -> Result<(S, Endpoint), PlatformError> {
    let service = S::build(config)
        .await
        .map_err(|source| PlatformError::Start {
            service: S::NAME,
            source,
        })?;
    let endpoint = Endpoint {
        service: S::NAME,
        http: service.http_addr(),
        grpc: service.grpc_addr(),
    };
    Ok((service, endpoint))
}

/// Starts every service, then the gateway in front of them. Serving continues in background
/// tasks until `shutdown` fires.
pub async fn up(env: &Env, shutdown: CancellationToken) -> Result<Running, PlatformError> {
    let layout = Layout::new(env);
    let configs = read_configs(&layout)?;
    if !env.is_set("JWT_SECRET") {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret shared by the services in this process; tokens will not survive a restart"
        );
    }

    let (users, users_endpoint) = start::<UserService>(configs.users).await?;
    let (products, products_endpoint) = start::<ProductService>(configs.products).await?;
    let (payments, payments_endpoint) = start::<PaymentService>(configs.payments).await?;
    // The saga calls this process's product and payment services, wherever they listen.
    let mut orders_config = configs.orders;
    if let Some(grpc) = products_endpoint.grpc {
        orders_config.clients.product_url = format!("http://{grpc}");
    }
    if let Some(grpc) = payments_endpoint.grpc {
        orders_config.clients.payment_url = format!("http://{grpc}");
    }
    let (orders, orders_endpoint) = start::<OrderService>(orders_config).await?;
    // A direct charge naming an order is checked with this process's order service.
    if let Some(grpc) = orders_endpoint.grpc {
        payments
            .declared()
            .order_book()
            .point_at(&format!("http://{grpc}"))
            .map_err(|source| PlatformError::Start {
                service: PaymentService::NAME,
                source: source.into(),
            })?;
    }
    let (notifications, notifications_endpoint) =
        start::<NotificationService>(configs.notifications).await?;
    let (store, store_endpoint) = start::<EventStore>(configs.store).await?;

    // The gateway's upstreams default to where the services actually listen.
    let mut gateway_env = layout.gateway(&[
        (
            "USER_SERVICE_URL",
            format!("http://{}", users_endpoint.http),
        ),
        (
            "PRODUCT_SERVICE_URL",
            format!("http://{}", products_endpoint.http),
        ),
        (
            "PAYMENT_SERVICE_URL",
            format!("http://{}", payments_endpoint.http),
        ),
        (
            "ORDER_SERVICE_URL",
            format!("http://{}", orders_endpoint.http),
        ),
        (
            "NOTIFICATION_SERVICE_URL",
            format!("http://{}", notifications_endpoint.http),
        ),
        ("EVENT_STORE_URL", format!("http://{}", store_endpoint.http)),
        // One scrape of the gateway covers every service in this process.
        ("METRICS_FEDERATE", "true".to_owned()),
    ]);
    let gateway_config = Gateway::config_from_env(&mut gateway_env);
    gateway_env.finish()?;
    let (gateway, gateway_endpoint) = start::<Gateway>(gateway_config).await?;

    let tasks = vec![
        tokio::spawn(users.run(shutdown.clone())),
        tokio::spawn(products.run(shutdown.clone())),
        tokio::spawn(payments.run(shutdown.clone())),
        tokio::spawn(orders.run(shutdown.clone())),
        tokio::spawn(notifications.run(shutdown.clone())),
        tokio::spawn(store.run(shutdown.clone())),
        tokio::spawn(gateway.run(shutdown.clone())),
    ];
    Ok(Running {
        endpoints: vec![
            gateway_endpoint,
            users_endpoint,
            products_endpoint,
            payments_endpoint,
            orders_endpoint,
            notifications_endpoint,
            store_endpoint,
        ],
        tasks,
    })
}

/// Applies every service's migrations.
pub async fn migrate(env: &Env) -> Result<Vec<&'static str>, PlatformError> {
    let configs = read_configs(&Layout::new(env))?;
    UserService::migrate(&configs.users)
        .await
        .map_err(|source| PlatformError::Start {
            service: UserService::NAME,
            source,
        })?;
    ProductService::migrate(&configs.products)
        .await
        .map_err(|source| PlatformError::Start {
            service: ProductService::NAME,
            source,
        })?;
    PaymentService::migrate(&configs.payments)
        .await
        .map_err(|source| PlatformError::Start {
            service: PaymentService::NAME,
            source,
        })?;
    OrderService::migrate(&configs.orders)
        .await
        .map_err(|source| PlatformError::Start {
            service: OrderService::NAME,
            source,
        })?;
    NotificationService::migrate(&configs.notifications)
        .await
        .map_err(|source| PlatformError::Start {
            service: NotificationService::NAME,
            source,
        })?;
    EventStore::migrate(&configs.store)
        .await
        .map_err(|source| PlatformError::Start {
            service: EventStore::NAME,
            source,
        })?;
    Ok(vec![
        UserService::NAME,
        ProductService::NAME,
        PaymentService::NAME,
        OrderService::NAME,
        NotificationService::NAME,
        EventStore::NAME,
    ])
}

/// One part of the platform, as `platform serve <name>` and `platform migrate <name>` name it:
/// the multi-call binary every container image runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Gateway,
    Users,
    Products,
    Orders,
    Payments,
    Notifications,
    EventStore,
}

impl Part {
    pub const ALL: [Part; 7] = [
        Part::Gateway,
        Part::Users,
        Part::Products,
        Part::Orders,
        Part::Payments,
        Part::Notifications,
        Part::EventStore,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Gateway => Gateway::NAME,
            Part::Users => UserService::NAME,
            Part::Products => ProductService::NAME,
            Part::Orders => OrderService::NAME,
            Part::Payments => PaymentService::NAME,
            Part::Notifications => NotificationService::NAME,
            Part::EventStore => EventStore::NAME,
        }
    }

    pub fn from_name(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|part| part.name() == name)
    }

    /// Runs this part alone as the process, configured from the environment unprefixed,
    /// exactly as its own binary would (`serve` until a signal, or `migrate` and exit).
    pub fn run(self, command: platform_http::Command) -> std::process::ExitCode {
        match self {
            Part::Gateway => platform_http::run::<Gateway>(command),
            Part::Users => platform_http::run::<UserService>(command),
            Part::Products => platform_http::run::<ProductService>(command),
            Part::Orders => platform_http::run::<OrderService>(command),
            Part::Payments => platform_http::run::<PaymentService>(command),
            Part::Notifications => platform_http::run::<NotificationService>(command),
            Part::EventStore => platform_http::run::<EventStore>(command),
        }
    }
}

/// The event bus the services of this environment use (`REDIS_URL`, else `DATA_DIR`).
async fn bus(env: &Env) -> Result<std::sync::Arc<dyn Transport>, PlatformError> {
    let mut env = env.reader();
    let redis = RedisConfig::from_env(&mut env);
    let events = EventsConfig::from_env(&mut env, redis);
    env.finish()?;
    Ok(events.connect().await?)
}

/// The oldest `limit` dead letters.
pub async fn dead_letters(env: &Env, limit: usize) -> Result<Vec<DeadLetter>, PlatformError> {
    Ok(bus(env).await?.dead_letters(limit).await?)
}

/// Which dead letters to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    Id(String),
    All,
    Type(String),
}

/// Puts dead letters back for delivery; returns how many.
pub async fn replay(env: &Env, which: &Replay) -> Result<usize, PlatformError> {
    let bus = bus(env).await?;
    if let Replay::Id(id) = which {
        return Ok(usize::from(bus.replay(id).await?));
    }
    let mut replayed = 0;
    for dead in bus.dead_letters(100_000).await? {
        let matches = match which {
            Replay::Type(event_type) => {
                dead.event.get("type").and_then(|t| t.as_str()) == Some(event_type)
            }
            _ => true,
        };
        if matches && bus.replay(&dead.id).await? {
            replayed += 1;
        }
    }
    Ok(replayed)
}

/// An address a browser can open: a wildcard bind is reachable as `localhost`.
fn reachable(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// The lines `platform up` prints once everything listens.
pub fn banner(running: &Running) -> String {
    let mut lines = vec!["microservices-platform is up:".to_owned()];
    for endpoint in &running.endpoints {
        let grpc = endpoint
            .grpc
            .map(|addr| format!("  gRPC {}", reachable(addr)))
            .unwrap_or_default();
        lines.push(format!(
            "  {:<14} http://{}{grpc}",
            endpoint.service,
            reachable(endpoint.http)
        ));
    }
    if let Some(gateway) = running.gateway() {
        lines.push(format!(
            "  API docs       http://{}/docs",
            reachable(gateway)
        ));
    }
    lines.push("Press Ctrl-C to stop.".to_owned());
    lines.join("\n")
}
