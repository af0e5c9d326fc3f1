//! `EVENTS_*` settings and the choice of transport.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use platform_config::{Env, ExposeSecret};
use platform_redis::RedisConfig;

use crate::transport::embedded::EmbeddedTransport;
use crate::transport::redis::RedisTransport;
use crate::transport::{BusError, Transport};

/// Where events travel and how hard consumers try.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Redis Streams when set (`REDIS_URL`, read once by the service), else the embedded bus
    /// under `DATA_DIR`.
    pub redis: Option<RedisConfig>,
    /// `DATA_DIR`: where the embedded bus keeps `event-bus.db`.
    pub data_dir: PathBuf,
    /// `EVENTS_NAMESPACE`: prefix of the Redis stream keys.
    pub namespace: String,
    /// `EVENTS_MAX_ATTEMPTS`: handler attempts before an event is dead-lettered.
    pub max_attempts: u32,
    /// `EVENTS_VISIBILITY_TIMEOUT`: how long a delivery may stay unacked before another
    /// consumer of the group takes it over.
    pub visibility_timeout: Duration,
    /// `EVENTS_RETRY_BASE`: the first backoff between attempts (of a handler, of the relay),
    /// doubled after each further failure.
    pub retry_base: Duration,
    /// `EVENTS_RETRY_MAX`: the cap on one backoff.
    pub retry_max: Duration,
    /// `EVENTS_STREAM_MAXLEN`: approximate cap of each stream's length.
    pub stream_max_len: usize,
    /// `EVENTS_RELAY_INTERVAL`: how often the outbox relay looks for new rows when idle.
    pub relay_interval: Duration,
    /// `EVENTS_BATCH`: rows per relay round, messages per consumer read.
    pub batch: usize,
    /// `EVENTS_RETENTION`: how long published outbox rows and processed-event records are
    /// kept before they are deleted (at least an hour: a shorter window would let a late
    /// redelivery be handled twice).
    pub retention: Duration,
}

/// The shortest `EVENTS_RETENTION` accepted.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);

fn retention(env: &mut Env, default: Duration) -> Duration {
    let retention = env.or("EVENTS_RETENTION", default);
    if retention < MIN_RETENTION {
        env.report(
            "EVENTS_RETENTION",
            "a duration of at least 1h, such as 7d or 168h",
        );
        return default;
    }
    retention
}

impl EventsConfig {
    /// The `EVENTS_*` settings; `redis` is the service's own Redis configuration.
    pub fn from_env(env: &mut Env, redis: Option<RedisConfig>) -> Self {
        let defaults = Self::embedded("./data");
        Self {
            redis,
            data_dir: env.or("DATA_DIR", defaults.data_dir),
            namespace: env.or("EVENTS_NAMESPACE", defaults.namespace),
            max_attempts: env.in_range("EVENTS_MAX_ATTEMPTS", defaults.max_attempts, 1..=1000),
            visibility_timeout: env.or("EVENTS_VISIBILITY_TIMEOUT", defaults.visibility_timeout),
            retry_base: env.or("EVENTS_RETRY_BASE", defaults.retry_base),
            retry_max: env.or("EVENTS_RETRY_MAX", defaults.retry_max),
            stream_max_len: env.in_range(
                "EVENTS_STREAM_MAXLEN",
                defaults.stream_max_len,
                100..=100_000_000,
            ),
            relay_interval: env.or("EVENTS_RELAY_INTERVAL", defaults.relay_interval),
            batch: env.in_range("EVENTS_BATCH", defaults.batch, 1..=10_000),
            retention: retention(env, defaults.retention),
        }
    }

    /// The embedded bus under `data_dir`, with default settings.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            redis: None,
            data_dir: data_dir.into(),
            namespace: "events".to_owned(),
            max_attempts: 5,
            visibility_timeout: Duration::from_secs(30),
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
            stream_max_len: 1_000_000,
            relay_interval: Duration::from_millis(100),
            batch: 100,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// Opens the configured transport.
    pub async fn connect(&self) -> Result<Arc<dyn Transport>, BusError> {
        match &self.redis {
            Some(redis) => Ok(Arc::new(RedisTransport::new(
                redis.url.expose_secret(),
                &self.namespace,
                self.stream_max_len,
            )?)),
            None => Ok(Arc::new(
                EmbeddedTransport::open(&self.data_dir, self.stream_max_len).await?,
            )),
        }
    }

    /// `DATA_DIR`: where the embedded bus keeps `event-bus.db` (unused with Redis).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `redis` or `embedded`, for logs.
    pub fn transport_name(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "embedded"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let mut env = Env::from_pairs([
            ("EVENTS_MAX_ATTEMPTS", "0"),
            ("EVENTS_VISIBILITY_TIMEOUT", "soon"),
        ]);
        let config = EventsConfig::from_env(&mut env, None);
        assert_eq!(config.max_attempts, 5);
        let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        assert_eq!(vars, ["EVENTS_MAX_ATTEMPTS", "EVENTS_VISIBILITY_TIMEOUT"]);
        assert_eq!(config.transport_name(), "embedded");

        let mut env = Env::from_pairs([("EVENTS_BATCH", "7")]);
        let config = EventsConfig::from_env(&mut env, Some(RedisConfig::new("redis:6379")));
        assert_eq!(config.transport_name(), "redis");
        assert_eq!(config.batch, 7);
        assert_eq!(
            config.redis.unwrap().url.expose_secret(),
            "redis://redis:6379"
        );
    }

    #[test]
    fn retention_defaults_to_a_week_and_refuses_less_than_an_hour() {
        let mut env = Env::from_pairs([("EVENTS_RETENTION", "14d")]);
        let config = EventsConfig::from_env(&mut env, None);
        assert_eq!(config.retention, Duration::from_secs(14 * 24 * 3600));
        assert!(env.issues().is_empty());

        let mut env = Env::from_pairs([("EVENTS_RETENTION", "30m")]);
        let config = EventsConfig::from_env(&mut env, None);
        assert_eq!(config.retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(env.issues()[0].variable, "EVENTS_RETENTION");
    }
}
