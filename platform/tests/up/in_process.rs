//! `platform up` in-process: the whole platform on each database backend and on Redis, how
//! its configuration is checked, and which ports it takes.

use std::time::Duration;

use platform_config::Env;
use platform_http::CancellationToken;
use platform_testing::{Backend, TestApp, TestDatabase};
use serde_json::Value;

use crate::env_for;
use crate::event_store::{
    audit_record_reaches_the_event_store, edge_refusal_reaches_the_event_store,
    registration_event_reaches_the_event_store,
};
use crate::journeys::{
    direct_charges_are_checked_against_their_order, main_journey, order_journey, product_journey,
};

async fn the_main_journey_works_through_platform_up(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let stop = CancellationToken::new();
    let running = platform::up(&Env::from_pairs(env_for(&db)), stop.clone())
        .await
        .unwrap();
    let gateway = running.gateway().unwrap();
    let banner = platform::banner(&running);
    assert!(
        banner.contains(&format!(
            "api-gateway    http://localhost:{}",
            gateway.port()
        )),
        "a wildcard bind is shown as localhost: {banner}"
    );

    assert!(banner.contains("user-service"), "{banner}");
    // Internal services listen on loopback only.
    let users = running
        .endpoints
        .iter()
        .find(|e| e.service == "user-service")
        .unwrap();
    assert!(users.http.ip().is_loopback());
    assert!(users.grpc.unwrap().ip().is_loopback());

    let app = TestApp::new(format!("http://{gateway}"));
    let user = main_journey(&app).await;
    registration_event_reaches_the_event_store(&app, &user).await;
    let product = product_journey(&app).await;
    audit_record_reaches_the_event_store(&app, "product.create", &format!("product:{product}"))
        .await;
    edge_refusal_reaches_the_event_store(&app).await;
    let (buyer, order) = order_journey(&app, &product).await;
    direct_charges_are_checked_against_their_order(&app, &buyer, &order).await;
    // The seed's `curl :8080/metrics | grep cache_hits_total`: under platform up the gateway's
    // scrape covers every service, database pools included (each backend's pool is read).
    let metrics = app.metrics().await;
    let text = metrics.text();
    for wanted in [
        r#"cache_hits_total{service="product-service""#,
        r#"db_pool_max_connections{service="order-service"}"#,
        r#"db_query_duration_seconds_count{service="payment-service""#,
    ] {
        assert!(
            text.contains(wanted),
            "{wanted} missing from the gateway's /metrics"
        );
    }
    assert_eq!(
        metrics.sum(
            "saga_duration_seconds_count",
            &[("service", "order-service"), ("outcome", "confirmed")]
        ),
        1.0,
        "one confirmed saga in the gateway's /metrics"
    );
    assert_eq!(
        text.matches("# TYPE cache_hits_total ").count(),
        1,
        "each family declared once"
    );

    if backend == Backend::Sqlite {
        // Embedded mode loads the demo catalog.
        let catalog: Value = app.get("/api/v1/products").await.json().await.unwrap();
        assert!(catalog["total"].as_u64().unwrap() >= 50, "{catalog}");
    }

    if backend == Backend::Postgres {
        use sea_orm::ConnectionTrait;
        let conn = platform_db::connect(&db.config, "probe").await.unwrap();
        let rows = conn
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT table_schema FROM information_schema.tables WHERE table_name IN ('users', 'products', 'payments', 'orders', 'event_store', 'outbox') ORDER BY 1",
            ))
            .await
            .unwrap();
        let schemas: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("", "table_schema").unwrap())
            .collect();
        assert_eq!(
            schemas,
            [
                "event_store",
                "order_service",
                "order_service",
                "payment_service",
                "payment_service",
                "product_service",
                "product_service",
                "user_service",
                "user_service"
            ],
            "each service in its own schema"
        );
    }

    stop.cancel();

    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("everything stops")
        .unwrap();
}

platform_testing::backend_tests!(the_main_journey_works_through_platform_up);

async fn events_flow_through_redis_streams_when_redis_is_configured() {
    let redis = platform_testing::RedisNamespace::create();
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut vars = env_for(&db);
    vars.push(("REDIS_URL".to_owned(), redis.url.clone()));
    vars.push(("EVENTS_NAMESPACE".to_owned(), redis.namespace.clone()));
    let stop = CancellationToken::new();
    let running = platform::up(&Env::from_pairs(vars), stop.clone())
        .await
        .unwrap();
    let app = TestApp::new(format!("http://{}", running.gateway().unwrap()));
    let user = main_journey(&app).await;
    registration_event_reaches_the_event_store(&app, &user).await;
    let product = product_journey(&app).await;
    audit_record_reaches_the_event_store(&app, "product.create", &format!("product:{product}"))
        .await;
    edge_refusal_reaches_the_event_store(&app).await;
    // The stream really is in Redis.
    let client = ::redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let length: u64 = ::redis::cmd("XLEN")
        .arg(format!("{}.user", redis.namespace))
        .query(&mut conn)
        .unwrap();
    assert!(length >= 2, "the admin's and the user's registrations");
    let audited: u64 = ::redis::cmd("XLEN")
        .arg(format!("{}.audit", redis.namespace))
        .query(&mut conn)
        .unwrap();
    assert!(audited >= 1, "the product's creation");
    stop.cancel();
    running.wait().await.unwrap();
}

platform_testing::redis_tests!(events_flow_through_redis_streams_when_redis_is_configured);

#[tokio::test]
async fn configuration_problems_of_every_service_are_reported_together() {
    let env = Env::from_pairs([
        ("USER_SERVICE_PORT", "http"),
        ("UPSTREAM_TIMEOUT", "later"),
        ("DB_MAX_CONNECTIONS", "-1"),
    ]);
    let error = match platform::up(&env, CancellationToken::new()).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("bad configuration must not start"),
    };
    for variable in [
        "USER_SERVICE_PORT",
        "UPSTREAM_TIMEOUT",
        "DB_MAX_CONNECTIONS",
    ] {
        assert!(error.contains(variable), "{variable} missing from {error}");
    }
}

#[test]
fn a_bare_port_sets_the_gateway_port_only() {
    // If PORT reached the user service too, both would try to bind one port and start-up fails.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let env = Env::from_pairs([
            ("PORT", port.to_string()),
            ("HOST", "127.0.0.1".to_owned()),
            ("USER_SERVICE_PORT", "0".to_owned()),
            ("USER_SERVICE_GRPC_PORT", "0".to_owned()),
            ("PRODUCT_SERVICE_PORT", "0".to_owned()),
            ("PRODUCT_SERVICE_GRPC_PORT", "0".to_owned()),
            ("PAYMENT_SERVICE_PORT", "0".to_owned()),
            ("PAYMENT_SERVICE_GRPC_PORT", "0".to_owned()),
            ("ORDER_SERVICE_PORT", "0".to_owned()),
            ("ORDER_SERVICE_GRPC_PORT", "0".to_owned()),
            ("NOTIFICATION_SERVICE_PORT", "0".to_owned()),
            ("EVENT_STORE_PORT", "0".to_owned()),
            ("DATA_DIR", dir.path().display().to_string()),
        ]);
        let stop = CancellationToken::new();
        let running = platform::up(&env, stop.clone()).await.unwrap();
        assert_eq!(running.gateway().unwrap().port(), port);
        stop.cancel();
        running.wait().await.unwrap();
    });
}
