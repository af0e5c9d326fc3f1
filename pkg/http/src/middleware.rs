//! The request pipeline every service and the gateway share, as one middleware ([`pipeline`])
//! rather than a stack of layers: every request passes it, so each boxed future and service
//! clone saved is saved on every request. In order, it
//! 1. keeps the client's `X-Request-Id` when it is short printable ASCII (so logs cannot be
//!    flooded or forged with control characters), else generates one (UUID v7: sortable by time);
//! 2. opens one span per request carrying `request_id` and `trace_id` (so every log line inside
//!    has them), joined to the caller's W3C trace;
//! 3. runs the request under the per-request deadline (→ 503 problem) and catches panics
//!    (→ 500 problem: a bug in one handler never drops the connection silently);
//! 4. echoes `X-Request-Id`, adds the security headers ([`security_headers`]), records `http_requests_total` and `http_request_duration_seconds`
//!    labelled with the route template, and writes one access-log line.
//!
//! The body size limit is enforced by the extractors (→ 413 problem).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use platform_metrics::Metrics;
use tracing::{Instrument, field};

use crate::audit::{Audit, AuditContext, Auditor};
use crate::client_ip::TrustedProxies;
use crate::contract::{Documented, UNDOCUMENTED_STATUS};
use crate::front::Secure;
use crate::problem::Problem;

/// The header carrying the request id, in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route label for requests that matched no route: raw paths would explode the label space.
const UNMATCHED: &str = "unmatched";

/// Set on a response to name its route in metrics and logs, when the router's matched path
/// says too little (the gateway matches its configured routes itself, behind one catch-all).
#[derive(Clone, Debug)]
pub struct RouteLabel(pub Arc<str>);

/// What [`pipeline`] needs.
#[derive(Clone)]
pub struct PipelineState {
    /// The service's name, on every request's span.
    pub service: Arc<str>,
    /// Where the per-request metrics are recorded.
    pub metrics: Metrics,
    /// The per-request deadline.
    pub timeout: Duration,
    /// Handed to every request as an [`Auditor`].
    pub audit: Audit,
    /// Whose forwarding headers name the client (the audit trail's `client_ip`).
    pub trusted_proxies: TrustedProxies,
    /// The statuses the service's OpenAPI document lists per operation: an answer outside
    /// them is a contract bug, logged (and marked in debug builds).
    pub documented: Option<Arc<Documented>>,
}

/// Whether a client's `X-Request-Id` may be kept: short printable ASCII.
pub fn sane_request_id(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 128 && value.iter().all(|b| b.is_ascii_graphic())
}

/// A fresh request id (UUID v7: sortable by time).
pub fn new_request_id() -> HeaderValue {
    let mut buffer = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buffer);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// An empty query parameter (`?status=`, or a bare `?status`) means the same as an absent one,
/// on every endpoint: forms and generated clients send them for optional fields left unset.
fn drop_empty_query_parameters(request: &mut Request) {
    let Some(query) = request.uri().query() else {
        return;
    };
    let given = |pair: &&str| {
        pair.split_once('=')
            .is_some_and(|(_, value)| !value.is_empty())
    };
    if query.split('&').all(|pair| given(&pair)) {
        return;
    }
    let kept: Vec<&str> = query.split('&').filter(given).collect();
    let path = request.uri().path();
    let rewritten = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = request.uri().clone().into_parts();
    let Ok(path_and_query) = rewritten.parse() else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// The shared middleware: request id, span, deadline, panics, metrics, access log.
pub async fn pipeline(
    State(state): State<PipelineState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    drop_empty_query_parameters(&mut request);
    let request_id = match request.headers().get(&REQUEST_ID) {
        Some(value) if sane_request_id(value.as_bytes()) => value.clone(),
        _ => {
            let id = new_request_id();
            request.headers_mut().insert(REQUEST_ID.clone(), id.clone());
            id
        }
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let client_ip = peer.map(|peer| state.trusted_proxies.client_ip(peer, request.headers()));
    let auditor = Auditor {
        audit: state.audit.clone(),
        context: AuditContext {
            client_ip,
            request_id: request_id.to_str().ok().map(Arc::from),
        },
    };
    request.extensions_mut().insert(auditor);
    let secure = request.extensions().get::<Secure>().is_some();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let span = request_span(
        &state.service,
        &method,
        &request_id,
        if secure { "https" } else { "http" },
        request
            .headers()
            .get(axum::http::header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| request.uri().host().map(str::as_bytes)),
    );
    join_trace(&span, request.headers());

    let handled = AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .instrument(span.clone());
    let mut response = match tokio::time::timeout(state.timeout, handled).await {
        Ok(Ok(response)) => response,
        Ok(Err(panic)) => span.in_scope(|| panic_response(panic)),
        Err(_) => span.in_scope(|| {
            tracing::warn!(
                timeout_ms = state.timeout.as_millis() as u64,
                "request timed out"
            );
            Problem::unavailable(format!(
                "The request did not complete within {} ms.",
                state.timeout.as_millis()
            ))
            .with_title("Request timed out")
            .with_type("timeout")
            .into_response()
        }),
    };
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID.clone(), request_id);
    security_headers(headers, secure);

    let elapsed = started.elapsed();
    let status = response.status();
    let label = response
        .extensions()
        .get::<RouteLabel>()
        .map(|l| Arc::clone(&l.0));
    let route: &str = match (&label, &matched) {
        (Some(label), _) => label,
        (None, Some(matched)) => matched.as_str(),
        (None, None) => UNMATCHED,
    };
    if let (Some(documented), Some(matched)) = (&state.documented, &matched)
        && !documented.allows(&method, matched.as_str(), status)
    {
        span.in_scope(|| {
            tracing::error!(
                status = status.as_u16(),
                route = matched.as_str(),
                "answered with a status the operation's OpenAPI document does not list"
            );
        });
        if cfg!(debug_assertions) {
            response.headers_mut().insert(
                UNDOCUMENTED_STATUS.clone(),
                HeaderValue::from(status.as_u16()),
            );
        }
    }
    served(&state.metrics, &span, &method, route, status, elapsed);
    response
}

/// `Strict-Transport-Security` on every answer sent over TLS: a year, subdomains included.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The headers every answer carries unless its handler said otherwise: no MIME sniffing; not
/// stored by any cache (answers carry tokens and personal data; a handler whose answer may be
/// cached sets its own `Cache-Control`); and over TLS, HSTS.
pub fn security_headers(headers: &mut http::HeaderMap, secure: bool) {
    headers
        .entry(http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(http::header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if secure {
        headers
            .entry(http::header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static(HSTS));
    }
}

/// The span of one request: every log line inside carries its request id and trace id. Its
/// fields follow the OpenTelemetry HTTP server conventions; [`served`] names it
/// `{method} {route}` once the route is known (a span named after a raw path would make one
/// operation per id).
pub fn request_span(
    service: &str,
    method: &Method,
    request_id: &HeaderValue,
    scheme: &'static str,
    host: Option<&[u8]>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = field::Empty,
        service = %service,
        http.request.method = %method,
        http.route = field::Empty,
        http.response.status_code = field::Empty,
        error.r#type = field::Empty,
        url.scheme = scheme,
        server.address = field::Empty,
        request_id = request_id.to_str().unwrap_or_default(),
        trace_id = field::Empty,
    );
    if !span.is_disabled()
        && let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok())
    {
        // Host names the server; its port is `server.port`'s business, not the address's.
        let address = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        span.record("server.address", address);
    }
    span
}

/// Joins `span` to the caller's W3C trace in `headers`, when spans are on.
pub fn join_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !span.is_disabled()
        && let Some(trace_id) = platform_telemetry::join_trace(span, headers)
    {
        span.record("trace_id", trace_id);
    }
}

