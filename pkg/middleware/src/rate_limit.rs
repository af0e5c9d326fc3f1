//! Token-bucket rate limiting.
//!
//! A limit of `n` per minute is a bucket of `n` tokens refilled continuously at `n/60` per
//! second: a client may spend a whole minute's allowance in a burst, then one request per
//! `60/n` seconds. With Redis the bucket lives in Redis and every gateway replica shares it
//! (one atomic script per request, using Redis's clock so replicas' clocks do not matter);
//! without Redis, or for five seconds after Redis fails, each replica keeps its own buckets.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use platform_redis::RedisPool;

/// Whose bucket: a client address or a user. A small value, so a check allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// A client address; written `ip:<address>`.
    Ip(std::net::IpAddr),
    /// An authenticated user, by id; written `user:<id>`.
    User(uuid::Uuid),
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitKey::Ip(ip) => write!(f, "ip:{ip}"),
            LimitKey::User(user) => write!(f, "user:{user}"),
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on; refused ones are answered 429.
    pub allowed: bool,
    /// The bucket's size (`RateLimit-Limit`).
    pub limit: u32,
    /// Tokens left after this request (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Seconds until the bucket is full again (`RateLimit-Reset`).
    pub reset_secs: u64,
    /// When refused: seconds until one token is available (`Retry-After`).
    pub retry_after_secs: u64,
}

impl Decision {
    /// Writes `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (and `Retry-After`
    /// when refused).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in self.headers() {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }

    /// The headers [`Decision::write_headers`] writes, as names and numbers (for writers that
    /// have no `HeaderMap`).
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("ratelimit-limit", u64::from(self.limit)),
            ("ratelimit-remaining", u64::from(self.remaining)),
            ("ratelimit-reset", self.reset_secs),
        ]
        .into_iter()
        .chain((!self.allowed).then_some(("retry-after", self.retry_after_secs)))
    }
}

type Keyed = governor::RateLimiter<
    LimitKey,
    DashMapStateStore<LimitKey>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// In-process buckets, one limiter per distinct limit.
#[derive(Default)]
struct Local {
    limiters: Mutex<HashMap<u32, Arc<Keyed>>>,
}

impl Local {
    fn limiter(&self, per_minute: NonZeroU32) -> Arc<Keyed> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(limiters.entry(per_minute.get()).or_insert_with(|| {
            Arc::new(
                governor::RateLimiter::dashmap(Quota::per_minute(per_minute))
                    .with_middleware::<StateInformationMiddleware>(),
            )
        }))
    }

    fn check(&self, key: &LimitKey, per_minute: NonZeroU32) -> Decision {
        let limit = per_minute.get();
        let refill = 60.0 / f64::from(limit);
        match self.limiter(per_minute).check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    reset_secs: (f64::from(limit - remaining) * refill).ceil() as u64,
                    retry_after_secs: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_secs: (f64::from(limit) * refill).ceil() as u64,
                    retry_after_secs: ceil_secs(wait).max(1),
                }
            }
        }
    }

    /// Forgets buckets that are full again, so memory follows active clients only.
    fn prune(&self) {
        let limiters: Vec<_> = self
            .limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for limiter in limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The token bucket as one atomic Redis script. Returns {allowed, remaining, wait_ms}.
const SCRIPT: &str = r#"
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * per_ms)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
return {allowed, math.floor(tokens), wait}
"#;

/// How long to use local buckets after Redis failed, before trying Redis again.
const REDIS_PAUSE: Duration = Duration::from_secs(5);
/// A rate-limit check may not add more than this to a request.
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);

struct Shared {
    pool: RedisPool,
    script: redis::Script,
    /// Set while Redis is considered down.
    paused_until: Mutex<Option<Instant>>,
    prefix: String,
}

