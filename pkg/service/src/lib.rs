//! The service kit: what every service of the platform does the same way, written once.
//!
//! A service declares itself ([`Declare`]): its configuration (its own settings next to the
//! [`CommonConfig`] every service reads), its migrator, how it uses Redis, and a `build` that
//! lists its parts on a [`Kit`]: the HTTP and gRPC APIs, the event consumers, the background
//! tasks. The kit does the rest in one order for all of them: open the database and run the
//! migrations, build the readiness checks (one rule for Redis, [`RedisUse`]), connect the
//! event bus and the audit trail, start the outbox relay, consumers and tasks once the
//! listeners are bound, and at shutdown drain the server, wait for the tasks and close the
//! pool. [`Application<D>`] is the runnable result, the one service type of every crate.
//!
//! Above `platform-http`, `platform-db` and `platform-events`, which know nothing of each
//! other's services: "http knows no database" stays true.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::sync::Arc;

use platform_auth::Jwt;
use platform_auth::JwtConfig;
use platform_auth::service_identity::{ServiceAuthConfig, ServiceIdentity};
use platform_db::{DatabaseCheck, DatabaseConfig};
use platform_events::{Consumer, ConsumerConfig, EventsConfig, Relay, Transport, retention};
use platform_http::audit::Audit;
use platform_http::{
    BoxError, CancellationToken, GrpcApi, HttpApi, Metrics, Readiness, Server, ServerConfig,
    ServerDefaults, ServiceParts,
};
use platform_redis::{RedisCheck, RedisConfig, RedisPool};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::task::JoinHandle;

pub mod ports;
mod problems;

pub use platform_config::Env;
pub use problems::database_problem;

/// The settings every service reads the same way: where it listens, its database, Redis,
/// the event bus, how it verifies users' tokens and, for services with a gRPC side, how it
/// proves itself to the others. A service's own configuration holds this next to what is
/// its own. Telemetry is not here: it belongs to the process (one subscriber, however many
/// services `platform up` hosts) and is read once by `run_main` and by `platform up`.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `PORT`, `GRPC_PORT`, `HOST`, timeouts, TLS…
    pub server: ServerConfig,
    /// `DATABASE_URL`, `DATA_DIR`, `DB_*`.
    pub database: DatabaseConfig,
    /// `REDIS_URL`: the event bus when set, and whatever [`Declare::REDIS`] says.
    pub redis: Option<RedisConfig>,
    /// `EVENTS_*`: where the outbox relay publishes and consumers read.
    pub events: EventsConfig,
    /// `JWT_SECRET` and friends: to verify (and, in the user service, mint) access tokens.
    pub jwt: JwtConfig,
    /// `INTERNAL_AUTH_SECRET`, `INTERNAL_TLS_*`: read only by services that serve gRPC
    /// (`grpc_port` set in their defaults), which are the ones that call each other.
    pub internal: Option<ServiceAuthConfig>,
    /// The audit trail to record in; the event bus's when `None` (tests pass one with a
    /// capturing sink).
    pub audit: Option<Audit>,
}

impl CommonConfig {
    /// Reads the common settings, recording every problem in `env`.
    pub fn from_env(env: &mut Env, defaults: ServerDefaults) -> Self {
        let server = ServerConfig::from_env(env, defaults);
        let jwt = JwtConfig::from_env(env, server.environment);
        let internal =
            (defaults.grpc_port != 0).then(|| ServiceAuthConfig::from_env(env, server.environment));
        let redis = RedisConfig::from_env(env);
        Self {
            database: DatabaseConfig::from_env(env),
            events: EventsConfig::from_env(env, redis.clone()),
            redis,
            jwt,
            internal,
            server,
            audit: None,
        }
    }

    /// For tests: loopback and free ports, `database`, the embedded bus beside it, no Redis,
    /// and `jwt_secret` for users' tokens and (gRPC services) service tokens alike.
    pub fn for_tests(defaults: ServerDefaults, database: DatabaseConfig, jwt_secret: &str) -> Self {
        Self {
            server: ServerConfig::for_tests(defaults.name),
            events: EventsConfig::embedded(&database.data_dir),
            database,
            redis: None,
            jwt: JwtConfig::with_secret(jwt_secret),
            internal: (defaults.grpc_port != 0).then(|| ServiceAuthConfig::with_secret(jwt_secret)),
            audit: None,
        }
    }
}

/// How a service uses Redis, which decides what Redis being down means for `/ready`: the one
/// rule, applied by the kit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisUse {
    /// The event bus and token revocations only: events wait in the outbox (or the streams)
    /// while it is down, so the service stays ready, `degraded` (check `redis`).
    Bus,
    /// Besides the bus, a cache in front of the database: reads fall back to the database,
    /// so the service stays ready, `degraded` (check `cache`).
    Cache,
    /// Besides the bus, state the service cannot do without (the user service's login
    /// throttle): down means not ready (check `redis`).
    State,
}

