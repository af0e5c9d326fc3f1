//! Assertions and callers for tests that talk to a service over HTTP: every crate's
//! integration tests use these rather than their own copies.

use std::time::{Duration, Instant};

use platform_auth::{Jwt, JwtConfig, Role, UserId};
use serde_json::Value;

/// Someone calling a REST API: their user id and an access token.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user's id: the token's subject.
    pub id: uuid::Uuid,
    /// A bearer access token for `id`, to send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// A new user (or administrator) with a fresh access token signed with `secret`.
pub fn actor(role: Role, secret: &str) -> Actor {
    let id = UserId::generate();
    let token = Jwt::new(JwtConfig::with_secret(secret))
        .issue(id, role)
        .expect("a token is issued")
        .token;
    Actor {
        id: id.as_uuid(),
        token,
    }
}

/// Fails when the service marked `response` as answered with a status its OpenAPI operation
/// does not list (`x-undocumented-status`, set by the kit's pipeline in debug builds).
pub fn assert_documented(response: &reqwest::Response) {
    let marked = response.headers().get("x-undocumented-status");
    assert!(
        marked.is_none(),
        "{} {} answered {}, a status its OpenAPI operation does not list: add it to the \
         handler's `responses(...)` annotation (or fix the handler)",
        response.url().path(),
        response.url().query().unwrap_or_default(),
        response.status(),
    );
}

/// [`assert_documented`] as a method, for a test's request helpers:
/// `request.send().await.unwrap().documented()`.
pub trait Documented {
    /// Panics as [`assert_documented`] does; otherwise returns the response unchanged.
    fn documented(self) -> Self;
}

impl Documented for reqwest::Response {
    fn documented(self) -> Self {
        assert_documented(&self);
        self
    }
}

/// Asserts a problem+json response with `status` and returns its body.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_documented(&response);
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("a response body");
    assert_eq!(actual, status, "unexpected status: {text}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "errors are problem documents: {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("a JSON problem");
    assert_eq!(body["status"], status);
    body
}

/// Asserts `status` and returns the JSON body.
pub async fn json_of(response: reqwest::Response, status: u16) -> Value {
    assert_documented(&response);
    let actual = response.status().as_u16();
    let text = response.text().await.expect("a response body");
    assert_eq!(actual, status, "unexpected status: {text}");
    serde_json::from_str(&text).expect("a JSON body")
}

/// The fields a 422 names, sorted.
pub fn error_fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problem["errors"]
        .as_object()
        .map(|errors| errors.keys().cloned().collect())
        .unwrap_or_default();
    fields.sort();
    fields
}

/// Polls `condition` every 20 ms until it holds, failing after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
