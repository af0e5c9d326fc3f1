//! The layered cache's behaviour: L1, single-flight, TTLs, errors, and (with `TEST_REDIS_URL`)
//! L2 sharing and invalidation across replicas; Redis down or hung never fails a read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use platform_cache::{CacheConfig, LayeredCache};
use platform_metrics::Metrics;
use platform_redis::{RedisConfig, RedisPool};
use platform_test_backends::{RedisNamespace, eventually};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: String,
    price_cents: u64,
}

fn product(id: &str, price_cents: u64) -> Product {
    Product {
        id: id.to_owned(),
        price_cents,
    }
}

/// The value of the series `name{…cache="<cache>"…<extra>…}`, 0 when absent.
fn counter(metrics: &Metrics, name: &str, cache: &str, extra: &str) -> u64 {
    let text = metrics.render();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| line.contains(&format!(r#"cache="{cache}""#)) && line.contains(extra))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

type Load<V> = std::pin::Pin<Box<dyn Future<Output = Result<V, String>> + Send>>;

/// A loader that counts its calls and returns `value` after `delay`.
fn counting<V>(
    calls: &Arc<AtomicUsize>,
    value: V,
    delay: Duration,
) -> impl FnOnce() -> Load<V> + use<V>
where
    V: Send + 'static,
{
    let calls = Arc::clone(calls);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(value)
        })
    }
}

fn l1_only(name: &'static str, ttl: Duration) -> (LayeredCache<Product>, Metrics) {
    let metrics = Metrics::new("product-service");
    let cache = LayeredCache::new(CacheConfig::new(name, ttl), &metrics);
    (cache, metrics)
}

