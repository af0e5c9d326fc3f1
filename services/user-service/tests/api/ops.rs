//! `/health`, `/ready`, `/metrics` and `/openapi.json` of the user service.

use std::time::Duration;

use platform_redis::RedisConfig;
use platform_testing::{Backend, eventually};
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_with};

async fn ready_checks_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert!(
        body["checks"].get("redis").is_none(),
        "Redis is checked only when configured"
    );
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "user-service");
}

platform_testing::backend_tests!(ready_checks_the_database);

#[tokio::test]
async fn ready_is_503_naming_redis_when_it_is_down() {
    let app = spawn_with(Backend::Sqlite, |config| {
        // Nothing listens on port 1.
        config.redis = Some(RedisConfig::new("redis://127.0.0.1:1"));
    })
    .await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert!(
        body["checks"]["redis"]["error"]
            .as_str()
            .unwrap()
            .contains("redis")
    );
}

async fn ready_checks_a_real_redis_when_configured() {
    let url = platform_testing::redis_url().unwrap();
    let app = spawn_with(Backend::Sqlite, |config| {
        config.redis = Some(RedisConfig::new(&url));
    })
    .await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["redis"]["status"], "up");
}

platform_testing::redis_tests!(ready_checks_a_real_redis_when_configured);

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, tokens) = app.new_user().await;
    for _ in 0..2 {
        app.get(&format!("/api/v1/users/{}", uuid::Uuid::now_v7()))
            .by(&tokens.access)
            .await;
    }
    let metrics = app.metrics().await;
    let text = metrics.text();
    assert_eq!(
        metrics.sum(
            "http_requests_total",
            &[
                ("service", "user-service"),
                ("method", "GET"),
                ("route", "/api/v1/users/{id}"),
                ("status", "404"),
            ]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        metrics.sum(
            "http_requests_total",
            &[("route", "/api/v1/users"), ("status", "201")]
        ),
        1.0,
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{service=\"user-service\""),
        "{text}"
    );
}

#[tokio::test]
async fn the_outbox_relay_publishes_and_reports_its_metrics() {
    let app = spawn_app(Backend::Sqlite).await;
    app.new_user().await;
    let published = &[("service", "user-service"), ("type", "user.registered")];
    eventually(
        "the seeded admin's and the new user's registrations to be published",
        Duration::from_secs(5),
        || async { app.metrics().await.sum("events_published_total", published) == 2.0 },
    )
    .await;
    let metrics = app.metrics().await;
    let text = metrics.text();
    assert!(
        text.contains(r#"outbox_pending{service="user-service"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_lists_every_endpoint_with_schemas() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        ("/api/v1/users", "post"),
        ("/api/v1/users", "get"),
        ("/api/v1/users/me", "get"),
        ("/api/v1/users/{id}", "get"),
        ("/api/v1/users/{id}", "put"),
        ("/api/v1/users/{id}", "delete"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
    ];
    for (path, method) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty())
        );
    }
    for schema in [
        "UserResponse",
        "TokenResponse",
        "RegisterRequest",
        "Problem",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} schema"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let register = &doc["paths"]["/api/v1/users"]["post"];
    assert!(register["responses"]["409"]["content"]["application/problem+json"].is_object());
}