/// Records a served request: `http_requests_total`, `http_request_duration_seconds` and the
/// access-log line.
pub fn served(
    metrics: &Metrics,
    span: &tracing::Span,
    method: &Method,
    route: &str,
    status: StatusCode,
    elapsed: Duration,
) {
    metrics.record_request(method_label(method), route, status_label(status), elapsed);
    if !span.is_disabled() {
        span.record("http.route", route);
        platform_telemetry::rename(span, format!("{method} {route}"));
        span.record("http.response.status_code", status.as_u16());
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        span.in_scope(|| {
            if status.is_server_error() {
                // A server error is the span's failure; a 4xx is the client's (semconv).
                // The conventions' error.type of a 5xx answer is its status code.
                span.record("otel.status_code", "error");
                span.record("error.type", status.as_str());
                tracing::error!(status = status.as_u16(), latency_ms, "request failed");
            } else if is_probe(route) {
                // Probes arrive every few seconds: the console of an idle platform stays quiet.
                tracing::debug!(status = status.as_u16(), latency_ms, "request served");
            } else {
                tracing::info!(status = status.as_u16(), latency_ms, "request served");
            }
        });
    }
}

/// Liveness, readiness and scrape routes: polled by machines, logged at debug.
fn is_probe(route: &str) -> bool {
    matches!(route, "/health" | "/ready" | "/metrics")
}

/// A method as a metric label, without allocating for the standard ones.
fn method_label(method: &Method) -> platform_metrics::SharedString {
    match *method {
        Method::GET => "GET".into(),
        Method::POST => "POST".into(),
        Method::PUT => "PUT".into(),
        Method::DELETE => "DELETE".into(),
        Method::PATCH => "PATCH".into(),
        Method::HEAD => "HEAD".into(),
        Method::OPTIONS => "OPTIONS".into(),
        _ => method.to_string().into(),
    }
}

/// A status code as a metric label, without allocating for the usual ones.
fn status_label(status: StatusCode) -> platform_metrics::SharedString {
    match status.as_u16() {
        200 => "200".into(),
        201 => "201".into(),
        202 => "202".into(),
        204 => "204".into(),
        301 => "301".into(),
        302 => "302".into(),
        304 => "304".into(),
        400 => "400".into(),
        401 => "401".into(),
        403 => "403".into(),
        404 => "404".into(),
        405 => "405".into(),
        409 => "409".into(),
        413 => "413".into(),
        415 => "415".into(),
        422 => "422".into(),
        429 => "429".into(),
        500 => "500".into(),
        502 => "502".into(),
        503 => "503".into(),
        504 => "504".into(),
        other => other.to_string().into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(uri: &str) -> String {
        let mut request = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        drop_empty_query_parameters(&mut request);
        request.uri().to_string()
    }

    #[test]
    fn empty_query_parameters_are_absent_ones() {
        assert_eq!(rewritten("/a?status=&page=2"), "/a?page=2");
        assert_eq!(rewritten("/a?status&page=2&q="), "/a?page=2");
        assert_eq!(rewritten("/a?status="), "/a");
        assert_eq!(rewritten("/a?&&"), "/a");
        assert_eq!(rewritten("/a?q=a%3Db&x=y=z"), "/a?q=a%3Db&x=y=z");
        assert_eq!(rewritten("/a"), "/a");
    }
}
