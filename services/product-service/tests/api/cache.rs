//! The read cache: hits, one load for a burst of misses, replicas sharing Redis, and reads
//! that keep working while Redis is down.

use std::time::Duration;

use platform_redis::RedisConfig;
use platform_testing::{Backend, RedisNamespace, TestDatabase};
use serde_json::{Value, json};

use crate::helpers::{eventually, json_of, spawn_on, spawn_with};

const L1: (&str, &str) = ("layer", "l1");
const PRODUCTS: (&str, &str) = ("cache", "products");
const LISTS: (&str, &str) = ("cache", "product_lists");

async fn a_second_read_is_a_cache_hit(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let id = app.new_product("Mug", "kitchen", 1299, 5).await;
    let first = app.product(&id).await;
    let hits = app.metrics().await.sum("cache_hits_total", &[PRODUCTS, L1]);
    let misses = app
        .metrics()
        .await
        .sum("cache_misses_total", &[PRODUCTS, L1]);
    assert_eq!(misses, 1.0, "the first read missed");
    assert_eq!(
        app.metrics().await.sum("cache_loads_total", &[PRODUCTS]),
        1.0
    );

    let second = app.product(&id).await;
    assert_eq!(second, first);
    assert_eq!(
        app.metrics().await.sum("cache_hits_total", &[PRODUCTS, L1]),
        hits + 1.0,
        "the second read was served from L1"
    );
    assert_eq!(
        app.metrics()
            .await
            .sum("cache_misses_total", &[PRODUCTS, L1]),
        misses
    );
    assert_eq!(
        app.metrics().await.sum("cache_loads_total", &[PRODUCTS]),
        1.0
    );
    let metrics = app.metrics().await;
    let service = ("service", "product-service");
    assert!(
        metrics.sum("cache_hits_total", &[PRODUCTS, L1, service]) > 0.0,
        "{}",
        metrics.text()
    );

    // List pages are cached too.
    json_of(app.get("/api/v1/products?sort=name").await, 200).await;
    let list_hits = app.metrics().await.sum("cache_hits_total", &[LISTS, L1]);
    json_of(app.get("/api/v1/products?sort=name").await, 200).await;
    assert_eq!(
        app.metrics().await.sum("cache_hits_total", &[LISTS, L1]),
        list_hits + 1.0
    );

    // A write drops the entry: the next read loads the new price.
    let response = app
        .update(&id, &json!({"price": {"amount": 999, "currency": "EUR"}}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.product(&id).await["price"]["amount"], 999);
    assert_eq!(
        app.metrics().await.sum("cache_loads_total", &[PRODUCTS]),
        2.0
    );
    let list = json_of(app.get("/api/v1/products?sort=name").await, 200).await;
    assert_eq!(list["items"][0]["price"]["amount"], 999);
}

async fn a_hundred_concurrent_misses_load_once(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let id = app.new_product("Hot product", "misc", 500, 5).await;
    assert_eq!(
        app.metrics().await.sum("cache_loads_total", &[PRODUCTS]),
        0.0,
        "cold"
    );
    let path = format!("/api/v1/products/{id}");
    let reads = (0..100).map(|_| {
        let request = app.get(&path);
        async move {
            let response = request.await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    });
    let bodies = futures::future::join_all(reads).await;
    assert!(bodies.iter().all(|body| body == &bodies[0]));
    assert_eq!(bodies[0]["id"], id.as_str());
    assert_eq!(
        app.metrics().await.sum("cache_loads_total", &[PRODUCTS]),
        1.0,
        "100 concurrent misses cost one database query"
    );
    assert_eq!(
        app.metrics().await.sum("cache_hits_total", &[PRODUCTS, L1])
            + app
                .metrics()
                .await
                .sum("cache_misses_total", &[PRODUCTS, L1]),
        100.0
    );

    // The same for an unknown id: the "not found" is loaded once and shared.
    let unknown = format!("/api/v1/products/{}", uuid::Uuid::now_v7());
    let probes = (0..50).map(|_| app.get(&unknown).send());
    for response in futures::future::join_all(probes).await {
        assert_eq!(response.status(), 404);
    }
    assert_eq!(
        app.metrics().await.sum("cache_loads_total", &[PRODUCTS]),
        2.0
    );
}

/// Two replicas over one database and one Redis: B's cached copy is dropped when A writes.
async fn replicas_share_redis_and_hear_invalidations(backend: Backend) {
    let redis = RedisNamespace::create();
    let db = std::sync::Arc::new(TestDatabase::create(backend).await);
    // The namespace's keys are deleted afterwards; the cache's prefix is the service name.
    let name = format!("{}.product-service", redis.namespace);
    let configure = |config: &mut product_service::ProductServiceConfig| {
        config.server.service_name = name.clone();
        config.redis = Some(RedisConfig::new(&redis.url));
    };
    let a = spawn_on(&db, configure).await;
    let b = spawn_on(&db, configure).await;
    // Both replicas' invalidation listeners are subscribed (one subscribing later would
    // clear its L1 meanwhile, and the counts below would be off).
    let client = platform_redis::redis::Client::open(redis.url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    for cache in ["products", "product_lists"] {
        let channel = format!("{name}:{cache}:invalidate");
        eventually(
            "both listeners to subscribe",
            Duration::from_secs(5),
            || {
                let mut conn = conn.clone();
                let channel = channel.clone();
                async move {
                    let (_, subscribers): (String, i64) = platform_redis::redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg(&channel)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    subscribers == 2
                }
            },
        )
        .await;
    }

    let id = a.new_product("Shared", "misc", 1000, 5).await;
    assert_eq!(a.product(&id).await["price"]["amount"], 1000);
    // B finds A's load in Redis: no database query of its own.
    assert_eq!(b.product(&id).await["price"]["amount"], 1000);
    assert_eq!(
        b.metrics()
            .await
            .sum("cache_hits_total", &[PRODUCTS, ("layer", "l2")]),
        1.0
    );
    assert_eq!(b.metrics().await.sum("cache_loads_total", &[PRODUCTS]), 0.0);
    // And now from its own L1.
    assert_eq!(b.product(&id).await["price"]["amount"], 1000);
    assert_eq!(
        b.metrics().await.sum("cache_hits_total", &[PRODUCTS, L1]),
        1.0
    );
    let listed = json_of(b.get("/api/v1/products").await, 200).await;
    assert_eq!(listed["items"][0]["price"]["amount"], 1000);

    let response = a
        .update(&id, &json!({"price": {"amount": 2000, "currency": "EUR"}}))
        .await;
    assert_eq!(response.status(), 200);
    eventually(
        "replica B to see the new price",
        Duration::from_secs(2),
        || {
            let (b, id) = (&b, &id);
            async move { b.product(id).await["price"]["amount"] == 2000 }
        },
    )
    .await;
    eventually(
        "replica B's list to show it",
        Duration::from_secs(2),
        || {
            let b = &b;
            async move {
                json_of(b.get("/api/v1/products").await, 200).await["items"][0]["price"]["amount"]
                    == 2000
            }
        },
    )
    .await;

    // Reservations through A reach B's readers too.
    a.reserve(&uuid::Uuid::now_v7().to_string(), &[(&id, 5)])
        .await
        .unwrap();
    eventually(
        "replica B to see the reservation",
        Duration::from_secs(2),
        || {
            let (b, id) = (&b, &id);
            async move { b.product(id).await["available"] == 0 }
        },
    )
    .await;
    let ready: Value = json_of(b.get("/ready").await, 200).await;
    assert_eq!(ready["status"], "ready", "{ready}");
}

async fn reads_go_on_while_redis_is_down(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.redis = Some(RedisConfig::new("redis://127.0.0.1:1"));
    })
    .await;
    let ready = app.get("/ready").await;
    assert_eq!(
        ready.status(),
        200,
        "a cache outage does not make the service unready"
    );
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");

    let id = app.new_product("Resilient", "misc", 100, 3).await;
    for _ in 0..3 {
        let product = app.product(&id).await;
        assert_eq!(product["name"], "Resilient");
    }
    let list = json_of(app.get("/api/v1/products").await, 200).await;
    assert_eq!(list["total"], 1);
    let found = json_of(app.get("/api/v1/products/search?q=resilient").await, 200).await;
    assert_eq!(found["total"], 1);
    let response = app.update(&id, &json!({"name": "Still resilient"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.product(&id).await["name"], "Still resilient");
    app.reserve(&uuid::Uuid::now_v7().to_string(), &[(&id, 1)])
        .await
        .unwrap();
    assert_eq!(app.product(&id).await["available"], 2);

    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["cache"]["status"], "down", "{ready}");
    assert_eq!(ready["checks"]["database"]["status"], "up", "{ready}");
    assert!(
        app.metrics().await.sum("cache_errors_total", &[PRODUCTS]) > 0.0,
        "the failures are counted"
    );
}

platform_testing::backend_tests!(
    a_second_read_is_a_cache_hit,
    a_hundred_concurrent_misses_load_once,
    reads_go_on_while_redis_is_down,
);
platform_testing::variant_tests!(
    sqlite_redis,
    [platform_testing::Need::Redis],
    (platform_testing::Backend::Sqlite),
    replicas_share_redis_and_hear_invalidations,
);
platform_testing::variant_tests!(
    postgres_redis,
    [
        platform_testing::Need::Postgres,
        platform_testing::Need::Redis
    ],
    (platform_testing::Backend::Postgres),
    replicas_share_redis_and_hear_invalidations,
);
