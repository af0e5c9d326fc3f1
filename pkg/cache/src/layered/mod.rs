//! The multi-layer read cache: an in-process L1 in front of a shared Redis L2.
//!
//! Owns [`LayeredCache`] and its [`CacheConfig`]: cache-aside reads (L1 → L2 → loader) with
//! single-flight loading, per-entry jittered TTLs, invalidation of one key or of the whole cache
//! (broadcast to the other replicas over Redis pub/sub), the `cache_*` metrics, and the L2
//! health flag that `/ready` reports as "degraded".
//!
//! Design notes (the why):
//!
//! - **Single-flight.** The L2 lookup *and* the loader run inside moka's coalesced
//!   `try_get_with` init, so a burst of misses on one key costs one Redis round trip and one
//!   loader call; every waiter gets the same value or the same error (hence `E: Clone`).
//! - **Redis never fails a read.** Every L2 call is bounded by [`CacheConfig::l2_timeout`];
//!   a failure is logged (once per healthy → degraded transition), counted in
//!   `cache_errors_total`, raises [`LayeredCache::l2_degraded`], and the read falls through to
//!   the loader. While degraded, reads probe L2 at most once per [`L2_RETRY_INTERVAL`] so a hung
//!   Redis does not add a timeout to every miss; invalidations are always attempted.
//! - **Whole-cache invalidation is a generation number.** Every L2 key embeds the cache's
//!   generation (`{prefix}:g{gen}:{key}`), stored in Redis at `{prefix}:gen`. `invalidate_all`
//!   is one `INCR` (O(1), no `SCAN`/`KEYS`, no tracked key set that grows): old-generation keys
//!   become unreachable and expire by TTL. Lua scripts resolve the generation and the key in
//!   one round trip, and a load only writes back if the generation it read is still current,
//!   so a load that straddles an `invalidate_all` cannot repopulate the new generation. List
//!   pages get their own `LayeredCache` (own prefix) so `invalidate_all` drops only them.
//! - **Loads that straddle an invalidation are not cached.** Local invalidations (and ones
//!   received from other replicas) bump an epoch (striped per key, plus one for "all"); a load
//!   whose epoch changed returns its value to its callers but neither fills L1 nor writes L2.
//!   A window of one Redis round trip remains between that check and the write; what slips
//!   through is bounded by the TTL.
//! - **Broadcast.** Writers delete/bump in L2 and `PUBLISH {prefix}:invalidate` in the same
//!   script; [`LayeredCache::start_invalidation_listener`] drops the L1 copies on the other
//!   replicas and ignores its own messages. After every (re)subscribe the listener clears L1,
//!   because messages published while it was disconnected are lost.
//! - **Metrics.** `cache_hits_total{cache,layer}` / `cache_misses_total{cache,layer}`: the `l1`
//!   series counts every call; the `l2` series counts actual Redis lookups (coalesced waiters
//!   and lookups skipped while degraded are not counted, errors go to `cache_errors_total`).
//!   `cache_evictions_total{cache}` counts L1 evictions by size or expiry only, not explicit
//!   invalidations. `cache_loads_total{cache}` counts loader calls made by `get_or_load` (a
//!   coalesced burst of misses counts once). Counter handles are registered once, so the hot path is an atomic add.
//!   With `enabled = false` nothing is recorded.
//!
//! Redis Cluster is not supported: the scripts build key names from the generation.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use moka::Expiry;
use platform_metrics::{Counter, Metrics, counter};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use platform_redis::RedisPool;

mod invalidation;
mod l1;
mod l2;

#[cfg(test)]
use invalidation::Applied;
use invalidation::Epochs;
use l1::{PerEntryTtl, Slot, jittered};
use l2::{INVALIDATE_ALL, L2Health, L2Lookup};

/// While L2 is degraded, reads try it again at most this often.
pub const L2_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Longest TTL accepted; moka's expiry arithmetic must not overflow.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Redis rejects `PX 0`.
const MIN_TTL: Duration = Duration::from_millis(1);

