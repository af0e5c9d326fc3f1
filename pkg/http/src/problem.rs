//! RFC 9457 problem details: the one error body every service and the gateway return.
//!
//! A [`Problem`] is what the client sees. It never carries internal details: a service maps its
//! own error enum to a `Problem`, logging what the client must not see before it does (see
//! [`Problem::internal`]).

use std::collections::BTreeMap;
use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:problem-type:validation-error",
    "title": "Invalid request",
    "status": 422,
    "detail": "One or more fields are invalid.",
    "errors": {"email": ["must be a valid email address"]}
}))]
pub struct Problem {
    /// A URI reference naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Per-field messages for validation problems (422), keyed by field name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
    /// Seconds after which a retry may succeed (429 and 503); sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// Sent as `WWW-Authenticate` on 401 responses.
    #[serde(skip)]
    pub www_authenticate: Option<&'static str>,
}

impl Problem {
    /// A problem of the given status with the status's own reason phrase as title.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: None,
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// Sets the type to `urn:problem-type:<kind>` (`kind` such as `validation-error`).
    pub fn with_type(mut self, kind: &str) -> Self {
        self.kind = format!("urn:problem-type:{kind}");
        self
    }

    /// Replaces the status's reason phrase as title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// What went wrong this time. The client sees it: never internal details.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Seconds before a retry may succeed, sent as `Retry-After` (429 and 503).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The status as an HTTP status code; 500 if `status` is not a valid one.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400: the request could not be read at all (malformed JSON, bad query string).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST)
            .with_type("malformed-request")
            .with_detail(detail)
    }

    /// 401: missing, malformed, expired or forged credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut problem = Self::new(StatusCode::UNAUTHORIZED)
            .with_type("unauthenticated")
            .with_detail(detail);
        problem.www_authenticate = Some("Bearer");
        problem
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN)
            .with_type("forbidden")
            .with_detail(detail)
    }

    /// 404: no such resource (also for resources the caller may not see).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND)
            .with_type("not-found")
            .with_detail(detail)
    }

    /// 409: the request conflicts with the current state (duplicate, wrong state).
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT)
            .with_type("conflict")
            .with_detail(detail)
    }

    /// 422: well-formed but invalid; `errors` names each offending field.
    pub fn validation(errors: BTreeMap<String, Vec<String>>) -> Self {
        let mut problem = Self::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_type("validation-error")
            .with_title("Invalid request")
            .with_detail("One or more fields are invalid.");
        problem.errors = Some(errors);
        problem
    }

    /// 422 about a single field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(field.to_owned(), vec![message.into()]);
        Self::validation(errors)
    }

    /// 429: over a rate limit; `retry_after` seconds until a request can succeed.
    pub fn too_many_requests(retry_after: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS)
            .with_type("rate-limited")
            .with_detail(format!("Too many requests; retry in {retry_after} s."))
            .with_retry_after(retry_after)
    }

    /// 503: a dependency is down or the request took too long; safe to retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_type("unavailable")
            .with_detail(detail)
    }

    /// 500 with a generic message. Log the cause before calling this: the client never sees it.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_type("internal")
            .with_detail("An unexpected error occurred. It has been logged.")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_rfc9457_members_only() {
        let mut errors = BTreeMap::new();
        errors.insert("email".to_owned(), vec!["is invalid".to_owned()]);
        let json = serde_json::to_value(Problem::validation(errors)).unwrap();
        assert_eq!(json["type"], "urn:problem-type:validation-error");
        assert_eq!(json["status"], 422);
        assert_eq!(json["errors"]["email"][0], "is invalid");
        assert!(json.get("retry_after").is_none());
    }

    #[test]
    fn response_has_problem_media_type_and_headers() {
        let response = Problem::unavailable("down")
            .with_retry_after(5)
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let response = Problem::unauthorized("no token").into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
