//! L2: Redis, reached only through scripts that resolve the generation and the key in one
//! round trip, every call bounded by the L2 timeout and folded into the health flag.

use super::*;

/// Whether L2 is answering, and when a degraded L2 may be tried again.
pub(super) struct L2Health {
    pub(super) degraded: AtomicBool,
    /// Milliseconds since `origin` before which reads skip a degraded L2.
    pub(super) retry_at: AtomicU64,
    pub(super) origin: Instant,
}

impl L2Health {
    pub(super) fn new() -> Self {
        Self {
            degraded: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn may_read(&self) -> bool {
        !self.degraded.load(Ordering::Acquire)
            || self.now_ms() >= self.retry_at.load(Ordering::Acquire)
    }

    /// Returns whether this success ended a degraded period.
    pub(super) fn succeeded(&self) -> bool {
        self.degraded.load(Ordering::Acquire) && self.degraded.swap(false, Ordering::AcqRel)
    }

    /// Returns whether this failure started a degraded period.
    pub(super) fn failed(&self) -> bool {
        let retry_ms = u64::try_from(L2_RETRY_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        self.retry_at
            .store(self.now_ms().saturating_add(retry_ms), Ordering::Release);
        !self.degraded.swap(true, Ordering::AcqRel)
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum L2Error {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Redis(#[from] platform_redis::Error),
}

/// What an L2 lookup found. `generation` is the generation the lookup read, for the write-back.
pub(super) enum L2Lookup<V> {
    /// No L2, degraded, or it failed: do not write back either.
    Unavailable,
    Miss {
        generation: String,
    },
    Hit(Slot<V>),
}

// Scripts take the generation key as KEYS[1] and resolve `{prefix}:g{gen}:{key}` server-side,
// so a lookup or write is one round trip however the generation moves.

/// ARGV: prefix, key. Returns `{generation, value|nil, pttl|nil}`.
pub(super) static READ: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local gen = redis.call('GET', KEYS[1]) or '0'
local key = ARGV[1] .. ':g' .. gen .. ':' .. ARGV[2]
local value = redis.call('GET', key)
local ttl = false
if value then ttl = redis.call('PTTL', key) end
return {gen, value, ttl}
",
    )
});

/// ARGV: prefix, key, expected generation ('' = any), value, ttl ms, channel ('' = none), message.
/// Returns 1 if written, 0 if the generation moved on.
pub(super) static WRITE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local gen = redis.call('GET', KEYS[1]) or '0'
if ARGV[3] ~= '' and gen ~= ARGV[3] then return 0 end
redis.call('SET', ARGV[1] .. ':g' .. gen .. ':' .. ARGV[2], ARGV[4], 'PX', ARGV[5])
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return 1
",
    )
});

/// ARGV: prefix, key, channel, message.
pub(super) static INVALIDATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local gen = redis.call('GET', KEYS[1]) or '0'
redis.call('DEL', ARGV[1] .. ':g' .. gen .. ':' .. ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
",
    )
});

/// ARGV: channel, message. Returns the new generation.
pub(super) static INVALIDATE_ALL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local gen = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return gen
",
    )
});

