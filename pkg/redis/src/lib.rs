//! Redis access shared by the services: configuration, a small connection pool, readiness.
//!
//! Owns [`RedisConfig`] (`REDIS_URL`, `REDIS_POOL_SIZE`) and [`RedisPool`]. The read cache
//! (`platform-cache`), the event transport (`platform-events`), token revocation and rate
//! limits build on them; a crate of its own so that none of those depends on another only for
//! a Redis URL.
//!
//! Connections are opened lazily and re-established by `redis`'s connection manager, so a
//! service starts (and reports "not ready" on `/ready`) while Redis is down, instead of
//! crash-looping.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use platform_config::{Env, ExposeSecret, SecretString};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

pub use redis;

/// Where Redis is.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `REDIS_URL`: `redis://[:password@]host:port[/db]`, or the bare `host:port` form.
    pub url: SecretString,
    /// `REDIS_POOL_SIZE`: multiplexed connections to spread load over.
    pub pool_size: usize,
}

impl RedisConfig {
    /// `None` when `REDIS_URL` is unset: the service then runs on in-process equivalents.
    pub fn from_env(env: &mut Env) -> Option<Self> {
        let pool_size = env.in_range("REDIS_POOL_SIZE", 10, 1..=1024);
        let raw = env.secret("REDIS_URL")?;
        let url = normalize_url(raw.expose_secret());
        if redis::Client::open(url.as_str()).is_err() {
            env.report("REDIS_URL", "a redis://host:6379 URL or host:port");
            return None;
        }
        Some(Self {
            url: SecretString::from(url),
            pool_size,
        })
    }

    /// Redis at `url` (either form `REDIS_URL` takes) with a pool of 4, for tests and tools.
    /// The URL is not checked here: [`RedisPool::new`] refuses a malformed one.
    pub fn new(url: &str) -> Self {
        Self {
            url: SecretString::from(normalize_url(url)),
            pool_size: 4,
        }
    }
}

/// The specification writes `REDIS_URL=redis:6379` (host `redis`, no scheme); accept it.
fn normalize_url(raw: &str) -> String {
    if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("redis://{raw}")
    }
}

#[derive(Debug, thiserror::Error)]
/// Why a Redis connection could not be had.
pub enum Error {
    /// The configured URL does not parse as a Redis URL; retrying will not help.
    #[error("invalid Redis URL")]
    InvalidUrl,
    /// Redis could not be reached, did not answer within 2 s, or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A round-robin set of lazily opened, self-healing multiplexed connections.
#[derive(Clone)]
pub struct RedisPool {
    client: redis::Client,
    /// One slot per connection; filled on first use.
    slots: Arc<[OnceCell<ConnectionManager>]>,
    /// Next slot to hand out.
    next: Arc<AtomicUsize>,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("size", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl RedisPool {
    /// A pool of `pool_size` connections (at least one), none opened yet: building it never
    /// touches the network. Fails only with [`Error::InvalidUrl`].
    pub fn new(config: &RedisConfig) -> Result<Self, Error> {
        let client =
            redis::Client::open(config.url.expose_secret()).map_err(|_| Error::InvalidUrl)?;
        let slots: Vec<OnceCell<ConnectionManager>> = (0..config.pool_size.max(1))
            .map(|_| OnceCell::new())
            .collect();
        Ok(Self {
            client,
            slots: slots.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// A connection; cheap to clone, safe to use concurrently.
    pub async fn get(&self) -> Result<ConnectionManager, Error> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let manager = self.slots[index]
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2);
                self.client.get_connection_manager_with_config(config)
            })
            .await?;
        Ok(manager.clone())
    }

    /// The client the pool connects with: for what needs a dedicated connection of its own
    /// (pub/sub subscriptions cannot share a multiplexed one).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Sends `PING` on one of the pool's connections (opening it if needed); `Err` when Redis
    /// cannot be reached or does not answer.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut conn = self.get().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

/// Readiness check: Redis answers PING.
#[derive(Clone)]
pub struct RedisCheck(pub RedisPool);

impl platform_health::HealthCheck for RedisCheck {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .ping()
                .await
                .map_err(|e| format!("redis unreachable: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_bare_host_port_form_is_accepted() {
        let mut env = Env::from_pairs([("REDIS_URL", "redis:6379"), ("REDIS_POOL_SIZE", "3")]);
        let config = RedisConfig::from_env(&mut env).unwrap();
        assert_eq!(config.url.expose_secret(), "redis://redis:6379");
        assert_eq!(config.pool_size, 3);
        assert!(env.finish().is_ok());
    }

    #[test]
    fn unset_url_means_no_redis_and_bad_pool_size_is_reported() {
        let mut env = Env::from_pairs([("REDIS_POOL_SIZE", "0")]);
        assert!(RedisConfig::from_env(&mut env).is_none());
        assert_eq!(env.issues()[0].variable, "REDIS_POOL_SIZE");
    }

    #[tokio::test]
    async fn ping_fails_cleanly_when_redis_is_down() {
        // Port 1 on loopback: nothing listens there.
        let pool = RedisPool::new(&RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        assert!(pool.ping().await.is_err());
    }

    platform_test_backends::redis_tests!(ping_succeeds_against_a_real_redis_when_configured);

    async fn ping_succeeds_against_a_real_redis_when_configured() {
        let redis = platform_test_backends::RedisNamespace::create();
        let pool = RedisPool::new(&RedisConfig::new(&redis.url)).unwrap();
        pool.ping().await.unwrap();
    }
}
