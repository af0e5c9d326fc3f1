//! The request pipeline every service and the gateway share.
//!
//! Layers, outermost first (see [`crate::router::finish`]):
//! 1. catch panics → 500 problem (a bug in one handler never drops the connection silently);
//! 2. `X-Request-Id`: kept from the client when sane, generated otherwise;
//! 3. [`observe`]: one span per request carrying `request_id` and `trace_id` (so every log line
//!    inside has them), one log line per response, and the `http_requests_total` /
//!    `http_request_duration_seconds` metrics labelled with the matched route template;
//! 4. `X-Request-Id` echoed on the response;
//! 5. [`deadline`]: the per-request timeout → 503 problem;
//! 6. the body size limit (enforced by the extractors → 413 problem).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use platform_metrics::{Metrics, counter, histogram};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::{Instrument, field};

use crate::problem::Problem;

/// The header carrying the request id, in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label for requests that matched no route: raw paths would explode the label space.
const UNMATCHED: &str = "unmatched";

/// Generates request ids (UUID v7: sortable by time, which helps when grepping logs) and keeps a
/// client's id only when it is short printable ASCII, so logs cannot be flooded or forged with
/// control characters.
#[derive(Clone, Copy, Default)]
pub struct RequestIds;

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().to_string();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Drops a client-supplied request id that is too long or not printable, so that
/// `SetRequestIdLayer` replaces it with a fresh one.
pub async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let insane = request.headers().get(&REQUEST_ID).is_some_and(|value| {
        let bytes = value.as_bytes();
        bytes.is_empty() || bytes.len() > 128 || !bytes.iter().all(|b| b.is_ascii_graphic())
    });
    if insane {
        request.headers_mut().remove(&REQUEST_ID);
    }
    next.run(request).await
}

/// Set on a response to name its route in metrics and logs, when the router's matched path
/// says too little (the gateway matches its configured routes itself, behind one catch-all).
#[derive(Clone, Debug)]
pub struct RouteLabel(pub Arc<str>);

/// What [`observe`] needs.
#[derive(Clone)]
pub struct ObserveState {
    pub service: Arc<str>,
    pub metrics: Metrics,
}

/// Span, access log and metrics for one request.
pub async fn observe(State(state): State<ObserveState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!(
        "request",
        service = %state.service,
        method = %method,
        route = field::Empty,
        request_id = %request_id,
        trace_id = field::Empty,
    );
    if let Some(trace_id) = platform_telemetry::join_trace(&span, request.headers()) {
        span.record("trace_id", trace_id);
    }

    let response = next.run(request).instrument(span.clone()).await;

    let elapsed = started.elapsed();
    let status = response.status();
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map(|label| label.0.to_string())
        .or(matched)
        .unwrap_or_else(|| UNMATCHED.to_owned());
    span.record("route", route.as_str());

    state.metrics.record(|| {
        counter!(
            "http_requests_total",
            "method" => method.to_string(),
            "route" => route.clone(),
            "status" => status.as_str().to_owned(),
        )
        .increment(1);
        histogram!(
            "http_request_duration_seconds",
            "method" => method.to_string(),
            "route" => route.clone(),
        )
        .record(elapsed.as_secs_f64());
    });
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, "request served");
        }
    });
    response
}

/// The per-request deadline. Dropping the handler's future cancels its work (including a
/// database transaction, which rolls back).
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            Problem::unavailable(format!(
                "The request did not complete within {} ms.",
                limit.as_millis()
            ))
            .with_title("Request timed out")
            .with_type("timeout")
            .into_response()
        }
    }
}

/// Turns a handler panic into a 500 problem; the panic message is logged, never sent.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    Problem::internal().into_response()
}

/// Fallback for paths no route matches.
pub async fn not_found(request: Request) -> Problem {
    Problem::not_found(format!(
        "No route for {} {}.",
        request.method(),
        request.uri().path()
    ))
}

/// Fallback for a known path with a method it does not support.
pub async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED)
        .with_type("method-not-allowed")
        .with_detail(format!(
            "{} is not supported on {}.",
            request.method(),
            request.uri().path()
        ))
}
