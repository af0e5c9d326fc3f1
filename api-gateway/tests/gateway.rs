//! The gateway in front of real upstreams: the user service end to end, and an echo upstream
//! that shows exactly what is forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use api_gateway::{Gateway, GatewayConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::StreamExt;
use platform_http::{CancellationToken, Service};
use platform_proxy::Upstream;
use platform_testing::{Backend, TestDatabase};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

struct Running {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
    _db: Option<TestDatabase>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn gateway_to(upstream_url: &str, stop: &CancellationToken) -> String {
    gateway_with(upstream_url, stop, |_| {}).await
}

async fn gateway_with(
    upstream_url: &str,
    stop: &CancellationToken,
    customize: impl FnOnce(&mut GatewayConfig),
) -> String {
    let mut config =
        GatewayConfig::for_tests(vec![Upstream::parse("user-service", upstream_url).unwrap()]);
    customize(&mut config);
    let gateway = Gateway::build(config).await.unwrap();
    let base = format!("http://{}", gateway.http_addr());
    tokio::spawn(gateway.run(stop.clone()));
    base
}

/// The user service and a gateway in front of it.
async fn platform(backend: Backend) -> Option<Running> {
    let db = TestDatabase::create(backend).await?;
    let config = user_service::UserServiceConfig::for_tests(
        db.config.clone(),
        "gateway-test-secret-0123456789abcdef",
    );
    let users = user_service::Application::build(config).await.unwrap();
    let users_url = format!("http://{}", users.http_addr());
    let stop = CancellationToken::new();
    tokio::spawn(users.run(stop.clone()));
    let base = gateway_to(&users_url, &stop).await;
    Some(Running {
        base,
        client: reqwest::Client::new(),
        stop,
        _db: Some(db),
    })
}

async fn register_login_and_me_work_through_the_gateway(backend: Backend) {
    let Some(app) = platform(backend).await else {
        return;
    };
    let email = format!("e2e-{}@example.com", uuid::Uuid::new_v4().simple());
    let response = app
        .client
        .post(format!("{}/api/v1/users", app.base))
        .json(&json!({"email": email, "password": "through the gateway", "name": "Edge"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers().contains_key("x-request-id"));
    let user: Value = response.json().await.unwrap();

    let tokens: Value = app
        .client
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"email": email, "password": "through the gateway"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let me: Value = app
        .client
        .get(format!("{}/api/v1/users/me", app.base))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me, user);

    // Upstream errors keep their status and problem body.
    let response = app
        .client
        .get(format!("{}/api/v1/users/me", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    let refreshed = app
        .client
        .post(format!("{}/api/v1/auth/refresh", app.base))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
}

platform_testing::backend_tests!(register_login_and_me_work_through_the_gateway);

/// Answers every request with a JSON description of what it received; `/api/v1/users/stream`
/// streams its answer in two parts, the second only once `release` fires.
async fn echo_upstream(
    stop: &CancellationToken,
    release: Option<oneshot::Receiver<()>>,
    received: Option<mpsc::UnboundedSender<Vec<u8>>>,
) -> String {
    let release = std::sync::Arc::new(tokio::sync::Mutex::new(release));
    let app = Router::new().fallback(any(move |request: Request| {
        let release = release.clone();
        let received = received.clone();
        async move {
            let (parts, body) = request.into_parts();
            if parts.uri.path() == "/api/v1/users/stream" {
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
                if let Some(received) = &received {
                    let _ = received.send(chunk.clone());
                }
                all.extend(chunk);
            }
            let headers: serde_json::Map<String, Value> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
                .collect();
            let echo = json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "headers": headers,
                "body": String::from_utf8_lossy(&all),
            });
            (
                StatusCode::IM_A_TEAPOT,
                [
                    ("x-upstream", "echo"),
                    ("connection", "x-drop-me"),
                    ("x-drop-me", "1"),
                ],
                axum::Json(echo),
            )
                .into_response()
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
async fn requests_are_forwarded_faithfully_with_forwarding_headers() {
    let stop = CancellationToken::new();
    let upstream = echo_upstream(&stop, None, None).await;
    let base = gateway_to(&upstream, &stop).await;
    let response = reqwest::Client::new()
        .patch(format!("{base}/api/v1/users/42/things?sort=name&page=2"))
        .header("x-custom", "kept")
        .header("x-request-id", "req-123")
        .header("keep-alive", "timeout=5")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body("payload bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::IM_A_TEAPOT,
        "upstream status passes through"
    );
    assert_eq!(response.headers()["x-upstream"], "echo");
    assert!(
        !response.headers().contains_key("x-drop-me"),
        "hop-by-hop response headers are removed"
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
    assert!(headers.get("keep-alive").is_none());
    // Without an OpenTelemetry layer installed the incoming trace context is passed on as is.
    assert!(
        headers["traceparent"]
            .as_str()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    // A request without an id gets one, and the upstream sees the same one.
    let response = reqwest::Client::new()
        .get(format!("{base}/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], id.as_str());
    stop.cancel();
}

#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() {
    let stop = CancellationToken::new();
    let (release, gate) = oneshot::channel();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let upstream = echo_upstream(&stop, Some(gate), Some(seen_tx)).await;
    let base = gateway_to(&upstream, &stop).await;
    let client = reqwest::Client::new();

    // Response: the first part arrives while the upstream still holds back the second.
    let mut response = client
        .get(format!("{base}/api/v1/users/stream"))
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first part is forwarded before the upstream finishes")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    release.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");

    // Request: the upstream receives the first part before the client sends the second.
    let (body_tx, body_rx) = mpsc::unbounded_channel::<Result<Vec<u8>, std::io::Error>>();
    body_tx.send(Ok(b"part-one;".to_vec())).unwrap();
    let request = tokio::spawn(
        client
            .post(format!("{base}/api/v1/users/upload"))
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
    let echo: Value = request.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(echo["body"], "part-one;part-two");
    stop.cancel();
}

#[tokio::test]
async fn a_down_upstream_is_503_and_reported_by_health_and_ready() {
    let stop = CancellationToken::new();
    // Nothing listens on port 1.
    let base = gateway_to("http://127.0.0.1:1", &stop).await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{base}/api/v1/users/me"))
        .send()
        .await
        .unwrap();
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

    let response = client
        .get(format!("{base}/health/user-service"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let response = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["checks"]["user-service"]["status"], "down");
    // The gateway itself is alive.
    assert_eq!(
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stop.cancel();
}

#[tokio::test]
async fn gateway_serves_health_metrics_docs_and_404s() {
    let Some(app) = platform(Backend::Sqlite).await else {
        return;
    };
    let client = &app.client;
    let health: Value = client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["service"], "api-gateway");
    let upstream: Value = client
        .get(format!("{}/health/user-service", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(upstream["status"], "up");
    let response = client
        .get(format!("{}/health/nope-service", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        client
            .get(format!("{}/ready", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let response = client
        .get(format!("{}/api/v1/unknown", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    client
        .get(format!("{}/api/v1/users/me", app.base))
        .send()
        .await
        .unwrap();
    let metrics = client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"http_requests_total{service="api-gateway",method="GET",route="/api/v1/users/{*rest}",status="401"} 1"#),
        "{metrics}"
    );

    let doc: Value = client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    let response = client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
    let config = client
        .get(format!("{}/docs/swagger-initializer.js", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(config.contains("/openapi.json"), "{config}");
}

#[tokio::test]
async fn clients_over_the_rate_limit_get_429_with_retry_after_and_ops_endpoints_stay_open() {
    let stop = CancellationToken::new();
    let upstream = echo_upstream(&stop, None, None).await;
    let base = gateway_with(&upstream, &stop, |config| {
        config.rate_limit_per_minute = std::num::NonZeroU32::new(3);
    })
    .await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .get(format!("{base}/api/v1/users"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    }
    let response = client
        .get(format!("{base}/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    for path in ["/health", "/metrics", "/ready"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_ne!(response.status(), 429, "{path} is never rate limited");
    }
    stop.cancel();
}
