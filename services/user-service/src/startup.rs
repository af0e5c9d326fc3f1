//! Wiring: builds the service from its configuration and runs it.

use platform_auth::service_identity::ServiceIdentity;
use platform_auth::{Jwt, Revocations};
use platform_config::Env;
use platform_db::DatabaseCheck;
use platform_events::Relay;
use platform_events::audit::AuditPublisher;
use platform_http::{BoxError, CancellationToken, Metrics, Readiness, Server, ServiceParts};
use platform_redis::{RedisCheck, RedisPool};
use sea_orm::DatabaseConnection;

use crate::config::UserServiceConfig;
use crate::http::AppState;
use crate::migration::Migrator;
use crate::passwords::Passwords;
use crate::service::{Users, UsersParts};
use crate::throttle::LoginThrottle;

/// A built, bound user service.
pub struct Application {
    server: Server,
    db: DatabaseConnection,
    /// Publishes the outbox while the service runs.
    relay: Relay,
    /// Where this service publishes revocations and learns other replicas'.
    revocations: Revocations,
    /// Publishes the service's audit records to the event bus.
    audit_publisher: AuditPublisher,
}

impl Application {
    /// Connects and migrates the database, creates the configured admin, binds HTTP and gRPC.
    pub async fn build(config: UserServiceConfig) -> Result<Self, BoxError> {
        let name = config.server.service_name.clone();
        if config.jwt.generated {
            tracing::warn!(
                "JWT_SECRET is not set: using a random secret; tokens will not survive a restart \
                 and other processes cannot verify them"
            );
        }
        let mut db = platform_db::connect(&config.database, &name).await?;
        let metrics = Metrics::new(&name);
        platform_db::observe(&mut db, &metrics);
        platform_db::migrate::<Migrator>(&db).await?;

        let mut readiness = Readiness::new().with("database", DatabaseCheck(db.clone()));
        let redis = config.redis.as_ref().map(RedisPool::new).transpose()?;
        if let Some(pool) = &redis {
            readiness.add("redis", RedisCheck(pool.clone()));
        }
        let transport = config.events.connect().await?;
        let (bus_audit, audit_publisher) =
            platform_events::audit::bus_audit(&name, transport.clone(), Some(metrics.clone()));
        tracing::info!(
            transport = config.events.transport_name(),
            "event bus configured"
        );
        let relay = Relay::new(db.clone(), transport, &config.events).with_metrics(metrics.clone());
        let jwt = Jwt::connect(config.jwt, config.redis.as_ref())?;
        let revocations = jwt.revocations().clone();
        // Tests may capture the records instead of sending them to the bus.
        let audit = config.audit.unwrap_or(bus_audit);
        let users = Users::new(
            db.clone(),
            UsersParts {
                passwords: Passwords::new(config.passwords, config.hashing).await?,
                jwt: jwt.clone(),
                throttle: LoginThrottle::new(config.throttle, redis),
                refresh_ttl: config.refresh_token_ttl,
                audit: audit.clone(),
            },
            &name,
        );
        if let Some(admin) = config.admin {
            users
                .ensure_admin(admin.email, admin.name, admin.password)
                .await?;
        }

        let identity = ServiceIdentity::new(&name, &config.internal)?;
        let server = Server::bind(
            &config.server,
            ServiceParts {
                http: crate::http::api(AppState {
                    users: users.clone(),
                    jwt,
                }),
                grpc: Some(crate::grpc::api(users, identity)),
                readiness,
                metrics,
                audit,
            },
        )
        .await?;
        Ok(Self {
            server,
            db,
            relay,
            revocations,
            audit_publisher,
        })
    }
}

impl platform_http::Service for Application {
    type Config = UserServiceConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "USER_SERVICE_";

    fn config_from_env(env: &mut Env) -> UserServiceConfig {
        UserServiceConfig::from_env(env)
    }

    async fn migrate(config: &UserServiceConfig) -> Result<(), BoxError> {
        Ok(
            platform_db::migrate_only::<Migrator>(&config.database, &config.server.service_name)
                .await?,
        )
    }

    async fn build(config: UserServiceConfig) -> Result<Self, BoxError> {
        Application::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    /// Serves, relays events and listens for revocations until `shutdown`, then closes the
    /// pool.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        let mut tasks = vec![
            tokio::spawn(self.relay.run(shutdown.clone())),
            tokio::spawn(self.audit_publisher.run(shutdown.clone())),
        ];
        tasks.extend(self.revocations.start(shutdown.clone().cancelled_owned()));
        let served = self.server.run_with(shutdown, tasks).await;
        platform_db::close(self.db).await;
        Ok(served?)
    }
}
