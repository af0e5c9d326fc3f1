//! Wiring: the store's database, its consumer of every event family, its admin API.

use platform_auth::{Jwt, Revocations};
use platform_config::Env;
use platform_db::DatabaseCheck;
use platform_events::audit::AuditPublisher;
use platform_events::catalogue::FAMILIES;
use platform_events::{Consumer, ConsumerConfig, Envelope, HandlerError, store};
use platform_http::{BoxError, CancellationToken, Metrics, Readiness, Server, ServiceParts};
use sea_orm::DatabaseConnection;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

use crate::config::EventStoreConfig;
use crate::http::AppState;

/// The store's schema.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(store::migration::CreateEventStore)]
    }
}

/// A built, bound event store.
pub struct EventStore {
    server: Server,
    db: DatabaseConnection,
    consumer: Consumer,
    /// Applies the other services' token revocations while the service runs.
    revocations: Revocations,
    /// Publishes the service's audit records to the event bus.
    audit_publisher: AuditPublisher,
}

impl EventStore {
    pub async fn build(config: EventStoreConfig) -> Result<Self, BoxError> {
        let name = config.server.service_name.clone();
        let mut db = platform_db::connect(&config.database, &name).await?;
        let metrics = Metrics::new(&name);
        platform_db::observe(&mut db, &metrics);
        platform_db::migrate::<Migrator>(&db).await?;
        let transport = config.events.connect().await?;
        let (audit, audit_publisher) =
            platform_events::audit::bus_audit(&name, transport.clone(), Some(metrics.clone()));

        let consumer = Consumer::new(
            transport.clone(),
            ConsumerConfig::new(&name, &config.events),
        )
        .with_metrics(metrics.clone());
        let consumer = consumer.on_families(FAMILIES, {
            let db = db.clone();
            // Appending is idempotent on the event id: redeliveries add nothing. A read's
            // events go in as one statement (one commit, not one per event).
            move |envelopes: Vec<Envelope>| {
                let db = db.clone();
                async move {
                    store::append_many(&db, &envelopes)
                        .await
                        .map(|_| ())
                        .map_err(HandlerError::from)
                }
            }
        });

        let jwt = Jwt::connect(config.jwt, config.redis.as_ref())?;
        let server = Server::bind(
            &config.server,
            ServiceParts {
                http: crate::http::api(AppState {
                    db: db.clone(),
                    transport,
                    jwt: jwt.clone(),
                }),
                grpc: None,
                readiness: Readiness::new().with("database", DatabaseCheck(db.clone())),
                metrics,
                audit,
            },
        )
        .await?;
        Ok(Self {
            server,
            db,
            consumer,
            revocations: jwt.revocations().clone(),
            audit_publisher,
        })
    }
}

impl platform_http::Service for EventStore {
    type Config = EventStoreConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "EVENT_STORE_";

    fn config_from_env(env: &mut Env) -> EventStoreConfig {
        EventStoreConfig::from_env(env)
    }

    async fn migrate(config: &EventStoreConfig) -> Result<(), BoxError> {
        Ok(
            platform_db::migrate_only::<Migrator>(&config.database, &config.server.service_name)
                .await?,
        )
    }

    async fn build(config: EventStoreConfig) -> Result<Self, BoxError> {
        EventStore::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    /// Serves and consumes until `shutdown`, then closes the pool.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        let mut tasks = vec![
            tokio::spawn(self.consumer.run(shutdown.clone())),
            tokio::spawn(self.audit_publisher.run(shutdown.clone())),
        ];
        tasks.extend(self.revocations.start(shutdown.clone().cancelled_owned()));
        let served = self.server.run_with(shutdown, tasks).await;
        platform_db::close(self.db).await;
        Ok(served?)
    }
}