/// Listener reconnect backoff bounds, and how it notices a silently dead connection.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const LISTENER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const LISTENER_PING_EVERY: Duration = Duration::from_secs(15);

/// Per-key invalidation epochs are striped: a collision only costs a skipped fill.
const EPOCH_STRIPES: usize = 64;

/// How one [`LayeredCache`] behaves.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The `cache` label on the metrics and in logs.
    pub name: &'static str,
    /// L1 size bound, in entries.
    pub l1_capacity: u64,
    /// Nominal time to live, in both layers.
    pub ttl: Duration,
    /// Fraction by which each entry's TTL is randomised, so entries loaded together do not
    /// expire together: the TTL is drawn from `[ttl·(1-jitter), ttl·(1+jitter)]`. Clamped to
    /// `0..=1`.
    pub jitter: f64,
    /// The shared second layer; `None` for a single instance (L1 only, nothing to broadcast).
    pub l2: Option<RedisPool>,
    /// Namespace of this cache's keys and channel in Redis, e.g. `product-service:products`.
    pub key_prefix: String,
    /// `false` sends every read to the loader and makes writes no-ops (benchmarks).
    pub enabled: bool,
    /// Upper bound on one L2 call, so a hung Redis cannot stall reads.
    pub l2_timeout: Duration,
}

impl CacheConfig {
    /// L1 only, 10 000 entries, 10 % jitter, a 250 ms L2 timeout, prefix = `name`.
    pub fn new(name: &'static str, ttl: Duration) -> Self {
        Self {
            name,
            l1_capacity: 10_000,
            ttl,
            jitter: 0.1,
            l2: None,
            key_prefix: name.to_owned(),
            enabled: true,
            l2_timeout: Duration::from_millis(250),
        }
    }
}

/// A cache-aside cache of `V` keyed by string. Cheap to clone; clones share everything.
pub struct LayeredCache<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for LayeredCache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<V> fmt::Debug for LayeredCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayeredCache")
            .field("name", &self.inner.name)
            .field("key_prefix", &self.inner.key_prefix)
            .field("l2", &self.inner.l2.is_some())
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

struct Counters {
    l1_hits: Counter,
    l1_misses: Counter,
    l2_hits: Counter,
    l2_misses: Counter,
    evictions: Counter,
    errors: Counter,
    loads: Counter,
}

impl Counters {
    fn register(metrics: &Metrics, cache: &'static str) -> Self {
        metrics.record(|| Self {
            l1_hits: counter!("cache_hits_total", "cache" => cache, "layer" => "l1"),
            l1_misses: counter!("cache_misses_total", "cache" => cache, "layer" => "l1"),
            l2_hits: counter!("cache_hits_total", "cache" => cache, "layer" => "l2"),
            l2_misses: counter!("cache_misses_total", "cache" => cache, "layer" => "l2"),
            evictions: counter!("cache_evictions_total", "cache" => cache),
            errors: counter!("cache_errors_total", "cache" => cache),
            loads: counter!("cache_loads_total", "cache" => cache),
        })
    }
}

/// Why a coalesced init produced no cacheable value; shared by all its waiters.
enum InitError<V, E> {
    Load(E),
    /// Loaded, but an invalidation arrived meanwhile: return it, don't cache it.
    Stale(V),
}

struct Inner<V> {
    name: &'static str,
    ttl: Duration,
    jitter: f64,
    enabled: bool,
    l1: moka::future::Cache<String, Slot<V>>,
    l2: Option<RedisPool>,
    l2_timeout: Duration,
    key_prefix: String,
    gen_key: String,
    channel: String,
    /// Tells this replica's broadcasts apart from the others'.
    instance: String,
    epochs: Epochs,
    health: L2Health,
    listener_connected: AtomicBool,
    counters: Counters,
    /// Never sent on: dropped with the cache, which ends the listener task.
    _alive: watch::Sender<()>,
}

