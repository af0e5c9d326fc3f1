//! Wiring: builds the service from its configuration and runs it (HTTP, the outbox relay, the
//! saga recovery task and the consumer of payment events).

use platform_auth::service_identity::ServiceIdentity;
use platform_auth::{Jwt, Revocations};
use platform_config::Env;
use platform_db::DatabaseCheck;
use platform_events::audit::AuditPublisher;
use platform_events::catalogue::{PaymentCaptured, PaymentRefunded};
use platform_events::{Consumer, ConsumerConfig, Envelope, Event, HandlerError, Relay};
use platform_http::{BoxError, CancellationToken, Metrics, Readiness, Server, ServiceParts};
use platform_redis::{RedisCheck, RedisPool};
use sea_orm::DatabaseConnection;

use crate::clients::Clients;
use crate::config::OrderServiceConfig;
use crate::http::AppState;
use crate::migration::Migrator;
use crate::reconcile::Reconciler;
use crate::saga::Saga;
use crate::service::Orders;

/// A built, bound order service.
pub struct Application {
    server: Server,
    db: DatabaseConnection,
    relay: Relay,
    /// Publishes the service's audit records to the event bus.
    audit_publisher: AuditPublisher,
    consumer: Consumer,
    saga: Saga,
    reconciler: Reconciler,
    reconcile_interval: std::time::Duration,
    /// Applies the other services' token revocations while the service runs.
    revocations: Revocations,
}

impl Application {
    /// Connects and migrates the database, builds the clients, binds HTTP and gRPC.
    pub async fn build(config: OrderServiceConfig) -> Result<Self, BoxError> {
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
        let relay =
            Relay::new(db.clone(), transport.clone(), &config.events).with_metrics(metrics.clone());
        let identity = ServiceIdentity::new(&name, &config.internal)?;
        let clients = Clients::new(&config.clients, &identity, &metrics)?;
        let grpc = crate::grpc::api(db.clone(), identity);
        let reconciler = Reconciler::new(
            db.clone(),
            clients.clone(),
            config.reconcile_window,
            &metrics,
        );
        let saga = Saga::new(db.clone(), clients, config.saga.clone(), &metrics, &name);
        let orders = Orders::new(db.clone(), saga.clone(), &name, audit.clone());

        let consumer_config = ConsumerConfig::new(&name, &config.events);
        let group = consumer_config.group.clone();
        let on_refund = orders.clone();
        let on_capture = orders.clone();
        let consumer = Consumer::new(transport, consumer_config)
            .with_metrics(metrics.clone())
            .on(PaymentRefunded::TYPE, move |envelope: Envelope| {
                let orders = on_refund.clone();
                let group = group.clone();
                async move {
                    let Some(refund) = envelope.decode::<PaymentRefunded>() else {
                        return Ok(());
                    };
                    orders
                        .apply_refund(&group, envelope.id, &refund?)
                        .await
                        .map_err(HandlerError::from)
                }
            })
            .on(PaymentCaptured::TYPE, move |envelope: Envelope| {
                let orders = on_capture.clone();
                async move {
                    let Some(captured) = envelope.decode::<PaymentCaptured>() else {
                        return Ok(());
                    };
                    orders
                        .repair_late_capture(&captured?)
                        .await
                        .map(|_| ())
                        .map_err(HandlerError::from)
                }
            });

        let jwt = Jwt::connect(config.jwt, config.redis.as_ref())?;
        let server = Server::bind(
            &config.server,
            ServiceParts {
                http: crate::http::api(AppState {
                    orders,
                    reconciler: reconciler.clone(),
                    jwt: jwt.clone(),
                }),
                grpc: Some(grpc),
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
            consumer,
            saga,
            reconciler,
            reconcile_interval: config.reconcile_interval,
            revocations: jwt.revocations().clone(),
        })
    }
}

impl platform_http::Service for Application {
    type Config = OrderServiceConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "ORDER_SERVICE_";

    fn config_from_env(env: &mut Env) -> OrderServiceConfig {
        OrderServiceConfig::from_env(env)
    }

    async fn migrate(config: &OrderServiceConfig) -> Result<(), BoxError> {
        Ok(
            platform_db::migrate_only::<Migrator>(&config.database, &config.server.service_name)
                .await?,
        )
    }

    async fn build(config: OrderServiceConfig) -> Result<Self, BoxError> {
        Application::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    /// Serves, relays events, recovers stalled sagas and consumes payment events until
    /// `shutdown`, then closes the pool.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        let mut tasks = vec![
            tokio::spawn(self.relay.run(shutdown.clone())),
            tokio::spawn(self.audit_publisher.run(shutdown.clone())),
            tokio::spawn(self.saga.recover(shutdown.clone())),
            tokio::spawn(
                self.reconciler
                    .run(self.reconcile_interval, shutdown.clone()),
            ),
            tokio::spawn(self.consumer.run(shutdown.clone())),
        ];
        tasks.extend(self.revocations.start(shutdown.clone().cancelled_owned()));
        let served = self.server.run_with(shutdown, tasks).await;
        platform_db::close(self.db).await;
        Ok(served?)
    }
}