/// What a service's `build` hands back to the kit: its APIs.
pub struct Apis {
    /// The REST API (with its OpenAPI document).
    pub http: HttpApi,
    /// The gRPC API, for services that have one.
    pub grpc: Option<GrpcApi>,
}

/// A service of the platform, declared: the kit opens, runs and stops it.
pub trait Declare: Sized + Send + Sync + 'static {
    /// The service's whole configuration: its own settings, and a [`CommonConfig`] it
    /// derefs to (see [`extends_common!`]).
    type Config: FromEnv + std::ops::Deref<Target = CommonConfig> + Send + Sync + 'static;
    /// Its schema's migrations.
    type Migrator: MigratorTrait;
    /// Its name and ports (see [`ports`]), and how its server behaves by default.
    const DEFAULTS: ServerDefaults;
    /// The prefix `platform up` reads first for its variables (`USER_SERVICE_`).
    const ENV_PREFIX: &'static str;
    /// How it uses Redis.
    const REDIS: RedisUse;

    /// Builds the service's own parts on the opened `kit` (database migrated, bus connected)
    /// and registers its consumers and background tasks there; returns the service's handle
    /// (what others may need of it once built) and its APIs.
    fn build(
        config: Self::Config,
        kit: &mut Kit,
    ) -> impl Future<Output = Result<(Self, Apis), BoxError>> + Send;
}

/// Something to start once the listeners are bound: given the shutdown token, the tasks it
/// spawned.
type Start = Box<dyn FnOnce(CancellationToken) -> Vec<JoinHandle<()>> + Send>;

/// The shared parts of a service being built, and the list of what runs beside its server.
pub struct Kit {
    name: String,
    metrics: Metrics,
    db: DatabaseConnection,
    redis: Option<RedisPool>,
    transport: Arc<dyn Transport>,
    events: EventsConfig,
    audit: Audit,
    jwt: Jwt,
    internal: Option<ServiceAuthConfig>,
    readiness: Readiness,
    starts: Vec<Start>,
    /// The tables a pruning task already runs for.
    pruning: Vec<retention::Table>,
}

impl Kit {
    /// Connects and migrates the database, builds the readiness checks, connects the bus and
    /// the audit trail, and the token verifier with its revocations.
    async fn open<D: Declare>(common: &CommonConfig) -> Result<Self, BoxError> {
        let name = common.server.service_name.clone();
        let mut db = platform_db::connect(&common.database, &name).await?;
        let metrics = Metrics::new(&name);
        platform_db::observe(&mut db, &metrics);
        platform_db::migrate::<D::Migrator>(&db).await?;

        let mut readiness = Readiness::new().with("database", DatabaseCheck(db.clone()));
        let redis = common.redis.as_ref().map(RedisPool::new).transpose()?;
        if let Some(pool) = &redis {
            let check = RedisCheck(pool.clone());
            match D::REDIS {
                RedisUse::Bus => readiness.add_optional("redis", check),
                RedisUse::Cache => readiness.add_optional("cache", check),
                RedisUse::State => readiness.add("redis", check),
            }
        }
        let transport = common.events.connect().await?;
        tracing::info!(
            transport = common.events.transport_name(),
            "event bus configured"
        );
        let (bus_audit, publisher) =
            platform_events::audit::bus_audit(&name, transport.clone(), Some(metrics.clone()));
        let jwt = Jwt::connect(common.jwt.clone(), common.redis.as_ref())?;
        let revocations = jwt.revocations().clone();
        let mut kit = Self {
            audit: common.audit.clone().unwrap_or(bus_audit),
            name,
            metrics,
            db,
            redis,
            transport,
            events: common.events.clone(),
            jwt,
            internal: common.internal.clone(),
            readiness,
            starts: Vec::new(),
            pruning: Vec::new(),
        };
        kit.task(move |stop| publisher.run(stop));
        kit.spawns(move |stop| revocations.start(stop.cancelled_owned()));
        Ok(kit)
    }

    /// The service's name (`SERVICE_NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The service's database pool, migrated.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The Redis pool, when `REDIS_URL` is set.
    pub fn redis(&self) -> Option<&RedisPool> {
        self.redis.as_ref()
    }

    /// The event bus.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The service's audit trail.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The access-token verifier (and, for the user service, minter).
    pub fn jwt(&self) -> &Jwt {
        &self.jwt
    }

    /// Who this service is to the others on gRPC. Fails when the service serves no gRPC
    /// (its defaults have no `grpc_port`), or on unusable `INTERNAL_*` settings.
    pub fn identity(&self) -> Result<ServiceIdentity, BoxError> {
        let internal = self
            .internal
            .as_ref()
            .ok_or("a service identity is for services that serve gRPC")?;
        Ok(ServiceIdentity::new(&self.name, internal)?)
    }

