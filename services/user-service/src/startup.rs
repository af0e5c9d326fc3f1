//! Wiring: builds the service from its configuration and runs it.

use platform_auth::Jwt;
use platform_auth::service_identity::ServiceIdentity;
use platform_cache::{RedisCheck, RedisPool};
use platform_config::Env;
use platform_db::DatabaseCheck;
use platform_events::Relay;
use platform_events::audit::AuditPublisher;
use platform_http::{BoxError, CancellationToken, Metrics, Readiness, Server, ServiceParts};
use sea_orm::DatabaseConnection;

use crate::config::UserServiceConfig;
use crate::http::AppState;
use crate::migration::Migrator;
use crate::passwords::Passwords;
use crate::service::Users;

/// A built, bound user service.
pub struct Application {
    server: Server,
    db: DatabaseConnection,
    /// Publishes the outbox while the service runs.
    relay: Relay,
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
        let db = platform_db::connect(&config.database, &name).await?;
        platform_db::migrate::<Migrator>(&db).await?;

        let mut readiness = Readiness::new().with("database", DatabaseCheck(db.clone()));
        if let Some(redis) = &config.redis {
            readiness.add("redis", RedisCheck(RedisPool::new(redis)?));
        }
        let metrics = Metrics::new(&name);
        let transport = config.events.connect().await?;
        let (audit, audit_publisher) =
            platform_events::audit::bus_audit(&name, transport.clone(), Some(metrics.clone()));
        tracing::info!(
            transport = config.events.transport_name(),
            "event bus configured"
        );
        let relay = Relay::new(db.clone(), transport, &config.events).with_metrics(metrics.clone());
        let jwt = Jwt::new(config.jwt);
        let users = Users::new(
            db.clone(),
            Passwords::new(config.passwords).await?,
            jwt.clone(),
            config.refresh_token_ttl,
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

    /// Serves and relays events until `shutdown`, then closes the pool.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        let tasks = vec![
            tokio::spawn(self.relay.run(shutdown.clone())),
            tokio::spawn(self.audit_publisher.run(shutdown.clone())),
        ];
        let served = self.server.run_with(shutdown, tasks).await;
        platform_db::close(self.db).await;
        Ok(served?)
    }
}
