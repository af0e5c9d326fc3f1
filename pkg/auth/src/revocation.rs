//! Revoked access tokens: "user U's tokens below version V are refused", known to every
//! verifier within milliseconds.
//!
//! Access tokens are stateless, so logging out, changing a password, deleting an account or
//! changing a role would otherwise leave the old tokens working until they expire. Each user
//! has a token version (user-service keeps it; tokens carry it as `ver`); revoking raises the
//! user's minimum version here, and every verifier refuses tokens below it.
//!
//! Design notes (the why):
//!
//! - **The check is a synchronous in-memory lookup.** Verifiers (the gateway on every request)
//!   read a per-thread snapshot of the table, refreshed only when a generation counter moves;
//!   with no live revocation at all it is one atomic load. Nothing on the request path does
//!   I/O or takes a lock that other threads hold for more than a copy of an `Arc`.
//! - **Entries expire.** A revocation only needs to outlive the tokens it refuses: its TTL is
//!   the longest access-token lifetime (plus clock-skew margin), after which every token below
//!   the version has expired anyway. The table stays as small as the revocations of the last
//!   few minutes. Writes copy the table (copy-on-write snapshots), which is cheap at that size.
//! - **Shared through Redis when configured.** A key per user (`{prefix}:user:<id>`, value the
//!   minimum version, with the TTL) written by one script that only ever raises the version
//!   and publishes the change on `{prefix}:revoked`; every store subscribes. After every
//!   (re)subscribe the store reloads the live keys with `SCAN`, because messages published
//!   while it was disconnected are lost.
//! - **In-process otherwise.** Without Redis, every store of the process is the same one
//!   ([`Revocations::in_process`]): `platform up` hosts every service and the gateway in one
//!   process, so they all see each other's revocations.
//! - **Fail closed.** [`Revocations::revoke`] returns only once the revocation is stored (in
//!   Redis when shared); callers publish before committing the change that caused it, so a
//!   crash in between leaves tokens refused rather than working.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::StreamExt;
use platform_config::ExposeSecret;
use platform_redis::{RedisConfig, RedisPool, redis};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{TokenVersion, UserId};

/// A Redis call of the store (revoke, reload) must answer within this.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Listener reconnect backoff bounds, and how it notices a silently dead connection.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(10);
/// Keys read per `SCAN` step when reloading.
const SCAN_COUNT: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("the revocation store is unavailable: {0}")]
    Unavailable(#[from] platform_redis::Error),
    #[error("the revocation store did not answer in time")]
    Timeout,
}

impl From<redis::RedisError> for RevocationError {
    fn from(error: redis::RedisError) -> Self {
        RevocationError::Unavailable(platform_redis::Error::Redis(error))
    }
}

/// One user's revocation: tokens below `min` are refused until `until` (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    min: u64,
    until: i64,
}

type Table = HashMap<UserId, Entry>;

/// The revocation store of a process or a service. Cheap to clone.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

struct Inner {
    /// Unique per store: keys the per-thread snapshots.
    instance: u64,
    /// Moved on (after the table) at every change; a snapshot of another generation is stale.
    generation: AtomicU64,
    /// Entries in the table: at zero the request path stops at this one load.
    live: AtomicUsize,
    /// The current table. Readers take a copy of the `Arc`; writers replace the table.
    table: Mutex<Arc<Table>>,
    /// Woken at every change, for long-lived holders of a token (event streams).
    changes: watch::Sender<u64>,
    redis: Option<Shared>,
    /// Whether the listener is subscribed (always true without Redis).
    listening: AtomicBool,
}

/// The Redis side of a shared store.
struct Shared {
    pool: RedisPool,
    /// For the pub/sub connection, which a multiplexed pool connection cannot carry.
    client: redis::Client,
    /// `{prefix}:user:`, followed by the user id.
    key_prefix: String,
    channel: String,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("shared", &self.inner.redis.is_some())
            .field("live", &self.inner.live.load(Ordering::Relaxed))
            .finish()
    }
}

static IN_PROCESS: LazyLock<Revocations> = LazyLock::new(|| Revocations::build(None));

