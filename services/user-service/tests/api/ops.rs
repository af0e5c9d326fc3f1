//! `/health`, `/ready`, `/metrics` and `/openapi.json` of the user service.

use platform_redis::RedisConfig;
use platform_testing::Backend;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_with};

async fn ready_checks_the_database(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert!(
        body["checks"].get("redis").is_none(),
        "Redis is checked only when configured"
    );
    let health: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "user-service");
}

platform_testing::backend_tests!(ready_checks_the_database);

#[tokio::test]
async fn ready_is_503_naming_redis_when_it_is_down() {
    let Some(app) = spawn_with(Backend::Sqlite, |config| {
        // Nothing listens on port 1.
        config.redis = Some(RedisConfig::new("redis://127.0.0.1:1"));
    })
    .await
    else {
        return;
    };
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
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

#[tokio::test]
async fn ready_checks_a_real_redis_when_configured() {
    let Some(url) = platform_testing::redis_url() else {
        eprintln!("skipped: TEST_REDIS_URL is not set");
        return;
    };
    let Some(app) = spawn_with(Backend::Sqlite, |config| {
        config.redis = Some(RedisConfig::new(&url));
    })
    .await
    else {
        return;
    };
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["redis"]["status"], "up");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let (_, tokens) = app.new_user().await;
    for _ in 0..2 {
        app.get(
            &format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
            &tokens.access,
        )
        .await;
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"http_requests_total{service="user-service",method="GET",route="/api/v1/users/{id}",status="404"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/api/v1/users",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{service=\"user-service\""),
        "{text}"
    );
}

#[tokio::test]
async fn the_outbox_relay_publishes_and_reports_its_metrics() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    app.new_user().await;
    let mut text = String::new();
    for _ in 0..100 {
        text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text
            .contains(r#"events_published_total{service="user-service",type="user.registered"} 2"#)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        text.contains(r#"events_published_total{service="user-service",type="user.registered"} 2"#),
        "the seeded admin's and the new user's registrations: {text}"
    );
    assert!(
        text.contains(r#"outbox_pending{service="user-service"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_lists_every_endpoint_with_schemas() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