/// Token buckets by key. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    local: Arc<Local>,
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl RateLimiter {
    /// Buckets in this process only.
    pub fn local() -> Self {
        Self {
            local: Arc::new(Local::default()),
            shared: None,
        }
    }

    /// Buckets in Redis (keys `<prefix>:<key>:<limit>`), shared by every replica.
    pub fn shared(pool: RedisPool, prefix: &str) -> Self {
        Self {
            local: Arc::new(Local::default()),
            shared: Some(Arc::new(Shared {
                pool,
                script: redis::Script::new(SCRIPT),
                paused_until: Mutex::new(None),
                prefix: prefix.to_owned(),
            })),
        }
    }

    /// Takes one token from `key`'s bucket of `per_minute`.
    pub async fn check(&self, key: &LimitKey, per_minute: NonZeroU32) -> Decision {
        if let Some(shared) = &self.shared {
            let paused = shared
                .paused_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|until| Instant::now() < until);
            if !paused {
                match tokio::time::timeout(REDIS_TIMEOUT, self.check_redis(shared, key, per_minute))
                    .await
                {
                    Ok(Ok(decision)) => return decision,
                    Ok(Err(error)) => self.pause(shared, &error.to_string()),
                    Err(_) => self.pause(shared, "no answer in time"),
                }
            }
        }
        self.local.check(key, per_minute)
    }

    fn pause(&self, shared: &Shared, reason: &str) {
        let mut paused = shared
            .paused_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if paused.is_none_or(|until| Instant::now() >= until) {
            tracing::warn!(%reason, "Redis rate limiting unavailable; using in-process limits for a while");
        }
        *paused = Some(Instant::now() + REDIS_PAUSE);
    }

    async fn check_redis(
        &self,
        shared: &Shared,
        key: &LimitKey,
        per_minute: NonZeroU32,
    ) -> Result<Decision, platform_redis::Error> {
        let mut conn = shared.pool.get().await?;
        let limit = per_minute.get();
        let per_ms = f64::from(limit) / 60_000.0;
        let (allowed, remaining, wait_ms): (i64, i64, i64) = shared
            .script
            .key(format!("{}:{key}:{limit}", shared.prefix))
            .arg(limit)
            .arg(per_ms)
            .invoke_async(&mut conn)
            .await?;
        let remaining = u32::try_from(remaining.max(0)).unwrap_or(0);
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining,
            reset_secs: (f64::from(limit - remaining.min(limit)) / per_ms / 1000.0).ceil() as u64,
            retry_after_secs: ceil_secs(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
                .max(u64::from(allowed != 1)),
        })
    }

    /// Frees memory of idle in-process buckets; call every minute or so.
    pub fn prune(&self) {
        self.local.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(octets: [u8; 4]) -> LimitKey {
        LimitKey::Ip(std::net::IpAddr::from(octets))
    }

    fn limit(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    #[tokio::test]
    async fn a_bucket_allows_its_size_then_refuses_with_retry_after() {
        let limiter = RateLimiter::local();
        for expected_remaining in (0..5).rev() {
            let decision = limiter.check(&ip([1, 2, 3, 4]), limit(5)).await;
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
        }
        let refused = limiter.check(&ip([1, 2, 3, 4]), limit(5)).await;
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // One token every 12 s.
        assert!((1..=12).contains(&refused.retry_after_secs), "{refused:?}");
        // Other keys have their own bucket.
        assert!(limiter.check(&ip([5, 6, 7, 8]), limit(5)).await.allowed);
    }

    #[test]
    fn headers_follow_the_ratelimit_fields() {
        let mut headers = HeaderMap::new();
        Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset_secs: 60,
            retry_after_secs: 6,
        }
        .write_headers(&mut headers);
        assert_eq!(headers["ratelimit-limit"], "10");
        assert_eq!(headers["ratelimit-remaining"], "0");
        assert_eq!(headers["ratelimit-reset"], "60");
        assert_eq!(headers["retry-after"], "6");
    }

    #[tokio::test]
    async fn a_redis_that_is_down_falls_back_to_local_buckets() {
        let pool =
            RedisPool::new(&platform_redis::RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        let limiter = RateLimiter::shared(pool, "test");
        let started = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(&ip([9, 9, 9, 9]), limit(3)).await.allowed);
        }
        assert!(
            !limiter.check(&ip([9, 9, 9, 9]), limit(3)).await.allowed,
            "the local bucket limits"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "Redis is skipped after it failed"
        );
    }

    platform_test_backends::redis_tests!(two_limiters_on_one_redis_share_the_bucket);

    async fn two_limiters_on_one_redis_share_the_bucket() {
        let redis = platform_test_backends::RedisNamespace::create();
        let config = platform_redis::RedisConfig::new(&redis.url);
        let a = RateLimiter::shared(RedisPool::new(&config).unwrap(), &redis.namespace);
        let b = RateLimiter::shared(RedisPool::new(&config).unwrap(), &redis.namespace);
        let user = LimitKey::User(uuid::Uuid::new_v4());
        let mut allowed = 0;
        for i in 0..10 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            if limiter.check(&user, limit(6)).await.allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 6, "one bucket across both replicas");
        let refused = a.check(&user, limit(6)).await;
        assert!(
            !refused.allowed && refused.retry_after_secs >= 1,
            "{refused:?}"
        );
    }
}
