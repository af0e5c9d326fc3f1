//! The gateway in front of real upstreams: the user service end to end, and upstreams that
//! show exactly what is forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform_auth::Role;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::StreamExt;
use platform_http::{CancellationToken, Service};
use platform_testing::{Backend, TestDatabase, eventually};
use serde_json::{Value, json};
use support::{Fake, SECRET, TestGateway, config, user_token, with_routes};
use tokio::sync::{mpsc, oneshot};

struct Running {
    gateway: TestGateway,
    stop: CancellationToken,
    _db: TestDatabase,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::ops::Deref for Running {
    type Target = TestGateway;

    fn deref(&self) -> &TestGateway {
        &self.gateway
    }
}

async fn gateway_to(upstream_url: &str) -> TestGateway {
    TestGateway::start(config(&[("user-service", upstream_url)])).await
}

/// The user service and a gateway in front of it.
async fn platform(backend: Backend) -> Running {
    let db = TestDatabase::create(backend).await;
    let config_users = user_service::UserServiceConfig::for_tests(db.config.clone(), SECRET);
    let users = user_service::Application::build(config_users)
        .await
        .unwrap();
    let users_url = format!("http://{}", users.http_addr());
    let stop = CancellationToken::new();
    tokio::spawn(users.run(stop.clone()));
    Running {
        gateway: gateway_to(&users_url).await,
        stop,
        _db: db,
    }
}

async fn register_login_and_me_work_through_the_gateway(backend: Backend) {
    let app = platform(backend).await;
    let email = format!("e2e-{}@example.com", uuid::Uuid::new_v4().simple());
    let response = app
        .post("/api/v1/users")
        .json(&json!({"email": email, "password": "through the gateway", "name": "Edge"}))
        .await;
    assert_eq!(response.status(), 201);
    assert!(response.headers().contains_key("x-request-id"));
    let user: Value = response.json().await.unwrap();

    let tokens: Value = app
        .post("/api/v1/auth/login")
        .json(&json!({"email": email, "password": "through the gateway"}))
        .await
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let me: Value = app
        .get("/api/v1/users/me")
        .by(access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me, user);

    // Upstream errors keep their status and problem body.
    let response = app.get("/api/v1/users/me").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    let refreshed = app
        .post("/api/v1/auth/refresh")
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .await;
    assert_eq!(refreshed.status(), 200);
}

platform_testing::backend_tests!(register_login_and_me_work_through_the_gateway);

/// An upstream whose `/api/v1/auth/stream` streams its answer in two parts, the second only
/// once `release` fires, and which reports every chunk of a request body as it arrives.
async fn streaming_upstream(
    stop: &CancellationToken,
    release: oneshot::Receiver<()>,
    received: mpsc::UnboundedSender<Vec<u8>>,
) -> String {
    let release = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release)));
    let app = Router::new().fallback(any(move |request: Request| {
        let release = release.clone();
        let received = received.clone();
        async move {
            let (parts, body) = request.into_parts();
            if parts.uri.path() == "/api/v1/auth/stream" {
                let gate = release.lock().await.take();
                let stream =
                    futures::stream::once(async { Ok::<_, std::io::Error>(b"first;".to_vec()) })
                        .chain(futures::stream::once(async move {
                            if let Some(gate) = gate {
                                let _ = gate.await;
                            }
                            Ok(b"second".to_vec())
                        }));
                return Response::new(Body::from_stream(stream));
            }
            let mut body = body.into_data_stream();
            let mut all = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.unwrap().to_vec();
                let _ = received.send(chunk.clone());
                all.extend(chunk);
            }
            axum::Json(json!({"body": String::from_utf8_lossy(&all)})).into_response()
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap();
    });
    url
}

#[tokio::test]
async fn requests_are_forwarded_faithfully_with_forwarding_and_identity_headers() {
    forwarded_faithfully(true).await;
}

#[tokio::test]
async fn the_hyper_path_forwards_as_faithfully() {
    forwarded_faithfully(false).await;
}

async fn forwarded_faithfully(fast_path: bool) {
    let upstream = Fake::start("users").await;
    upstream.set(|b| b.status = 418);
    let mut config = config(&[("user-service", &upstream.url)]);
    config.fast_path = fast_path;
    let gateway = TestGateway::start(config).await;
    let user = uuid::Uuid::now_v7();
    let response = gateway
        .patch("/api/v1/users/42/things?sort=name&page=2")
        .by(support::token(Role::User, user))
        .header("x-custom", "kept")
        .header("x-request-id", "req-123")
        .header("keep-alive", "timeout=5")
        .header("x-user-id", "someone-else")
        .header("x-user-role", "admin")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body("payload bytes")
        .await;
    assert_eq!(
        response.status(),
        StatusCode::IM_A_TEAPOT,
        "upstream status passes through"
    );
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "PATCH");
    assert_eq!(echo["path"], "/api/v1/users/42/things");
    assert_eq!(echo["query"], "sort=name&page=2");
    assert_eq!(echo["body"], "payload bytes");
    let headers = &echo["headers"];
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["x-request-id"], "req-123");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert!(
        headers["x-forwarded-host"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        headers.get("keep-alive").is_none(),
        "hop-by-hop headers are removed"
    );
    assert_eq!(
        headers["x-user-id"],
        user.to_string().as_str(),
        "spoofed identity replaced by the verified one"
    );
    assert_eq!(headers["x-user-role"], "user");
    assert!(
        headers["traceparent"]
            .as_str()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    // A request without an id gets one, and the upstream sees the same one; a public route
    // with no token gets no identity headers, even spoofed ones.
    let response = gateway
        .post("/api/v1/auth/login")
        .header("x-user-id", "forged")
        .await;
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], id.as_str());
    assert!(echo["headers"].get("x-user-id").is_none());
}

