//! The event store's configuration.

use std::time::Duration;

use platform_auth::JwtConfig;
use platform_config::Env;
use platform_db::DatabaseConfig;
use platform_events::EventsConfig;
use platform_http::{ServerConfig, ServerDefaults};
use platform_redis::RedisConfig;

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "event-store",
    port: 8086,
    grpc_port: 0,
    request_timeout: Duration::from_secs(30),
    per_core: false,
    edge: false,
};

#[derive(Debug, Clone)]
pub struct EventStoreConfig {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: Option<RedisConfig>,
    pub events: EventsConfig,
    /// To verify the administrators' access tokens.
    pub jwt: JwtConfig,
}

impl EventStoreConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let server = ServerConfig::from_env(env, DEFAULTS);
        let jwt = JwtConfig::from_env(env, server.environment);
        let redis = RedisConfig::from_env(env);
        Self {
            database: DatabaseConfig::from_env(env),
            events: EventsConfig::from_env(env, redis.clone()),
            redis,
            jwt,
            server,
        }
    }

    /// Tests: loopback, free port, the embedded bus in `events`'s directory.
    pub fn for_tests(database: DatabaseConfig, events: EventsConfig, jwt_secret: &str) -> Self {
        Self {
            server: ServerConfig::for_tests(DEFAULTS.name),
            database,
            redis: events.redis.clone(),
            events,
            jwt: JwtConfig::with_secret(jwt_secret),
        }
    }
}
