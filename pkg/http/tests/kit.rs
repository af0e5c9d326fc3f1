//! The kit's promises, checked against a real server on a random port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use platform_http::{
    FnCheck, HttpApi, Json, Metrics, Page, PageRequest, Problem, Readiness, Server, ServerConfig,
    ServiceParts,
};
use platform_test_backends::TestApp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Greeting {
    name: String,
    times: u8,
}

async fn echo(Json(body): Json<Greeting>) -> Json<Greeting> {
    Json(body)
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(700)).await;
    "done"
}

async fn boom() -> &'static str {
    panic!("the handler broke")
}

async fn items(page: PageRequest) -> Json<Page<u64>> {
    let all: Vec<u64> = (1..=250).collect();
    let items = all
        .iter()
        .copied()
        .skip(page.offset() as usize)
        .take(page.per_page() as usize)
        .collect();
    Json(page.into_page(items, all.len() as u64))
}

async fn fails() -> Result<&'static str, Problem> {
    Err(Problem::conflict("already there"))
}

struct Running {
    http: TestApp,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::ops::Deref for Running {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.http
    }
}

async fn start(readiness: Readiness, timeout: Duration) -> Running {
    start_with(readiness, timeout, Duration::from_secs(5)).await
}

async fn start_with(
    readiness: Readiness,
    timeout: Duration,
    shutdown_timeout: Duration,
) -> Running {
    let router = Router::new()
        .route("/echo", post(echo))
        .route("/slow", get(slow))
        .route("/boom", get(boom))
        .route("/items", get(items))
        .route("/items/{id}", get(fails));
    let mut config = ServerConfig::for_tests("kit-test");
    config.request_timeout = timeout;
    config.max_body_bytes = 1024;
    config.shutdown_timeout = shutdown_timeout;
    let server = Server::bind(
        &config,
        ServiceParts {
            http: HttpApi {
                router,
                openapi: Some(utoipa::openapi::OpenApi::default()),
                own_health: false,
            },
            grpc: None,
            readiness,
            metrics: Metrics::new("kit-test"),
            audit: platform_http::audit::Audit::new("kit-test"),
        },
    )
    .await
    .unwrap();
    let http = TestApp::new(format!("http://{}", server.http_addr()));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.unwrap() }
    });
    Running { http, stop, task }
}

async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn bad_bodies_get_problem_documents_with_the_right_status() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let send = |body: String, content_type: &'static str| {
        app.post("/echo")
            .header("content-type", content_type)
            .body(body)
    };

    let ok = send(r#"{"name":"a","times":2}"#.into(), "application/json").await;
    assert_eq!(ok.status(), 200);

    let body = problem(send("{not json".into(), "application/json").await, 400).await;
    assert_eq!(body["status"], 400);
    let body = problem(
        send(r#"{"name":"a"}"#.into(), "application/json").await,
        422,
    )
    .await;
    assert!(body["errors"]["times"].is_array(), "{body}");
    let response = send(r#"{"name":"a","times":-1}"#.into(), "application/json").await;
    let body = problem(response, 422).await;
    assert!(body["errors"]["times"].is_array(), "{body}");
    problem(
        send(r#"{"name":"a","times":1}"#.into(), "text/plain").await,
        415,
    )
    .await;

    let big = format!(r#"{{"name":"{}","times":1}}"#, "x".repeat(4096));
    problem(send(big, "application/json").await, 413).await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let response = app.get("/nope").await;
    problem(response, 404).await;
    let response = app.delete("/echo").await;
    problem(response, 405).await;
    let response = app.get("/items/7").await;
    let body = problem(response, 409).await;
    assert_eq!(body["detail"], "already there");
}

#[tokio::test]
async fn slow_requests_time_out_with_503() {
    let app = start(Readiness::new(), Duration::from_millis(200)).await;
    let response = app.get("/slow").await;
    let body = problem(response, 503).await;
    assert_eq!(body["title"], "Request timed out");
}

#[tokio::test]
async fn a_panicking_handler_gives_500_and_the_server_keeps_serving() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let response = app.get("/boom").await;
    let body = problem(response, 500).await;
    assert!(!body.to_string().contains("the handler broke"));
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let response = app.get("/health").header("x-request-id", "abc-123").await;
    assert_eq!(response.headers()["x-request-id"], "abc-123");

    let response = app.get("/health").await;
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    // A forged id with spaces or one too long is replaced, so it never reaches a log line.
    let response = app
        .get("/health")
        .header("x-request-id", "x".repeat(500))
        .await;
    assert_ne!(response.headers()["x-request-id"], "x".repeat(500).as_str());
}

#[tokio::test]
async fn metrics_use_the_route_template_not_the_raw_path() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    for id in ["1", "2", "3"] {
        app.get(&format!("/items/{id}")).await;
    }
    app.get("/random/path").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{service="kit-test",method="GET",route="/items/{id}",status="409"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(!text.contains("/items/1"));
}

#[tokio::test]
async fn readiness_reports_each_dependency() {
    let readiness = Readiness::new()
        .with("database", FnCheck(|| async { Ok(()) }))
        .with(
            "redis",
            FnCheck(|| async { Err("connection refused".to_owned()) }),
        );
    let app = start(readiness, Duration::from_secs(5)).await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert_eq!(body["checks"]["redis"]["error"], "connection refused");

    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn pagination_defaults_caps_and_rejects() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let page: serde_json::Value = app.get("/items").await.json().await.unwrap();
    assert_eq!(page["per_page"], 20);
    assert_eq!(page["page"], 1);
    assert_eq!(page["total"], 250);
    assert_eq!(page["items"].as_array().unwrap().len(), 20);

    let page: serde_json::Value = app
        .get("/items?page=2&per_page=500")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["per_page"], 100);
    assert_eq!(page["items"][0], 101);

    let response = app.get("/items?page=0").await;
    problem(response, 422).await;
    let response = app.get("/items?page=abc").await;
    problem(response, 400).await;
}

#[tokio::test]
async fn openapi_document_lists_the_operational_endpoints() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/health", "/ready", "/metrics"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let in_flight = tokio::spawn(app.get("/slow").send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.stop.cancel();
    let response = in_flight.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), app.task)
        .await
        .expect("server stops after draining")
        .unwrap();
    // New connections are refused once stopped.
    assert!(
        app.http
            .client()
            .get(app.http.url("/health"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn shutdown_waits_no_longer_than_the_shutdown_timeout() {
    let app = start_with(
        Readiness::new(),
        Duration::from_secs(5),
        Duration::from_millis(200),
    )
    .await;
    // The raw client: this request is cut off, which a test call would report as a failure.
    let in_flight = tokio::spawn(app.client().get(app.url("/slow")).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = std::time::Instant::now();
    app.stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), app.task)
        .await
        .expect("the server gives up on requests that outlive the shutdown timeout")
        .unwrap();
    let waited = stopping.elapsed();
    assert!(
        waited >= Duration::from_millis(150),
        "it did wait: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(600),
        "but not for the 700 ms request: {waited:?}"
    );
    let _ = in_flight.await;
}
