//! The kit's promises, checked against a real server on a random port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use platform_http::{
    FnCheck, HttpApi, Json, Metrics, Page, PageRequest, Problem, Readiness, Server, ServerConfig,
    ServiceParts,
};
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
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
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
    let base = format!("http://{}", server.http_addr());
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.unwrap() }
    });
    Running {
        base,
        client: reqwest::Client::new(),
        stop,
        task,
    }
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
    let url = format!("{}/echo", app.base);
    let send = |body: &'static str, content_type: &'static str| {
        app.client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let ok = send(r#"{"name":"a","times":2}"#, "application/json")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let body = problem(send("{not json", "application/json").await.unwrap(), 400).await;
    assert_eq!(body["status"], 400);
    let body = problem(
        send(r#"{"name":"a"}"#, "application/json").await.unwrap(),
        422,
    )
    .await;
    assert!(body["errors"]["times"].is_array(), "{body}");
    let body = problem(
        send(r#"{"name":"a","times":-1}"#, "application/json")
            .await
            .unwrap(),
        422,
    )
    .await;
    assert!(body["errors"]["times"].is_array(), "{body}");
    problem(
        send(r#"{"name":"a","times":1}"#, "text/plain")
            .await
            .unwrap(),
        415,
    )
    .await;

    let big = format!(r#"{{"name":"{}","times":1}}"#, "x".repeat(4096));
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    problem(response, 413).await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let response = app
        .client
        .get(format!("{}/nope", app.base))
        .send()
        .await
        .unwrap();
    problem(response, 404).await;
    let response = app
        .client
        .delete(format!("{}/echo", app.base))
        .send()
        .await
        .unwrap();
    problem(response, 405).await;
    let response = app
        .client
        .get(format!("{}/items/7", app.base))
        .send()
        .await
        .unwrap();
    let body = problem(response, 409).await;
    assert_eq!(body["detail"], "already there");
}

#[tokio::test]
async fn slow_requests_time_out_with_503() {
    let app = start(Readiness::new(), Duration::from_millis(200)).await;
    let response = app
        .client
        .get(format!("{}/slow", app.base))
        .send()
        .await
        .unwrap();
    let body = problem(response, 503).await;
    assert_eq!(body["title"], "Request timed out");
}

#[tokio::test]
async fn a_panicking_handler_gives_500_and_the_server_keeps_serving() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let response = app
        .client
        .get(format!("{}/boom", app.base))
        .send()
        .await
        .unwrap();
    let body = problem(response, 500).await;
    assert!(!body.to_string().contains("the handler broke"));
    let response = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let response = app
        .client
        .get(format!("{}/health", app.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");

    let response = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    // A forged id with spaces or one too long is replaced, so it never reaches a log line.
    let response = app
        .client
        .get(format!("{}/health", app.base))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "x".repeat(500).as_str());
}

#[tokio::test]
async fn metrics_use_the_route_template_not_the_raw_path() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    for id in ["1", "2", "3"] {
        app.client
            .get(format!("{}/items/{id}", app.base))
            .send()
            .await
            .unwrap();
    }
    app.client
        .get(format!("{}/random/path", app.base))
        .send()
        .await
        .unwrap();
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let response = app
        .client
        .get(format!("{}/ready", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert_eq!(body["checks"]["redis"]["error"], "connection refused");

    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let response = app
        .client
        .get(format!("{}/ready", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn pagination_defaults_caps_and_rejects() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let page: serde_json::Value = app
        .client
        .get(format!("{}/items", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["per_page"], 20);
    assert_eq!(page["page"], 1);
    assert_eq!(page["total"], 250);
    assert_eq!(page["items"].as_array().unwrap().len(), 20);

    let page: serde_json::Value = app
        .client
        .get(format!("{}/items?page=2&per_page=500", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["per_page"], 100);
    assert_eq!(page["items"][0], 101);

    let response = app
        .client
        .get(format!("{}/items?page=0", app.base))
        .send()
        .await
        .unwrap();
    problem(response, 422).await;
    let response = app
        .client
        .get(format!("{}/items?page=abc", app.base))
        .send()
        .await
        .unwrap();
    problem(response, 400).await;
}

#[tokio::test]
async fn openapi_document_lists_the_operational_endpoints() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let doc: serde_json::Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/health", "/ready", "/metrics"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let app = start(Readiness::new(), Duration::from_secs(5)).await;
    let in_flight = tokio::spawn({
        let client = app.client.clone();
        let url = format!("{}/slow", app.base);
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.stop.cancel();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), app.task)
        .await
        .expect("server stops after draining")
        .unwrap();
    // New connections are refused once stopped.
    assert!(
        app.client
            .get(format!("{}/health", app.base))
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
    let in_flight = tokio::spawn({
        let client = app.client.clone();
        let url = format!("{}/slow", app.base);
        async move { client.get(url).send().await }
    });
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
