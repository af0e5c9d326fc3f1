//! Sharing revocations through Redis: one script that only ever raises a user's minimum and
//! publishes it, and the listener that applies other replicas' revocations and reloads every
//! live one after each (re)subscribe, since messages published while disconnected are lost.

use std::future::Future;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::StreamExt;
use platform_config::ExposeSecret;
use platform_redis::{RedisConfig, RedisPool, redis};
use tokio::task::JoinHandle;

use super::{Entry, Inner, RevocationError, Revocations, now_ms};
use crate::{TokenVersion, UserId};

/// A Redis call of the store (revoke, reload) must answer within this.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Listener reconnect backoff bounds, and how it notices a silently dead connection.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(10);
/// Keys read per `SCAN` step when reloading.
const SCAN_COUNT: usize = 500;

/// The Redis side of a shared store.
pub(super) struct Shared {
    pool: RedisPool,
    /// For the pub/sub connection, which a multiplexed pool connection cannot carry.
    client: redis::Client,
    /// `{prefix}:user:`, followed by the user id.
    key_prefix: String,
    channel: String,
}

/// Raises the user's minimum version (never lowers it), keeps the longer TTL, and publishes
/// `<user> <min> <ttl ms>`; returns the minimum now stored.
static REVOKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local current = tonumber(redis.call('GET', KEYS[1])) or 0
local wanted = tonumber(ARGV[1])
if wanted > current then current = wanted end
local ttl = tonumber(ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if left > ttl then ttl = left end
redis.call('SET', KEYS[1], current, 'PX', ttl)
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. current .. ' ' .. ttl)
return current
",
    )
});

/// `{value, pttl}` of every key: the live revocations a reload applies.
static READ_ALL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local out = {}
for i, key in ipairs(KEYS) do out[i] = {redis.call('GET', key), redis.call('PTTL', key)} end
return out
",
    )
});

impl Revocations {
    /// A store shared through Redis under `prefix` (`revocations` in production). Nothing
    /// connects yet; call [`Revocations::start`] to receive other replicas' revocations.
    pub fn redis(config: &RedisConfig, prefix: &str) -> Result<Self, platform_redis::Error> {
        let client = redis::Client::open(config.url.expose_secret())
            .map_err(|_| platform_redis::Error::InvalidUrl)?;
        Ok(Self::build(Some(Shared {
            pool: RedisPool::new(config)?,
            client,
            key_prefix: format!("{prefix}:user:"),
            channel: format!("{prefix}:revoked"),
        })))
    }

    /// Spawns the task that applies other replicas' revocations; `None` without Redis. It
    /// reconnects with backoff and reloads every live revocation after each (re)subscribe,
    /// and ends when `shutdown` completes or the last clone of the store is dropped.
    pub fn start<S>(&self, shutdown: S) -> Option<JoinHandle<()>>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        self.inner.redis.as_ref()?;
        let weak = Arc::downgrade(&self.inner);
        Some(tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {}
                () = listen(&weak) => {}
            }
            if let Some(inner) = weak.upgrade() {
                inner.listening.store(false, Ordering::Release);
            }
        }))
    }
}

impl Shared {
    /// Stores and publishes the revocation (at most [`REDIS_TIMEOUT`]); the minimum now
    /// stored, which may be higher than `below`.
    pub(super) async fn revoke(
        &self,
        user: UserId,
        below: TokenVersion,
        ttl_ms: i64,
    ) -> Result<u64, RevocationError> {
        let call = async {
            let mut conn = self.pool.get().await?;
            let min: u64 = REVOKE
                .key(format!("{}{user}", self.key_prefix))
                .arg(below.get())
                .arg(ttl_ms)
                .arg(&self.channel)
                .arg(user.to_string())
                .invoke_async(&mut conn)
                .await?;
            Ok::<_, RevocationError>(min)
        };
        tokio::time::timeout(REDIS_TIMEOUT, call)
            .await
            .map_err(|_| RevocationError::Timeout)?
    }
}