#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() {
    let stop = CancellationToken::new();
    let (release, gate) = oneshot::channel();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let upstream = streaming_upstream(&stop, gate, seen_tx).await;
    // A route timeout far shorter than the response: it bounds the wait for the upstream's
    // answer, never a body still streaming (a download, a Server-Sent Events stream).
    let gateway = TestGateway::start(with_routes(
        config(&[]),
        &format!(
            "[services.users]\nupstreams = [\"{upstream}\"]\n\n[[routes]]\nprefix = \"/api/v1/auth\"\nservice = \"users\"\nauth = \"public\"\ntimeout = \"300ms\"\n"
        ),
    ))
    .await;

    // Response: the first part arrives while the upstream still holds back the second.
    let mut response = gateway.get("/api/v1/auth/stream").await;
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first part is forwarded before the upstream finishes")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    tokio::time::sleep(Duration::from_millis(800)).await;
    release.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");

    // Request: the upstream receives the first part before the client sends the second. (A
    // POST without Idempotency-Key is never retried, so it is never buffered.)
    let (body_tx, body_rx) = mpsc::unbounded_channel::<Result<Vec<u8>, std::io::Error>>();
    body_tx.send(Ok(b"part-one;".to_vec())).unwrap();
    let request = tokio::spawn(
        gateway
            .post("/api/v1/auth/upload")
            .body(reqwest::Body::wrap_stream(
                tokio_stream::wrappers::UnboundedReceiverStream::new(body_rx),
            ))
            .send(),
    );
    let received = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the upstream sees the first part while the client is still sending")
        .unwrap();
    assert_eq!(received, b"part-one;");
    body_tx.send(Ok(b"part-two".to_vec())).unwrap();
    drop(body_tx);
    let echo: Value = request.await.unwrap().json().await.unwrap();
    assert_eq!(echo["body"], "part-one;part-two");
    stop.cancel();
}

#[tokio::test]
async fn a_down_upstream_is_503_and_reported_by_health() {
    // Nothing listens on port 1.
    let gateway = gateway_to("http://127.0.0.1:1").await;
    let response = gateway.get("/api/v1/users/me").by(user_token()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("retry-after"));
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("127.0.0.1"),
        "internal addresses never leak: {body}"
    );

    eventually(
        "the user service's health to say 503",
        Duration::from_secs(3),
        || async { gateway.get("/health/user-service").await.status() == 503 },
    )
    .await;
    let health = gateway.health().await;
    assert_eq!(health["services"]["user_service"]["status"], "down");
    // The gateway itself stays ready: one service down must not take it out of rotation.
    assert_eq!(gateway.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn gateway_serves_health_metrics_docs_and_404s() {
    let app = platform(Backend::Sqlite).await;
    // A health page as `token`'s holder sees it.
    let page = async |path: &str, token: Option<String>| -> Value {
        app.get(path).by(token).await.json().await.unwrap()
    };
    // The services not started here fail their health checks within a few rounds.
    eventually(
        "the gateway's health to be degraded",
        Duration::from_secs(3),
        || async { page("/health", None).await["status"] == "degraded" },
    )
    .await;
    // Anyone sees how things are; only an administrator sees what they are made of.
    assert_eq!(page("/health", None).await, json!({"status": "degraded"}));
    assert_eq!(
        page("/health/user-service", Some(support::user_token())).await,
        json!({"status": "up"})
    );
    let admin = support::token(Role::Admin, uuid::Uuid::now_v7());
    let health = page("/health", Some(admin.clone())).await;

    let users = &health["services"]["user_service"];
    assert_eq!(users["status"], "up");
    assert_eq!(users["circuit_breaker"], "closed");
    assert!(users["latency_ms"].is_number());
    assert_eq!(
        health["status"], "degraded",
        "the services not started here are down"
    );
    assert_eq!(health["services"]["product_service"]["status"], "down");

    let upstream = page("/health/user-service", Some(admin)).await;
    assert_eq!(upstream["status"], "up");
    assert!(upstream["endpoints"][0]["url"].is_string());
    let response = app.get("/health/nope-service").await;
    assert_eq!(response.status(), 404);
    assert_eq!(app.get("/ready").await.status(), 200);

    let response = app.get("/api/v1/unknown").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    app.get("/api/v1/users/me").await;
    app.get("/api/v1/users/me").by(user_token()).await;
    let metrics = app.metrics().await;
    let text = metrics.text();
    assert_eq!(
        metrics.sum(
            "http_requests_total",
            &[
                ("service", "api-gateway"),
                ("method", "GET"),
                ("route", "/api/v1/users/*"),
                ("status", "401"),
            ]
        ),
        1.0,
        "{text}"
    );
    assert!(
        text.contains(
            r#"upstream_requests_total{service="api-gateway",upstream="user-service",endpoint="http://127.0.0.1:"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"outcome="4xx"} 1"#), "{text}");
    assert!(
        text.contains(
            r#"circuit_breaker_state{service="api-gateway",upstream="user-service",endpoint="http://127.0.0.1:"#
        ),
        "{text}"
    );

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/auth/login",
        "/health",
        "/health/{service}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} in the merged document"
        );
    }
    assert!(doc["components"]["schemas"]["UserResponse"].is_object());

    let response = app.get("/docs/").await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
    let config = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(config.contains("/openapi.json"), "{config}");
}