    /// The configuration of this service's consumer group.
    pub fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig::new(&self.name, &self.events)
    }

    /// A consumer of this service's group, recording its metrics; give it handlers, then
    /// [`Kit::consume`] it.
    pub fn consumer(&self, config: ConsumerConfig) -> Consumer {
        Consumer::new(self.transport.clone(), config).with_metrics(self.metrics.clone())
    }

    /// Runs `consumer` beside the server. A service whose handlers record processed events
    /// (`idempotency::first_time`) also calls `kit.prune(Table::ProcessedEvents)`.
    pub fn consume(&mut self, consumer: Consumer) {
        self.task(move |stop| consumer.run(stop));
    }

    /// Publishes the service's outbox beside the server (services that write events), and
    /// prunes the rows published longer ago than `EVENTS_RETENTION`.
    pub fn relay(&mut self) {
        let relay = Relay::new(self.db.clone(), self.transport.clone(), &self.events)
            .with_metrics(self.metrics.clone());
        self.task(move |stop| relay.run(stop));
        self.prune(retention::Table::Outbox);
    }

    /// Deletes what `table` holds past `EVENTS_RETENTION`, now and every hour, beside the
    /// server (once per table, however often it is asked).
    pub fn prune(&mut self, table: retention::Table) {
        if self.pruning.contains(&table) {
            return;
        }
        self.pruning.push(table);
        let (db, retention) = (self.db.clone(), self.events.retention);
        self.task(move |stop| retention::run(db, table, retention, stop));
    }

    /// Runs `task` beside the server, from when the listeners are bound until `stop` (the
    /// shutdown token) fires; the server waits for it before the pool closes.
    pub fn task<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.starts
            .push(Box::new(move |stop| vec![tokio::spawn(task(stop))]));
    }

    /// Like [`Kit::task`], for parts that spawn their own tasks and hand back the handles.
    pub fn spawns<F, I>(&mut self, start: F)
    where
        F: FnOnce(CancellationToken) -> I + Send + 'static,
        I: IntoIterator<Item = JoinHandle<()>>,
    {
        self.starts
            .push(Box::new(move |stop| start(stop).into_iter().collect()));
    }
}

/// A built, bound service: its server, its pool, what runs beside them, and its handle.
pub struct Application<D> {
    declared: D,
    server: Server,
    db: DatabaseConnection,
    starts: Vec<Start>,
}

impl<D: Declare> Application<D> {
    /// The service's handle, as its `build` returned it.
    pub fn declared(&self) -> &D {
        &self.declared
    }

    /// Opens the kit, builds the service on it and binds its listeners; nothing runs yet.
    pub async fn build(config: D::Config) -> Result<Self, BoxError> {
        let server_config = config.server.clone();
        let mut kit = Kit::open::<D>(&config).await?;
        let (declared, apis) = D::build(config, &mut kit).await?;
        let Kit {
            metrics,
            db,
            audit,
            readiness,
            starts,
            ..
        } = kit;
        let server = Server::bind(
            &server_config,
            ServiceParts {
                http: apis.http,
                grpc: apis.grpc,
                readiness,
                metrics,
                audit,
            },
        )
        .await?;
        Ok(Self {
            declared,
            server,
            db,
            starts,
        })
    }
}

/// A configuration read from the environment, every problem recorded in `env`.
pub trait FromEnv {
    /// Reads it.
    fn from_env(env: &mut Env) -> Self;
}

/// Makes a service's configuration one the kit can read and use as its [`CommonConfig`]
/// (`config.server.port`, `config.redis = …`), for a struct with a `common: CommonConfig`
/// field and an inherent `from_env(&mut Env) -> Self`:
/// `platform_service::extends_common!(UserServiceConfig);`.
#[macro_export]
macro_rules! extends_common {
    ($config:ty) => {
        impl $crate::FromEnv for $config {
            fn from_env(env: &mut $crate::Env) -> Self {
                <$config>::from_env(env)
            }
        }
        impl ::std::ops::Deref for $config {
            type Target = $crate::CommonConfig;
            fn deref(&self) -> &$crate::CommonConfig {
                &self.common
            }
        }
        impl ::std::ops::DerefMut for $config {
            fn deref_mut(&mut self) -> &mut $crate::CommonConfig {
                &mut self.common
            }
        }
    };
}

impl<D: Declare> platform_http::Service for Application<D> {
    type Config = D::Config;
    const NAME: &'static str = D::DEFAULTS.name;
    const ENV_PREFIX: &'static str = D::ENV_PREFIX;

    fn config_from_env(env: &mut Env) -> D::Config {
        D::Config::from_env(env)
    }

    async fn migrate(config: &D::Config) -> Result<(), BoxError> {
        let common = &**config;
        Ok(
            platform_db::migrate_only::<D::Migrator>(&common.database, &common.server.service_name)
                .await?,
        )
    }

    async fn build(config: D::Config) -> Result<Self, BoxError> {
        Application::<D>::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    /// Starts what runs beside the server, serves until `shutdown`, waits for those tasks,
    /// then closes the pool.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        let tasks = self
            .starts
            .into_iter()
            .flat_map(|start| start(shutdown.clone()))
            .collect();
        let served = self.server.run_with(shutdown, tasks).await;
        platform_db::close(self.db).await;
        Ok(served?)
    }
}
