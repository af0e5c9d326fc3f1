//! Extractors whose rejections are problem documents.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain-text bodies; these wrappers render the
//! same failures as [`Problem`]s: a body that is not JSON or not `application/json` → 400/415,
//! a body over the size limit → 413, JSON of the wrong shape → 422 naming the field.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// JSON body in, JSON body out. Rejections are problem+json.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_type("unsupported-media-type")
                .with_detail("Expected a request body with `Content-Type: application/json`."));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(status)
                    .with_type("payload-too-large")
                    .with_detail("The request body is larger than this service accepts.")
            } else {
                Problem::new(status).with_detail(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Parses a JSON document into `T`: syntax errors are 400, shape errors 422 with the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        json_problem(&path, &inner)
    })?;
    deserializer
        .end()
        .map_err(|e| Problem::bad_request(format!("Malformed JSON: {e}")))?;
    Ok(value)
}

fn json_problem(path: &str, err: &serde_json::Error) -> Problem {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => {
            let message = strip_position(&err.to_string());
            let field = field_of(path, &message);
            let mut errors = BTreeMap::new();
            errors.insert(field, vec![message]);
            Problem::validation(errors)
        }
        Category::Syntax | Category::Eof | Category::Io => {
            Problem::bad_request(format!("Malformed JSON: {err}"))
        }
    }
}

/// serde_json appends " at line L column C"; the field name says more to a client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// The field a data error is about: the path, or for missing/unknown fields the quoted name.
fn field_of(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        // serde_path_to_error already puts an unknown field at the end of the path.
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_owned()
        }
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_owned(),
    }
}

/// Query-string extractor; a malformed query is a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|rejection| {
                Problem::bad_request(format!("Invalid query string: {}", rejection.body_text()))
            })
    }
}

/// Path-parameter extractor; a parameter of the wrong shape (e.g. not a UUID) is a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|rejection| {
                Problem::bad_request(format!("Invalid path parameter: {}", rejection.body_text()))
            })
    }
}

/// Collects per-field validation messages while wire types are parsed into domain types, so
/// that one 422 names every invalid field at once.
#[derive(Debug, Default)]
pub struct FieldErrors {
    errors: BTreeMap<String, Vec<String>>,
}

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the value of `result`, or records its error under `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.add(field, err.to_string());
                None
            }
        }
    }

    /// Records `message` under `field` (a field may collect several).
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// Whether every field checked so far was valid.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The 422 naming every field recorded so far.
    pub fn into_problem(self) -> Problem {
        Problem::validation(self.errors)
    }

    /// `Err(422)` naming every field recorded, or `Ok` when there were none.
    pub fn finish(self) -> Result<(), Problem> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Problem::validation(self.errors))
        }
    }
}

/// SHA-256 of `parts`, hex: the fingerprint stored with an idempotency key (the same key with
/// another request is refused) or of any value that must be compared without being kept.
/// Parts are separated by a byte no text contains, so ("ab", "c") and ("a", "bc") differ.
pub fn fingerprint(parts: &[&str]) -> String {
    use aws_lc_rs::digest;
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(part.as_bytes());
        context.update(&[0]);
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The answer to a request that carried an `Idempotency-Key`: `replayed` marks a repeat that
/// is answered with what the first request did (`Idempotent-Replayed: true`).
pub fn idempotent_response<T: Serialize>(status: StatusCode, body: T, replayed: bool) -> Response {
    let mut response = (status, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// An idempotency key: what makes a request that must not take effect twice (a charge, a
/// refund, an order) safe to repeat. 1 to 255 visible ASCII characters (a UUID is a good
/// choice). The one rule for every edge: the `Idempotency-Key` header (this type is its
/// extractor, and the header is required) and the `idempotency_key` of gRPC requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why a text is not an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 255 visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// `raw`, if it is 1 to 255 visible ASCII characters (taken as is: no trimming).
    pub fn parse(raw: &str) -> Result<Self, InvalidIdempotencyKey> {
        if (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let value = parts
            .headers
            .get("idempotency-key")
            .ok_or_else(|| Problem::bad_request("An `Idempotency-Key` header is required."))?;
        value
            .to_str()
            .ok()
            .and_then(|key| Self::parse(key).ok())
            .ok_or_else(|| {
                Problem::bad_request("`Idempotency-Key` must be 1 to 255 visible ASCII characters.")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(IdempotencyKey::parse("key-1").unwrap().as_str(), "key-1");
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for bad in ["", " key", "k\u{e9}y", "a\tb"] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidIdempotencyKey),
                "{bad:?}"
            );
        }
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: u8,
    }

    #[test]
    fn syntax_errors_are_400() {
        let problem = parse_json::<Body>(b"{\"email\": ").unwrap_err();
        assert_eq!(problem.status, 400);
        let problem = parse_json::<Body>(b"{\"email\":\"a\",\"age\":1} trailing").unwrap_err();
        assert_eq!(problem.status, 400);
    }

    #[test]
    fn shape_errors_are_422_and_name_the_field() {
        let problem = parse_json::<Body>(br#"{"email": "a"}"#).unwrap_err();
        assert_eq!(problem.status, 422);
        assert!(problem.errors.as_ref().unwrap().contains_key("age"));

        let problem = parse_json::<Body>(br#"{"email": "a", "age": 300}"#).unwrap_err();
        assert!(
            problem.errors.as_ref().unwrap().contains_key("age"),
            "{problem:?}"
        );

        let problem =
            parse_json::<Body>(br#"{"email": "a", "age": 3, "admin": true}"#).unwrap_err();
        assert!(problem.errors.as_ref().unwrap().contains_key("admin"));

        let problem = parse_json::<Body>(b"[]").unwrap_err();
        assert_eq!(problem.status, 422);
    }

    #[test]
    fn field_errors_collect_every_field() {
        let mut errors = FieldErrors::new();
        let a: Option<u8> = errors.check("a", "x".parse::<u8>());
        let b: Option<u8> = errors.check("b", "7".parse::<u8>());
        errors.add("c", "too short");
        assert_eq!((a, b), (None, Some(7)));
        let problem = errors.finish().unwrap_err();
        let fields: Vec<_> = problem.errors.unwrap().into_keys().collect();
        assert_eq!(fields, ["a", "c"]);
    }
}
