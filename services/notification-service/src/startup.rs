//! Wiring: builds the service from its configuration and runs it: the HTTP API, the event
//! consumer, and the delivery worker.

use std::sync::Arc;

use platform_auth::{Jwt, Revocations};
use platform_config::Env;
use platform_db::DatabaseCheck;
use platform_events::audit::AuditPublisher;
use platform_events::catalogue::{
    InventoryLow, OrderConfirmed, OrderFailed, OrderShipped, PaymentRefunded, PaymentReviewDecided,
    PaymentReviewRequested, UserDeleted, UserRegistered,
};
use platform_events::{Consumer, ConsumerConfig, Envelope, Event, HandlerError};
use platform_http::{BoxError, CancellationToken, Metrics, Readiness, Server, ServiceParts};
use platform_redis::{RedisCheck, RedisPool};
use sea_orm::DatabaseConnection;

use crate::config::NotificationServiceConfig;
use crate::delivery::Worker;
use crate::http::AppState;
use crate::migration::Migrator;
use crate::service::Notifications;
use crate::templates::Templates;

/// The event types this service acts on.
const HANDLED: &[&str] = &[
    UserRegistered::TYPE,
    UserDeleted::TYPE,
    OrderConfirmed::TYPE,
    OrderFailed::TYPE,
    OrderShipped::TYPE,
    PaymentRefunded::TYPE,
    PaymentReviewRequested::TYPE,
    PaymentReviewDecided::TYPE,
    InventoryLow::TYPE,
];

/// A built, bound notification service.
pub struct Application {
    server: Server,
    db: DatabaseConnection,
    consumer: Consumer,
    /// Publishes the service's audit records to the event bus.
    audit_publisher: AuditPublisher,
    worker: Worker,
    /// Ends open SSE streams when the service stops.
    streams_stop: CancellationToken,
    /// Applies the other services' token revocations while the service runs.
    revocations: Revocations,
}

impl Application {
    /// Connects and migrates the database, builds the senders, binds HTTP.
    pub async fn build(config: NotificationServiceConfig) -> Result<Self, BoxError> {
        let name = config.server.service_name.clone();
        let mut db = platform_db::connect(&config.database, &name).await?;
        let metrics = Metrics::new(&name);
        platform_db::observe(&mut db, &metrics);
        platform_db::migrate::<Migrator>(&db).await?;

        let mut readiness = Readiness::new().with("database", DatabaseCheck(db.clone()));
        if let Some(redis) = &config.redis {
            // Only the event bus uses Redis here: events wait in the streams while it is down.
            readiness.add_optional("redis", RedisCheck(RedisPool::new(redis)?));
        }
        let senders = match config.senders.clone() {
            Some(senders) => senders,
            None => config.channels.build()?,
        };
        let log_only = senders.log_only();
        if log_only.is_empty() {
            tracing::info!(?senders, "notification providers configured");
        } else {
            let channels: Vec<&str> = log_only.iter().map(|c| c.as_str()).collect();
            tracing::warn!(
                ?senders,
                log_only = ?channels,
                "no provider configured for these channels: their messages are logged, not sent (set SMTP_*, TWILIO_*, FCM_*)"
            );
        }

        let notifications = Notifications::new(
            db.clone(),
            Templates::builtin()?,
            config.delivery.clone(),
            metrics.clone(),
            &name,
        );
        let transport = config.events.connect().await?;
        let (audit, audit_publisher) =
            platform_events::audit::bus_audit(&name, transport.clone(), Some(metrics.clone()));
        let mut consumer = Consumer::new(transport, ConsumerConfig::new(&name, &config.events))
            .with_metrics(metrics.clone());
        for event_type in HANDLED {
            let notifications = notifications.clone();
            consumer = consumer.on(event_type, move |envelope: Envelope| {
                let notifications = notifications.clone();
                async move {
                    notifications
                        .handle_event(&envelope)
                        .await
                        .map_err(HandlerError::from)
                }
            });
        }
        let worker = Worker::new(notifications.clone(), senders.with_metrics(metrics.clone()));
        let streams_stop = CancellationToken::new();

        let jwt = Jwt::connect(config.jwt, config.redis.as_ref())?;
        let server = Server::bind(
            &config.server,
            ServiceParts {
                http: crate::http::api(AppState {
                    notifications,
                    jwt: jwt.clone(),
                    internal_token: config.internal_token.map(Arc::new),
                    heartbeat: config.sse_heartbeat,
                    streams: crate::http::StreamSlots::new(config.sse_max_per_user),
                    streams_stop: streams_stop.clone(),
                }),
                grpc: None,
                readiness,
                metrics,
                audit,
            },
        )
        .await?;
        Ok(Self {
            audit_publisher,
            server,
            db,
            consumer,
            worker,
            streams_stop,
            revocations: jwt.revocations().clone(),
        })
    }
}

impl platform_http::Service for Application {
    type Config = NotificationServiceConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "NOTIFICATION_SERVICE_";

    fn config_from_env(env: &mut Env) -> NotificationServiceConfig {
        NotificationServiceConfig::from_env(env)
    }

    async fn migrate(config: &NotificationServiceConfig) -> Result<(), BoxError> {
        Ok(
            platform_db::migrate_only::<Migrator>(&config.database, &config.server.service_name)
                .await?,
        )
    }

    async fn build(config: NotificationServiceConfig) -> Result<Self, BoxError> {
        Application::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    /// Serves, consumes events and delivers until `shutdown`, then closes the pool.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        let streams_stop = self.streams_stop.clone();
        let stop_streams = {
            let shutdown = shutdown.clone();
            // SSE streams never end by themselves; the server could not drain with them open.
            tokio::spawn(async move {
                shutdown.cancelled().await;
                streams_stop.cancel();
            })
        };
        let mut tasks = vec![
            tokio::spawn(self.audit_publisher.run(shutdown.clone())),
            tokio::spawn(self.consumer.run(shutdown.clone())),
            tokio::spawn(self.worker.run(shutdown.clone())),
            stop_streams,
        ];
        tasks.extend(self.revocations.start(shutdown.clone().cancelled_owned()));
        let served = self.server.run_with(shutdown, tasks).await;
        platform_db::close(self.db).await;
        Ok(served?)
    }
}