impl<V> Inner<V>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    pub(super) async fn l2_call<T>(
        &self,
        call: impl Future<Output = Result<T, platform_redis::Error>>,
    ) -> Result<T, L2Error> {
        match tokio::time::timeout(self.l2_timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(L2Error::Timeout(self.l2_timeout)),
        }
    }

    /// Updates health and the error counter; returns the value on success.
    pub(super) fn l2_outcome<T>(
        &self,
        operation: &'static str,
        result: Result<T, L2Error>,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                if self.health.succeeded() {
                    tracing::info!(cache = self.name, "redis is answering again; L2 restored");
                }
                Some(value)
            }
            Err(error) => {
                self.counters.errors.increment(1);
                if self.health.failed() {
                    tracing::warn!(
                        cache = self.name, operation, %error,
                        "redis L2 failed; serving from L1 and the loader until it answers"
                    );
                } else {
                    tracing::debug!(cache = self.name, operation, %error, "redis L2 still failing");
                }
                None
            }
        }
    }

    pub(super) async fn l2_lookup(&self, key: &str) -> L2Lookup<V> {
        let Some(pool) = &self.l2 else {
            return L2Lookup::Unavailable;
        };
        if !self.health.may_read() {
            return L2Lookup::Unavailable;
        }
        let result = self
            .l2_call(async {
                let mut conn = pool.get().await?;
                let mut call = READ.prepare_invoke();
                call.key(&self.gen_key).arg(&self.key_prefix).arg(key);
                Ok(call
                    .invoke_async::<(String, Option<String>, Option<i64>)>(&mut conn)
                    .await?)
            })
            .await;
        let Some((generation, found, pttl)) = self.l2_outcome("read", result) else {
            return L2Lookup::Unavailable;
        };
        let Some(json) = found else {
            self.counters.l2_misses.increment(1);
            return L2Lookup::Miss { generation };
        };
        match serde_json::from_str::<V>(&json) {
            Ok(value) => {
                self.counters.l2_hits.increment(1);
                let mut ttl = self.draw_ttl();
                // L1 must not outlive the L2 copy it was filled from.
                if let Some(remaining) = pttl.and_then(|ms| u64::try_from(ms).ok()) {
                    ttl = ttl.min(Duration::from_millis(remaining)).max(MIN_TTL);
                }
                L2Lookup::Hit(Slot { value, ttl })
            }
            Err(error) => {
                // Usually a schema change: treat as a miss, the load overwrites it.
                self.counters.errors.increment(1);
                self.counters.l2_misses.increment(1);
                tracing::warn!(cache = self.name, key, %error, "undecodable L2 entry; reloading");
                L2Lookup::Miss { generation }
            }
        }
    }

    /// Writes `value` under generation `expected_gen` (`None`: the current one), optionally
    /// broadcasting an invalidation of `key`. Returns whether it was written.
    pub(super) async fn l2_store(
        &self,
        key: &str,
        expected_gen: Option<&str>,
        value: &V,
        ttl: Duration,
        broadcast: bool,
    ) -> bool {
        let Some(pool) = &self.l2 else {
            return false;
        };
        let json = match serde_json::to_string(value) {
            Ok(json) => json,
            Err(error) => {
                self.counters.errors.increment(1);
                tracing::warn!(cache = self.name, key, %error, "value does not serialise; not stored in L2");
                return false;
            }
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let (channel, message) = if broadcast {
            (self.channel.as_str(), self.message(Some(key)))
        } else {
            ("", String::new())
        };
        let result = self
            .l2_call(async {
                let mut conn = pool.get().await?;
                let mut call = WRITE.prepare_invoke();
                call.key(&self.gen_key)
                    .arg(&self.key_prefix)
                    .arg(key)
                    .arg(expected_gen.unwrap_or(""))
                    .arg(json)
                    .arg(ttl_ms)
                    .arg(channel)
                    .arg(message);
                Ok(call.invoke_async::<i64>(&mut conn).await?)
            })
            .await;
        self.l2_outcome("write", result) == Some(1)
    }

    pub(super) async fn invalidate_l2(&self, key: &str) {
        let Some(pool) = &self.l2 else {
            return;
        };
        let message = self.message(Some(key));
        let result = self
            .l2_call(async {
                let mut conn = pool.get().await?;
                let mut call = INVALIDATE.prepare_invoke();
                call.key(&self.gen_key)
                    .arg(&self.key_prefix)
                    .arg(key)
                    .arg(&self.channel)
                    .arg(message);
                Ok(call.invoke_async::<i64>(&mut conn).await?)
            })
            .await;
        self.l2_outcome("invalidate", result);
    }
}