impl<V> LayeredCache<V>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// A cache recording its metrics in `metrics`. Needs no runtime; nothing connects yet.
    pub fn new(config: CacheConfig, metrics: &Metrics) -> Self {
        let counters = Counters::register(metrics, config.name);
        let evictions = counters.evictions.clone();
        let l1 = moka::future::Cache::builder()
            .name(config.name)
            .max_capacity(config.l1_capacity)
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_key, _value, cause| {
                if cause.was_evicted() {
                    evictions.increment(1);
                }
            })
            .build();
        let jitter = if config.jitter.is_finite() {
            config.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let prefix = config.key_prefix;
        Self {
            inner: Arc::new(Inner {
                name: config.name,
                ttl: config.ttl.clamp(MIN_TTL, MAX_TTL),
                jitter,
                enabled: config.enabled,
                l1,
                l2: config.l2,
                l2_timeout: config.l2_timeout,
                gen_key: format!("{prefix}:gen"),
                channel: format!("{prefix}:invalidate"),
                key_prefix: prefix,
                instance: uuid::Uuid::new_v4().simple().to_string(),
                epochs: Epochs::new(),
                health: L2Health::new(),
                listener_connected: AtomicBool::new(false),
                counters,
                _alive: watch::channel(()).0,
            }),
        }
    }

    /// The value for `key`: from L1, else from L2 (filling L1), else from `load` (filling
    /// both). Concurrent misses on one key share a single L2 lookup and a single `load`;
    /// its error is returned to every waiter (hence `E: Clone`; wrap a non-`Clone` error in
    /// an `Arc`) and is not cached, so the next call loads again. L2 problems never surface
    /// here: they degrade to a load.
    pub async fn get_or_load<F, Fut, E>(&self, key: &str, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Clone + Send + Sync + 'static,
    {
        let inner = &*self.inner;
        if !inner.enabled {
            return load().await;
        }
        if let Some(slot) = inner.l1.get(key).await {
            inner.counters.l1_hits.increment(1);
            return Ok(slot.value);
        }
        inner.counters.l1_misses.increment(1);
        let init = async {
            let before = inner.epochs.snapshot(key);
            let generation = match inner.l2_lookup(key).await {
                L2Lookup::Hit(slot) if inner.epochs.snapshot(key) == before => return Ok(slot),
                L2Lookup::Hit(slot) => return Err(InitError::Stale(slot.value)),
                L2Lookup::Miss { generation } => Some(generation),
                L2Lookup::Unavailable => None,
            };
            inner.counters.loads.increment(1);
            let value = load().await.map_err(InitError::Load)?;
            if inner.epochs.snapshot(key) != before {
                return Err(InitError::Stale(value));
            }
            let ttl = inner.draw_ttl();
            if let Some(generation) = generation {
                inner
                    .l2_store(key, Some(&generation), &value, ttl, false)
                    .await;
            }
            Ok(Slot { value, ttl })
        };
        match inner.l1.try_get_with_by_ref(key, init).await {
            Ok(slot) => Ok(slot.value),
            Err(shared) => match &*shared {
                InitError::Load(error) => Err(error.clone()),
                InitError::Stale(value) => Ok(value.clone()),
            },
        }
    }

    /// The cached value for `key`, from L1 or L2 (filling L1); `None` on a miss.
    pub async fn get(&self, key: &str) -> Option<V> {
        let inner = &*self.inner;
        if !inner.enabled {
            return None;
        }
        if let Some(slot) = inner.l1.get(key).await {
            inner.counters.l1_hits.increment(1);
            return Some(slot.value);
        }
        inner.counters.l1_misses.increment(1);
        let before = inner.epochs.snapshot(key);
        let L2Lookup::Hit(slot) = inner.l2_lookup(key).await else {
            return None;
        };
        if inner.epochs.snapshot(key) == before {
            inner.l1.insert(key.to_owned(), slot.clone()).await;
        }
        Some(slot.value)
    }

    /// Stores `value` in both layers (write-through) and tells the other replicas to drop
    /// their L1 copy, which they then re-read from L2.
    pub async fn insert(&self, key: &str, value: V) {
        let inner = &*self.inner;
        if !inner.enabled {
            return;
        }
        let ttl = inner.draw_ttl();
        if inner.l2.is_some() && !inner.l2_store(key, None, &value, ttl, true).await {
            // Not stored in L2 (error already reported): make sure no replica keeps the old
            // value either.
            inner.invalidate_l2(key).await;
        }
        // Loads in flight read data older than this value: keep them out of L1.
        inner.epochs.bump(key);
        inner.l1.insert(key.to_owned(), Slot { value, ttl }).await;
    }

    /// Drops `key` from both layers, here and (via pub/sub) on the other replicas. Call it
    /// after the write to the source of truth. A Redis failure is reported, not returned:
    /// the other replicas then keep their copies until the TTL.
    pub async fn invalidate(&self, key: &str) {
        let inner = &*self.inner;
        if !inner.enabled {
            return;
        }
        // L2 first: a local reload between the two steps would otherwise re-read the old
        // L2 value into L1.
        inner.invalidate_l2(key).await;
        inner.forget_local(key).await;
    }

    /// Drops every entry of this cache, here and on the other replicas, by moving to a new
    /// L2 generation (see the module notes). Meant for list pages: give them their own cache.
    pub async fn invalidate_all(&self) {
        let inner = &*self.inner;
        if !inner.enabled {
            return;
        }
        if let Some(pool) = &inner.l2 {
            let message = inner.message(None);
            let result = inner
                .l2_call(async {
                    let mut conn = pool.get().await?;
                    let mut call = INVALIDATE_ALL.prepare_invoke();
                    call.key(&inner.gen_key).arg(&inner.channel).arg(message);
                    Ok(call.invoke_async::<i64>(&mut conn).await?)
                })
                .await;
            inner.l2_outcome("invalidate_all", result);
        }
        inner.forget_local_all();
    }

    /// Whether the last L2 call failed. Cleared by the next successful one. Reads still
    /// succeed meanwhile (from L1 and the loader); `/ready` may report "degraded".
    pub fn l2_degraded(&self) -> bool {
        self.inner.health.degraded.load(Ordering::Acquire)
    }

    /// Whether the invalidation listener is currently subscribed. While it is not, this
    /// replica may serve values other replicas invalidated, until their TTL.
    pub fn listener_connected(&self) -> bool {
        self.inner.listener_connected.load(Ordering::Acquire)
    }

    /// The `cache` label.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    #[cfg(test)]
    async fn run_pending_tasks(&self) {
        self.inner.l1.run_pending_tasks().await;
    }

    #[cfg(test)]
    async fn apply_remote(&self, payload: &[u8]) -> Applied {
        self.inner.apply_remote(payload).await
    }
}