#[tokio::test]
async fn second_read_is_an_l1_hit_and_the_metrics_say_so() {
    let (cache, metrics) = l1_only("products", Duration::from_secs(60));
    let calls = Arc::new(AtomicUsize::new(0));
    let first = cache
        .get_or_load("p1", counting(&calls, product("p1", 100), Duration::ZERO))
        .await;
    let second = cache
        .get_or_load("p1", counting(&calls, product("p1", 999), Duration::ZERO))
        .await;
    assert_eq!(first, Ok(product("p1", 100)));
    assert_eq!(second, Ok(product("p1", 100)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let text = metrics.render();
    assert!(
        text.contains(
            r#"cache_hits_total{service="product-service",cache="products",layer="l1"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"cache_misses_total{service="product-service",cache="products",layer="l1"} 1"#
        ),
        "{text}"
    );
    // No L2 configured: no L2 lookups happened.
    assert_eq!(
        counter(&metrics, "cache_hits_total", "products", r#"layer="l2""#),
        0
    );
    assert_eq!(
        counter(&metrics, "cache_misses_total", "products", r#"layer="l2""#),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_misses_on_one_key_loads_once() {
    let (cache, metrics) = l1_only("burst", Duration::from_secs(60));
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            let load = counting(&calls, product("hot", 1), Duration::from_millis(50));
            tokio::spawn(async move { cache.get_or_load("hot", load).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(product("hot", 1)));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        counter(&metrics, "cache_hits_total", "burst", r#"layer="l1""#)
            + counter(&metrics, "cache_misses_total", "burst", r#"layer="l1""#),
        100
    );
    assert_eq!(
        counter(&metrics, "cache_loads_total", "burst", ""),
        1,
        "one loader call, counted once"
    );
}

#[tokio::test]
async fn every_loader_call_is_counted_and_hits_are_not() {
    let (cache, metrics) = l1_only("loads", Duration::from_secs(60));
    let calls = Arc::new(AtomicUsize::new(0));
    let read = |key: &'static str| {
        cache.get_or_load(key, counting(&calls, product(key, 1), Duration::ZERO))
    };
    read("a").await.unwrap();
    read("a").await.unwrap();
    read("b").await.unwrap();
    assert_eq!(counter(&metrics, "cache_loads_total", "loads", ""), 2);
    cache.invalidate("a").await;
    read("a").await.unwrap();
    // A failed load is a loader call too.
    let failed = cache
        .get_or_load("c", || async { Err::<Product, _>("down".to_owned()) })
        .await;
    assert!(failed.is_err());
    assert_eq!(counter(&metrics, "cache_loads_total", "loads", ""), 4);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        metrics
            .render()
            .contains(r#"cache_loads_total{service="product-service",cache="loads"} 4"#),
        "{}",
        metrics.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_load_is_shared_by_its_waiters_and_not_cached() {
    let (cache, _) = l1_only("failing", Duration::from_secs(60));
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            let calls = Arc::clone(&calls);
            tokio::spawn(async move {
                cache
                    .get_or_load("p", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err::<Product, _>("database down".to_owned())
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Err("database down".to_owned()));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Not cached: the next read loads again, and its success is cached.
    let again = cache
        .get_or_load("p", counting(&calls, product("p", 5), Duration::ZERO))
        .await;
    assert_eq!(again, Ok(product("p", 5)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get("p").await, Some(product("p", 5)));
}

#[tokio::test]
async fn entries_reload_after_their_jittered_ttl() {
    // 200 ms ± 10 %: alive at 100 ms, gone by 300 ms.
    let (cache, _) = l1_only("ttl", Duration::from_millis(200));
    let calls = Arc::new(AtomicUsize::new(0));
    let read = || cache.get_or_load("p", counting(&calls, product("p", 1), Duration::ZERO));
    read().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    read().await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "expired before ttl·(1-jitter)"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    read().await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "still cached after ttl·(1+jitter)"
    );
}

#[tokio::test]
async fn a_disabled_cache_always_loads() {
    let metrics = Metrics::new("product-service");
    let config = CacheConfig {
        enabled: false,
        ..CacheConfig::new("off", Duration::from_secs(60))
    };
    let cache = LayeredCache::new(config, &metrics);
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let value = cache
            .get_or_load("p", counting(&calls, product("p", 1), Duration::ZERO))
            .await;
        assert_eq!(value, Ok(product("p", 1)));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    cache.insert("p", product("p", 2)).await;
    assert_eq!(cache.get("p").await, None);
    // With the cache disabled nothing is recorded, loads included.
    assert_eq!(counter(&metrics, "cache_loads_total", "off", ""), 0);
}

#[tokio::test]
async fn invalidate_and_insert_change_what_the_next_read_sees() {
    let (cache, _) = l1_only("writes", Duration::from_secs(60));
    let calls = Arc::new(AtomicUsize::new(0));
    let read =
        |price| cache.get_or_load("p", counting(&calls, product("p", price), Duration::ZERO));
    assert_eq!(read(1).await, Ok(product("p", 1)));
    cache.invalidate("p").await;
    assert_eq!(read(2).await, Ok(product("p", 2)));
    cache.insert("p", product("p", 3)).await;
    assert_eq!(read(4).await, Ok(product("p", 3)));
    cache.invalidate_all().await;
    assert_eq!(read(5).await, Ok(product("p", 5)));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

// ---- Redis unavailable: runs everywhere, no server needed. ----

fn with_l2(
    name: &'static str,
    url: &str,
    prefix: &str,
    l2_timeout: Duration,
) -> (LayeredCache<Product>, Metrics) {
    let metrics = Metrics::new("product-service");
    let config = CacheConfig {
        l2: Some(RedisPool::new(&RedisConfig::new(url)).unwrap()),
        key_prefix: prefix.to_owned(),
        l2_timeout,
        ..CacheConfig::new(name, Duration::from_secs(60))
    };
    (LayeredCache::new(config, &metrics), metrics)
}

#[tokio::test]
async fn reads_succeed_quickly_while_redis_is_down() {
    // Port 1 on loopback: nothing listens there.
    let (cache, metrics) = with_l2(
        "down",
        "redis://127.0.0.1:1",
        "down",
        Duration::from_millis(250),
    );
    assert!(!cache.l2_degraded());
    let calls = Arc::new(AtomicUsize::new(0));
    for key in ["a", "b", "a", "c"] {
        let started = Instant::now();
        let value = cache
            .get_or_load(key, counting(&calls, product(key, 1), Duration::ZERO))
            .await;
        assert_eq!(value, Ok(product(key, 1)));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "L1 still serves while L2 is down"
    );
    assert!(cache.l2_degraded());
    assert!(counter(&metrics, "cache_errors_total", "down", "") >= 1);

    let started = Instant::now();
    cache.invalidate("a").await;
    cache.insert("b", product("b", 2)).await;
    cache.invalidate_all().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_hung_redis_costs_at_most_the_l2_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (cache, metrics) = with_l2(
        "hung",
        &format!("redis://{address}"),
        "hung",
        Duration::from_millis(100),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    for key in ["a", "b"] {
        let started = Instant::now();
        let value = cache
            .get_or_load(key, counting(&calls, product(key, 1), Duration::ZERO))
            .await;
        assert_eq!(value, Ok(product(key, 1)));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(cache.l2_degraded());
    assert!(counter(&metrics, "cache_errors_total", "hung", "") >= 1);
    server.abort();
}

#[tokio::test]
async fn the_listener_stops_when_the_cache_is_dropped() {
    let (cache, _) = with_l2(
        "dropped",
        "redis://127.0.0.1:1",
        "dropped",
        Duration::from_millis(100),
    );
    let handle = cache
        .start_invalidation_listener(std::future::pending())
        .expect("a listener with L2 configured");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!cache.listener_connected());
    assert!(!handle.is_finished());
    drop(cache);
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("listener still running after the cache was dropped")
        .unwrap();
}

#[tokio::test]
async fn no_l2_means_no_listener() {
    let (cache, _) = l1_only("single", Duration::from_secs(60));
    assert!(
        cache
            .start_invalidation_listener(std::future::pending())
            .is_none()
    );
}

// ---- A real Redis (TEST_REDIS_URL). ----

/// Two "replicas" of one cache sharing the test Redis under a private prefix.
fn replicas(
    namespace: &RedisNamespace,
    name: &'static str,
) -> [(LayeredCache<Product>, Metrics); 2] {
    let prefix = format!("{}.{name}", namespace.namespace);
    let make = || with_l2(name, &namespace.url, &prefix, Duration::from_millis(500));
    [make(), make()]
}

async fn listening(cache: &LayeredCache<Product>) -> tokio::task::JoinHandle<()> {
    let handle = cache
        .start_invalidation_listener(std::future::pending())
        .expect("a listener with L2 configured");
    let cache = cache.clone();
    eventually(
        "the listener to subscribe",
        Duration::from_secs(5),
        async || cache.listener_connected(),
    )
    .await;
    handle
}

async fn a_second_replica_reads_l2_and_hears_invalidations() {
    let namespace = RedisNamespace::create();
    let [(a, _), (b, b_metrics)] = replicas(&namespace, "products");
    let _a_listener = listening(&a).await;
    let _b_listener = listening(&b).await;
    let (a_calls, b_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    let loaded = a
        .get_or_load("p1", counting(&a_calls, product("p1", 100), Duration::ZERO))
        .await;
    assert_eq!(loaded, Ok(product("p1", 100)));
    let shared = b
        .get_or_load("p1", counting(&b_calls, product("p1", 0), Duration::ZERO))
        .await;
    assert_eq!(
        shared,
        Ok(product("p1", 100)),
        "B did not read A's L2 entry"
    );
    assert_eq!(b_calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        counter(&b_metrics, "cache_hits_total", "products", r#"layer="l2""#),
        1
    );
    assert!(!a.l2_degraded() && !b.l2_degraded());

    // The write happens on A (the database now says 200); B must drop its L1 copy.
    a.invalidate("p1").await;
    let b_reads = b.clone();
    let calls = Arc::clone(&b_calls);
    eventually(
        "B to drop its L1 copy",
        Duration::from_secs(2),
        async move || {
            let value = b_reads
                .get_or_load("p1", counting(&calls, product("p1", 200), Duration::ZERO))
                .await;
            value == Ok(product("p1", 200))
        },
    )
    .await;
    assert_eq!(b_calls.load(Ordering::SeqCst), 1);

    // A write-through insert on B reaches A too (A re-reads it from L2).
    a.get_or_load("p1", counting(&a_calls, product("p1", 0), Duration::ZERO))
        .await
        .unwrap();
    b.insert("p1", product("p1", 300)).await;
    let a_reads = a.clone();
    eventually(
        "A to see B's insert",
        Duration::from_secs(2),
        async move || a_reads.get("p1").await == Some(product("p1", 300)),
    )
    .await;
}

async fn invalidate_all_moves_every_replica_to_a_new_generation() {
    let namespace = RedisNamespace::create();
    let [(a, _), (b, _)] = replicas(&namespace, "product-lists");
    let _a_listener = listening(&a).await;
    let _b_listener = listening(&b).await;
    let (a_calls, b_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    for page in ["page=1", "page=2"] {
        a.get_or_load(page, counting(&a_calls, product(page, 1), Duration::ZERO))
            .await
            .unwrap();
        let seen = b
            .get_or_load(page, counting(&b_calls, product(page, 0), Duration::ZERO))
            .await;
        assert_eq!(seen, Ok(product(page, 1)));
    }
    assert_eq!(b_calls.load(Ordering::SeqCst), 0);

    a.invalidate_all().await;

    // B's L1 copies go (pub/sub), and L2 no longer has them (new generation): B loads.
    let b_reads = b.clone();
    let calls = Arc::clone(&b_calls);
    eventually(
        "B to drop its list pages",
        Duration::from_secs(2),
        async move || {
            let value = b_reads
                .get_or_load(
                    "page=1",
                    counting(&calls, product("page=1", 2), Duration::ZERO),
                )
                .await;
            value == Ok(product("page=1", 2))
        },
    )
    .await;
    assert_eq!(b_calls.load(Ordering::SeqCst), 1);
    // A sees B's reload through L2 in the new generation, and page 2 is gone for both.
    assert_eq!(a.get("page=1").await, Some(product("page=1", 2)));
    assert_eq!(a.get("page=2").await, None);
    assert_eq!(b.get("page=2").await, None);

    // A third replica starting now reads the current generation.
    let prefix = format!("{}.product-lists", namespace.namespace);
    let (c, _) = with_l2(
        "product-lists",
        &namespace.url,
        &prefix,
        Duration::from_millis(500),
    );
    assert_eq!(c.get("page=1").await, Some(product("page=1", 2)));
}

async fn a_burst_of_misses_costs_one_l2_lookup_and_one_load() {
    let namespace = RedisNamespace::create();
    let [(cache, metrics), _] = replicas(&namespace, "burst-l2");
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            let load = counting(&calls, product("hot", 1), Duration::from_millis(50));
            tokio::spawn(async move { cache.get_or_load("hot", load).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(product("hot", 1)));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        counter(&metrics, "cache_misses_total", "burst-l2", r#"layer="l2""#),
        1
    );
    assert_eq!(
        counter(&metrics, "cache_hits_total", "burst-l2", r#"layer="l2""#),
        0
    );
}

async fn the_listener_stops_on_shutdown() {
    let namespace = RedisNamespace::create();
    let [(cache, _), _] = replicas(&namespace, "shutdown");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = cache
        .start_invalidation_listener(async move {
            let _ = stopped.await;
        })
        .unwrap();
    let probe = cache.clone();
    eventually(
        "the listener to subscribe",
        Duration::from_secs(5),
        async move || probe.listener_connected(),
    )
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("listener still running after shutdown")
        .unwrap();
    assert!(!cache.listener_connected());
}

async fn a_subscribed_listener_stops_when_the_cache_is_dropped() {
    let namespace = RedisNamespace::create();
    let [(cache, _), _] = replicas(&namespace, "dropped-subscribed");
    let handle = listening(&cache).await;
    drop(cache);
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("listener still running after the cache was dropped")
        .unwrap();
}

platform_test_backends::redis_tests!(
    a_second_replica_reads_l2_and_hears_invalidations,
    invalidate_all_moves_every_replica_to_a_new_generation,
    the_listener_stops_on_shutdown,
    a_subscribed_listener_stops_when_the_cache_is_dropped,
);

platform_test_backends::variant_tests!(
    threads = 4,
    redis_4_threads,
    [platform_test_backends::Need::Redis],
    (),
    a_burst_of_misses_costs_one_l2_lookup_and_one_load,
);
