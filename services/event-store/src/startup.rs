//! The event store, declared: its configuration, schema and Redis use (the bus only), and
//! the parts it builds on the kit (its consumer of every event family, its admin API).

use platform_events::catalogue::FAMILIES;
use platform_events::{Envelope, HandlerError, store};
use platform_http::BoxError;
use platform_service::{Apis, Declare, Kit, RedisUse};

use crate::config::{DEFAULTS, EventStoreConfig};
use crate::http::AppState;

/// The event store.
pub struct EventStore;

/// A built, bound event store.
pub type Application = platform_service::Application<EventStore>;

impl Declare for EventStore {
    type Config = EventStoreConfig;
    type Migrator = crate::migration::Migrator;
    const DEFAULTS: platform_http::ServerDefaults = DEFAULTS;
    const ENV_PREFIX: &'static str = "EVENT_STORE_";
    const REDIS: RedisUse = RedisUse::Bus;

    /// Consumes every event family into the store.
    async fn build(_config: EventStoreConfig, kit: &mut Kit) -> Result<(Self, Apis), BoxError> {
        let db = kit.db().clone();
        // Appending is idempotent on the event id: redeliveries add nothing. A read's events
        // go in as one statement (one commit, not one per event).
        let consumer = kit.consumer(kit.consumer_config()).on_families(FAMILIES, {
            let db = db.clone();
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
        kit.consume(consumer);
        let http = crate::http::api(AppState {
            db,
            transport: kit.transport().clone(),
            jwt: kit.jwt().clone(),
        });
        Ok((Self, Apis { http, grpc: None }))
    }
}
