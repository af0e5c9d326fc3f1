//! The notification service, declared: its configuration, schema and Redis use (the bus
//! only), and the parts it builds on the kit (the senders, the use cases, the consumer of
//! events, the delivery worker, the APIs with their SSE streams).

use std::sync::Arc;

use platform_events::retention::Table;
use platform_http::{BoxError, CancellationToken};
use platform_service::{Apis, Declare, Kit, RedisUse};

use crate::config::{DEFAULTS, NotificationServiceConfig};
use crate::delivery::Worker;
use crate::http::AppState;
use crate::service::Notifications;
use crate::templates::Templates;

/// The notification service.
pub struct NotificationService;

/// A built, bound notification service.
pub type Application = platform_service::Application<NotificationService>;

impl Declare for NotificationService {
    type Config = NotificationServiceConfig;
    type Migrator = crate::migration::Migrator;
    const DEFAULTS: platform_http::ServerDefaults = DEFAULTS;
    const ENV_PREFIX: &'static str = "NOTIFICATION_SERVICE_";
    const REDIS: RedisUse = RedisUse::Bus;

    /// Builds the senders and the use cases; consumes events, delivers, and ends open SSE
    /// streams at shutdown (they never end by themselves: the server could not drain).
    async fn build(
        config: NotificationServiceConfig,
        kit: &mut Kit,
    ) -> Result<(Self, Apis), BoxError> {
        let senders = config.senders()?;
        let metrics = kit.metrics().clone();
        let templates = Templates::builtin()?;
        let delivery = config.delivery.clone();
        let notifications = Notifications::new(
            kit.db().clone(),
            templates,
            delivery,
            metrics.clone(),
            kit.name(),
        );
        let consumer = kit.consumer(kit.consumer_config());
        kit.consume(crate::consumers::notify_on_events(consumer, &notifications));
        kit.prune(Table::ProcessedEvents);
        let worker = Worker::new(notifications.clone(), senders.with_metrics(metrics));
        kit.task(move |stop| worker.run(stop));
        let streams_stop = CancellationToken::new();
        let on_shutdown = streams_stop.clone();
        kit.task(move |stop| async move {
            stop.cancelled().await;
            on_shutdown.cancel();
        });
        let http = crate::http::api(AppState {
            notifications,
            jwt: kit.jwt().clone(),
            internal_token: config.internal_token.map(Arc::new),
            heartbeat: config.sse_heartbeat,
            streams: crate::http::StreamSlots::new(config.sse_max_per_user),
            streams_stop,
        });
        Ok((Self, Apis { http, grpc: None }))
    }
}