impl<V> Inner<V> where V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn cache(name: &'static str, ttl: Duration, capacity: u64) -> (LayeredCache<String>, Metrics) {
        let metrics = Metrics::new("test");
        let config = CacheConfig {
            l1_capacity: capacity,
            ..CacheConfig::new(name, ttl)
        };
        (LayeredCache::new(config, &metrics), metrics)
    }

    #[test]
    fn jitter_spans_exactly_the_configured_band() {
        let ttl = Duration::from_millis(1000);
        assert_eq!(jittered(ttl, 0.1, 0.0), Duration::from_millis(900));
        assert_eq!(jittered(ttl, 0.1, 1.0), Duration::from_millis(1100));
        assert_eq!(jittered(ttl, 0.0, 0.7), ttl);
        // Out-of-range inputs are clamped, never panic.
        assert_eq!(jittered(ttl, 5.0, 1.0), Duration::from_millis(2000));
        assert_eq!(jittered(ttl, f64::NAN, 1.0), ttl);
        assert_eq!(jittered(ttl, 0.1, -3.0), Duration::from_millis(900));
    }

    #[test]
    fn drawn_ttls_stay_within_bounds_and_vary() {
        let (cache, _) = cache("jitter", Duration::from_millis(1000), 10);
        let draws: Vec<Duration> = (0..1000).map(|_| cache.inner.draw_ttl()).collect();
        assert!(
            draws
                .iter()
                .all(|d| *d >= Duration::from_millis(900) && *d <= Duration::from_millis(1100))
        );
        let (min, max) = (draws.iter().min(), draws.iter().max());
        assert!(
            max.zip(min)
                .is_some_and(|(max, min)| *max - *min > Duration::from_millis(100))
        );
    }

    #[test]
    fn health_flags_degraded_until_the_next_success() {
        let health = L2Health::new();
        assert!(health.may_read());
        assert!(health.failed(), "first failure starts a degraded period");
        assert!(!health.failed(), "second failure does not");
        assert!(health.degraded.load(Ordering::Acquire));
        assert!(!health.may_read(), "reads back off while degraded");
        assert!(health.succeeded());
        assert!(!health.degraded.load(Ordering::Acquire));
        assert!(health.may_read());
        assert!(!health.succeeded());
    }

    #[tokio::test]
    async fn size_evictions_are_counted() {
        let (cache, metrics) = cache("evict", Duration::from_secs(60), 2);
        for i in 0..20 {
            cache.insert(&format!("k{i}"), format!("v{i}")).await;
        }
        cache.run_pending_tasks().await;
        let text = metrics.render();
        let evicted = text
            .lines()
            .find(|l| l.starts_with("cache_evictions_total{") && l.contains(r#"cache="evict""#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(evicted >= 18, "{text}");
    }

    #[tokio::test]
    async fn remote_invalidations_drop_l1_but_own_messages_are_ignored() {
        let (cache, _) = cache("remote", Duration::from_secs(60), 10);
        cache.insert("a", "1".into()).await;
        cache.insert("b", "2".into()).await;

        let own = cache.inner.message(Some("a"));
        assert_eq!(
            cache.apply_remote(own.as_bytes()).await,
            Applied::OwnMessage
        );
        assert_eq!(cache.get("a").await.as_deref(), Some("1"));

        let other = r#"{"origin":"someone-else","key":"a"}"#;
        assert_eq!(cache.apply_remote(other.as_bytes()).await, Applied::Key);
        assert_eq!(cache.get("a").await, None);
        assert_eq!(cache.get("b").await.as_deref(), Some("2"));

        assert_eq!(cache.apply_remote(b"not json").await, Applied::Malformed);
        let all = r#"{"origin":"someone-else","key":null}"#;
        assert_eq!(cache.apply_remote(all.as_bytes()).await, Applied::All);
        assert_eq!(cache.get("b").await, None);
    }

    #[tokio::test]
    async fn a_load_that_straddles_an_invalidation_is_returned_but_not_cached() {
        let (cache, _) = cache("straddle", Duration::from_secs(60), 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let loader = |cache: LayeredCache<String>, calls: Arc<AtomicUsize>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            // The write lands while this load is in flight.
            cache.invalidate("k").await;
            Ok::<_, String>("old".to_owned())
        };
        let value = cache
            .get_or_load("k", || loader(cache.clone(), Arc::clone(&calls)))
            .await;
        assert_eq!(value.as_deref(), Ok("old"));
        assert_eq!(
            cache.get("k").await,
            None,
            "the possibly stale value was cached"
        );
        let calls_now = calls.load(Ordering::SeqCst);
        let _ = cache
            .get_or_load("k", || async { Ok::<_, String>("new".to_owned()) })
            .await;
        assert_eq!(calls_now, 1);
        assert_eq!(cache.get("k").await.as_deref(), Some("new"));
    }
}
