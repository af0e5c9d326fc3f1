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

use crate::config::PaymentServiceConfig;
use crate::http::AppState;
use crate::migration::Migrator;
use crate::orders::OrderBook;
use crate::service::Payments;

/// A built, bound payment service.
pub struct Application {
    server: Server,
    db: DatabaseConnection,
    relay: Relay,
    /// Applies the other services' token revocations while the service runs.
    revocations: Revocations,
    /// Publishes the service's audit records to the event bus.
    audit_publisher: AuditPublisher,
    /// Resolves unknown charge outcomes and finishes refunds left unfinished.
    payments: Payments,
    reconcile_interval: std::time::Duration,
    /// The order service's address can change after start-up (`platform up`).
    orders: OrderBook,
}

impl Application {
    /// Connects and migrates the database, builds the providers, binds HTTP and gRPC.
    pub async fn build(config: PaymentServiceConfig) -> Result<Self, BoxError> {
        let name = config.server.service_name.clone();
        let mut db = platform_db::connect(&config.database, &name).await?;
        let metrics = Metrics::new(&name);
        platform_db::observe(&mut db, &metrics);
        platform_db::migrate::<Migrator>(&db).await?;

        let mut readiness = Readiness::new().with("database", DatabaseCheck(db.clone()));
        if let Some(redis) = &config.redis {
            // Only the event bus uses Redis here: the outbox holds events while it is down.
            readiness.add_optional("redis", RedisCheck(RedisPool::new(redis)?));
        }
        let transport = config.events.connect().await?;
        let (audit, audit_publisher) =
            platform_events::audit::bus_audit(&name, transport.clone(), Some(metrics.clone()));
        let relay = Relay::new(db.clone(), transport, &config.events).with_metrics(metrics.clone());
        let providers = config.providers.build()?;
        tracing::info!(providers = ?providers.names(), "payment providers configured");
        let identity = ServiceIdentity::new(&name, &config.internal)?;
        let orders = OrderBook::new(&config.order_url, &identity)?;
        let payments = Payments::new(
            db.clone(),
            providers,
            config.fraud,
            orders.clone(),
            &metrics,
            &name,
        )
        .with_review_ttl(config.review_ttl);

        let jwt = Jwt::connect(config.jwt, config.redis.as_ref())?;
        let server = Server::bind(
            &config.server,
            ServiceParts {
                http: crate::http::api(AppState {
                    payments: payments.clone(),
                    jwt: jwt.clone(),
                    direct_payments: config.direct_payments,
                }),
                grpc: Some(crate::grpc::api(payments.clone(), identity, audit.clone())),
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
            revocations: jwt.revocations().clone(),
            audit_publisher,
            payments,
            reconcile_interval: config.reconcile_interval,
            orders,
        })
    }

    /// The client of the order service: `platform up` points it at the order service's
    /// gRPC address once that is bound.
    pub fn order_book(&self) -> &OrderBook {
        &self.orders
    }
}

impl platform_http::Service for Application {
    type Config = PaymentServiceConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "PAYMENT_SERVICE_";

    fn config_from_env(env: &mut Env) -> PaymentServiceConfig {
        PaymentServiceConfig::from_env(env)
    }

    async fn migrate(config: &PaymentServiceConfig) -> Result<(), BoxError> {
        Ok(
            platform_db::migrate_only::<Migrator>(&config.database, &config.server.service_name)
                .await?,
        )
    }

    async fn build(config: PaymentServiceConfig) -> Result<Self, BoxError> {
        Application::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    /// Serves and relays events until `shutdown`, then closes the pool.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        let mut tasks = vec![
            tokio::spawn(self.relay.run(shutdown.clone())),
            tokio::spawn(self.audit_publisher.run(shutdown.clone())),
            tokio::spawn(
                self.payments
                    .reconcile(self.reconcile_interval, shutdown.clone()),
            ),
        ];
        tasks.extend(self.revocations.start(shutdown.clone().cancelled_owned()));
        let served = self.server.run_with(shutdown, tasks).await;
        platform_db::close(self.db).await;
        Ok(served?)
    }
}
