//! Assertions and callers for tests that talk to a service over HTTP: every crate's
//! integration tests use these rather than their own copies.

use platform_auth::{Jwt, JwtConfig, Role, UserId};
use serde_json::Value;

pub use platform_test_backends::assert_documented;

/// Someone calling a REST API: their user id and an access token.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user's id: the token's subject.
    pub id: uuid::Uuid,
    /// A bearer access token for `id`, to send as `Authorization: Bearer <token>`.
    pub token: String,
}

impl platform_test_backends::Credential for Actor {
    fn bearer(&self) -> Option<&str> {
        Some(&self.token)
    }
}

/// A new user (or administrator) with a fresh access token signed with `secret`.
pub fn actor(role: Role, secret: &str) -> Actor {
    let id = UserId::generate();
    Actor {
        id: id.as_uuid(),
        token: token(id.as_uuid(), role, secret),
    }
}

/// An access token for user `id` with `role`, signed with `secret`, as the user service would
/// issue it.
pub fn token(id: uuid::Uuid, role: Role, secret: &str) -> String {
    Jwt::new(JwtConfig::with_secret(secret))
        .issue(UserId::from_uuid(id), role)
        .expect("a token is issued")
        .token
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

#[cfg(test)]
mod tests {
    use super::*;
    use platform_test_backends::Credential;

    #[test]
    fn an_actor_calls_with_its_token() {
        let actor = Actor {
            id: uuid::Uuid::nil(),
            token: "t1".into(),
        };
        assert_eq!(actor.bearer(), Some("t1"));
        assert_eq!(Some(&actor).bearer(), Some("t1"));
        assert_eq!(None::<&Actor>.bearer(), None);
    }
}
