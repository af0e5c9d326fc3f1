//! The event store's configuration.

use std::time::Duration;

use platform_config::Env;
use platform_db::DatabaseConfig;
use platform_events::EventsConfig;
use platform_http::ServerDefaults;
use platform_service::{CommonConfig, ports};

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "event-store",
    port: ports::EVENT_STORE.http,
    grpc_port: ports::EVENT_STORE.grpc,
    request_timeout: Duration::from_secs(30),
    per_core: false,
    edge: false,
};

/// The event store's settings: only the common ones (it derefs to them); its JWT settings
/// verify the administrators' access tokens.
#[derive(Debug, Clone)]
pub struct EventStoreConfig {
    /// Server, database, Redis (the event bus only), JWT.
    pub common: CommonConfig,
}

platform_service::extends_common!(EventStoreConfig);

impl EventStoreConfig {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            common: CommonConfig::from_env(env, DEFAULTS),
        }
    }

    /// Tests: loopback, free port, the bus `events` names (Redis or embedded).
    pub fn for_tests(database: DatabaseConfig, events: EventsConfig, jwt_secret: &str) -> Self {
        let mut common = CommonConfig::for_tests(DEFAULTS, database, jwt_secret);
        common.redis = events.redis.clone();
        common.events = events;
        Self { common }
    }
}