impl Inner {
    /// Applies `<user> <min> <ttl ms>` from the channel.
    fn apply_message(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let mut fields = text.split(' ');
        let parsed = (|| {
            let user = UserId::parse(fields.next()?).ok()?;
            let min = fields.next()?.parse::<u64>().ok()?;
            let ttl = fields.next()?.parse::<i64>().ok()?;
            Some((
                user,
                Entry {
                    min,
                    until: now_ms().saturating_add(ttl),
                },
            ))
        })();
        match parsed {
            Some(entry) => self.apply([entry]),
            None => tracing::warn!(payload = %text, "ignored a malformed revocation message"),
        }
    }

    /// Reads every live revocation from Redis into the table.
    async fn reload(&self, shared: &Shared) -> Result<usize, RevocationError> {
        let mut conn = shared.pool.get().await?;
        let pattern = format!("{}*", shared.key_prefix);
        let mut cursor: u64 = 0;
        let mut loaded = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let mut call = READ_ALL.prepare_invoke();
                for key in &keys {
                    call.key(key);
                }
                let values: Vec<(Option<u64>, i64)> = call.invoke_async(&mut conn).await?;
                let now = now_ms();
                let entries = keys.iter().zip(values).filter_map(|(key, (min, ttl))| {
                    let user = UserId::parse(key.strip_prefix(&shared.key_prefix)?).ok()?;
                    // PTTL is negative for a key that just expired (or has no TTL: not ours).
                    (ttl > 0).then_some((
                        user,
                        Entry {
                            min: min?,
                            until: now.saturating_add(ttl),
                        },
                    ))
                });
                let entries: Vec<_> = entries.collect();
                loaded += entries.len();
                self.apply(entries);
            }
            if next == 0 {
                return Ok(loaded);
            }
            cursor = next;
        }
    }
}

/// Subscribes, reloads, applies messages; resubscribes with backoff, until the store is gone.
async fn listen(weak: &Weak<Inner>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let Some(shared) = inner.redis.as_ref() else {
            return;
        };
        let client = shared.client.clone();
        let channel = shared.channel.clone();
        drop(inner);
        let reason = match subscribed_session(weak, &client, &channel).await {
            Ok(()) => return,
            Err((was_subscribed, reason)) => {
                if was_subscribed {
                    backoff = BACKOFF_MIN;
                }
                reason
            }
        };
        match weak.upgrade() {
            Some(inner) => inner.listening.store(false, Ordering::Release),
            None => return,
        }
        tracing::warn!(
            %reason, ?backoff,
            "revocation listener disconnected; revocations made elsewhere are applied when it reconnects"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One subscription: `Ok` when the store is gone, else whether it got as far as subscribing
/// and why it ended.
async fn subscribed_session(
    weak: &Weak<Inner>,
    client: &redis::Client,
    channel: &str,
) -> Result<(), (bool, String)> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = match tokio::time::timeout(REDIS_TIMEOUT, connect).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(error)) => return Err((false, error.to_string())),
        Err(_) => return Err((false, "connect timed out".to_owned())),
    };
    {
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        let Some(shared) = inner.redis.as_ref() else {
            return Ok(());
        };
        // Subscribed first, then reloaded: whatever is published in between arrives as a
        // message, and applying twice is harmless (a merge that keeps the maximum).
        match tokio::time::timeout(REDIS_TIMEOUT * 5, inner.reload(shared)).await {
            Ok(Ok(loaded)) => tracing::debug!(loaded, "revocation listener subscribed"),
            Ok(Err(error)) => return Err((false, format!("reload failed: {error}"))),
            Err(_) => return Err((false, "reload timed out".to_owned())),
        }
        inner.listening.store(true, Ordering::Release);
    }
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Err((true, "connection closed".to_owned()));
                };
                let Some(inner) = weak.upgrade() else {
                    return Ok(());
                };
                inner.apply_message(message.get_payload_bytes());
            }
            _ = ping.tick() => {
                match tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err((true, error.to_string())),
                    Err(_) => return Err((true, "ping timed out".to_owned())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_messages_are_ignored() {
        let store = Revocations::isolated();
        store.inner.apply_message(b"not a revocation");
        store.inner.apply_message(b"");
        assert_eq!(store.inner.live.load(Ordering::Acquire), 0);
        let user = UserId::generate();
        store
            .inner
            .apply_message(format!("{user} 3 60000").as_bytes());
        assert!(store.is_revoked(user, TokenVersion::new(2)));
    }
}