thread_local! {
    /// Per store (by instance), the generation and table this thread last read.
    static SNAPSHOTS: RefCell<HashMap<u64, (u64, Arc<Table>)>> = RefCell::new(HashMap::new());
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Revocations {
    fn build(redis: Option<Shared>) -> Self {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let listening = redis.is_none();
        Self {
            inner: Arc::new(Inner {
                instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
                generation: AtomicU64::new(0),
                live: AtomicUsize::new(0),
                table: Mutex::new(Arc::new(Table::new())),
                changes: watch::channel(0).0,
                redis,
                listening: AtomicBool::new(listening),
            }),
        }
    }

    /// The process's own store: every caller gets the same one, so the services and the
    /// gateway of one process (`platform up`, tests) share their revocations.
    pub fn in_process() -> Self {
        IN_PROCESS.clone()
    }

    /// A store of its own, shared with nobody (unit tests).
    pub fn isolated() -> Self {
        Self::build(None)
    }

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

    /// Through Redis when configured, else the process's own store.
    pub fn from_config(redis: Option<&RedisConfig>) -> Result<Self, platform_redis::Error> {
        match redis {
            Some(config) => Self::redis(config, "revocations"),
            None => Ok(Self::in_process()),
        }
    }

    /// Whether `user`'s token of `version` is revoked. Synchronous and lock-free in the
    /// common case: the request path calls it for every authenticated request.
    pub fn is_revoked(&self, user: UserId, version: TokenVersion) -> bool {
        let inner = &*self.inner;
        if inner.live.load(Ordering::Acquire) == 0 {
            return false;
        }
        let generation = inner.generation.load(Ordering::Acquire);
        let entry = SNAPSHOTS.with(|snapshots| {
            let mut snapshots = snapshots.borrow_mut();
            let snapshot = snapshots
                .entry(inner.instance)
                .or_insert_with(|| (u64::MAX, Arc::default()));
            if snapshot.0 != generation {
                *snapshot = (generation, Arc::clone(&lock(&inner.table)));
            }
            snapshot.1.get(&user).copied()
        });
        entry.is_some_and(|entry| version.get() < entry.min && now_ms() < entry.until)
    }

    /// The lowest version `user`'s tokens may have now (0 when nothing is revoked): issuers
    /// never sign below it, even if their database has not caught up.
    pub fn min_version(&self, user: UserId) -> TokenVersion {
        let table = Arc::clone(&lock(&self.inner.table));
        let min = table
            .get(&user)
            .filter(|entry| now_ms() < entry.until)
            .map_or(0, |entry| entry.min);
        TokenVersion::new(min)
    }

    /// Refuses `user`'s tokens below `below` for `ttl` (at least the longest access-token
    /// lifetime). Returns once stored: in Redis (and published) when shared, so an error
    /// means the revocation may not be known elsewhere and the caller must not go on.
    pub async fn revoke(
        &self,
        user: UserId,
        below: TokenVersion,
        ttl: Duration,
    ) -> Result<(), RevocationError> {
        let ttl_ms = millis(ttl).max(1);
        let min = match &self.inner.redis {
            None => below.get(),
            Some(shared) => {
                let call = async {
                    let mut conn = shared.pool.get().await?;
                    let min: u64 = REVOKE
                        .key(format!("{}{user}", shared.key_prefix))
                        .arg(below.get())
                        .arg(ttl_ms)
                        .arg(&shared.channel)
                        .arg(user.to_string())
                        .invoke_async(&mut conn)
                        .await?;
                    Ok::<_, RevocationError>(min)
                };
                tokio::time::timeout(REDIS_TIMEOUT, call)
                    .await
                    .map_err(|_| RevocationError::Timeout)??
            }
        };
        self.inner.apply([(
            user,
            Entry {
                min,
                until: now_ms().saturating_add(ttl_ms),
            },
        )]);
        tracing::info!(user_id = %user, min_version = min, "access tokens revoked");
        Ok(())
    }

    /// Changes whenever a revocation arrives: holders of long-lived sessions (event streams)
    /// wait on it and then check their token again.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Whether revocations from other replicas are being received (always, without Redis).
    pub fn listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
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

fn lock(table: &Mutex<Arc<Table>>) -> MutexGuard<'_, Arc<Table>> {
    // The table is replaced whole under the lock: a panic elsewhere cannot leave it torn.
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Merges `entries` (the higher version, the later expiry), dropping expired ones.
    fn apply(&self, entries: impl IntoIterator<Item = (UserId, Entry)>) {
        let now = now_ms();
        let mut table = lock(&self.table);
        let mut next: Option<Table> = None;
        for (user, entry) in entries {
            let known = next.as_ref().unwrap_or(&table).get(&user).copied();
            if entry.until <= now
                || known.is_some_and(|k| k.min >= entry.min && k.until >= entry.until)
            {
                continue;
            }
            let next = next.get_or_insert_with(|| {
                let mut copy = Table::clone(&table);
                copy.retain(|_, e| e.until > now);
                copy
            });
            let slot = next.entry(user).or_insert(entry);
            slot.min = slot.min.max(entry.min);
            slot.until = slot.until.max(entry.until);
        }
        let Some(next) = next else {
            return;
        };
        self.live.store(next.len(), Ordering::Release);
        *table = Arc::new(next);
        drop(table);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.changes.send_replace(generation);
    }

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

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn tokens_below_the_revoked_version_are_refused_and_others_are_not() {
        let store = Revocations::isolated();
        let (user, other) = (UserId::generate(), UserId::generate());
        assert!(!store.is_revoked(user, TokenVersion::new(0)));
        store
            .revoke(user, TokenVersion::new(2), MINUTE)
            .await
            .unwrap();
        assert!(store.is_revoked(user, TokenVersion::new(0)));
        assert!(store.is_revoked(user, TokenVersion::new(1)));
        assert!(!store.is_revoked(user, TokenVersion::new(2)));
        assert!(!store.is_revoked(other, TokenVersion::new(0)));
        assert_eq!(store.min_version(user), TokenVersion::new(2));
        assert_eq!(store.min_version(other), TokenVersion::new(0));
    }

    #[tokio::test]
    async fn a_revocation_never_lowers_the_minimum_version() {
        let store = Revocations::isolated();
        let user = UserId::generate();
        store
            .revoke(user, TokenVersion::new(5), MINUTE)
            .await
            .unwrap();
        store
            .revoke(user, TokenVersion::new(3), MINUTE)
            .await
            .unwrap();
        assert!(store.is_revoked(user, TokenVersion::new(4)));
        assert_eq!(store.min_version(user), TokenVersion::new(5));
    }

    #[tokio::test]
    async fn revocations_expire_with_their_ttl() {
        let store = Revocations::isolated();
        let user = UserId::generate();
        store
            .revoke(user, TokenVersion::new(1), Duration::from_millis(50))
            .await
            .unwrap();
        assert!(store.is_revoked(user, TokenVersion::new(0)));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!store.is_revoked(user, TokenVersion::new(0)));
        // The next change prunes it.
        store
            .revoke(UserId::generate(), TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        assert_eq!(store.inner.live.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn every_thread_sees_a_revocation_made_on_another() {
        let store = Revocations::isolated();
        let user = UserId::generate();
        // A thread that has read (and cached) the table before the revocation.
        let reader = store.clone();
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (answer, answered) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            while asked.recv().is_ok() {
                let _ = answer.send(reader.is_revoked(user, TokenVersion::new(0)));
            }
        });
        store
            .revoke(UserId::generate(), TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        ask.send(()).unwrap();
        assert!(!answered.recv().unwrap());
        store
            .revoke(user, TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        ask.send(()).unwrap();
        assert!(answered.recv().unwrap());
        drop(ask);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn the_in_process_store_is_one_per_process() {
        let user = UserId::generate();
        Revocations::in_process()
            .revoke(user, TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        assert!(Revocations::in_process().is_revoked(user, TokenVersion::new(0)));
        assert!(!Revocations::isolated().is_revoked(user, TokenVersion::new(0)));
    }

    #[tokio::test]
    async fn holders_of_long_sessions_are_woken_by_a_revocation() {
        let store = Revocations::isolated();
        let mut changes = store.changes();
        store
            .revoke(UserId::generate(), TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), changes.changed())
            .await
            .unwrap()
            .unwrap();
    }

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
