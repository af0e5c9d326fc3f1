//! Spans of gRPC calls, named and described by the OpenTelemetry RPC conventions
//! (`{rpc.service}/{rpc.method}`, `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`), with the W3C trace context carried in each call's metadata: the
//! server's span is a child of the client's, so one trace runs through every hop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::{Instrument, field};

/// `/package.Service/Method` → (`package.Service`, `Method`).
fn rpc_parts(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

fn rpc_span(kind: &'static str, service: &str, path: &str) -> tracing::Span {
    let (rpc_service, rpc_method) = rpc_parts(path);
    tracing::info_span!(
        "grpc",
        otel.name = %format_args!("{rpc_service}/{rpc_method}"),
        otel.kind = kind,
        otel.status_code = field::Empty,
        service = %service,
        rpc.system = "grpc",
        rpc.service = rpc_service,
        rpc.method = rpc_method,
        rpc.grpc.status_code = field::Empty,
        server.address = field::Empty,
    )
}

/// The span of a call `service` serves at `path`, joined to the caller's trace in `headers`.
pub fn server_span(service: &str, path: &str, headers: &http::HeaderMap) -> tracing::Span {
    let span = rpc_span("server", service, path);
    crate::middleware::join_trace(&span, headers);
    span
}

/// The gRPC status of an answer whose head is `headers`: tonic puts a failure's status in the
/// head (a trailers-only answer) and a success's in the trailers, so no status in the head of
/// a 200 is `OK`.
fn status_of(status: http::StatusCode, headers: &http::HeaderMap) -> i64 {
    match headers.get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some(code) => code.parse().unwrap_or(2),
        None if status.is_success() => 0,
        // Not a gRPC answer at all (a proxy's error page): UNKNOWN.
        None => 2,
    }
}

/// Records the answer's status on `span`; server-side codes that mean the server failed
/// (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS) mark the
/// span as an error, as the conventions ask; on the client every non-OK code does.
pub fn record_status(
    span: &tracing::Span,
    client: bool,
    status: http::StatusCode,
    headers: &http::HeaderMap,
) {
    let code = status_of(status, headers);
    span.record("rpc.grpc.status_code", code);
    let failed = if client {
        code != 0
    } else {
        matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
    };
    if failed {
        span.record("otel.status_code", "error");
    }
}

/// A client-side layer: every call through it gets a client span (named after the callee's
/// gRPC method) whose context travels in the call's `traceparent`.
#[derive(Clone)]
pub struct ClientSpans<S> {
    inner: S,
    /// The calling service.
    service: Arc<str>,
    /// The called service, as `server.address`.
    peer: Arc<str>,
}

impl<S> ClientSpans<S> {
    /// Wraps `inner`: calls from `service` to `peer` (the callee, as `server.address`).
    pub fn new(inner: S, service: &str, peer: &str) -> Self {
        Self {
            inner,
            service: Arc::from(service),
            peer: Arc::from(peer),
        }
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for ClientSpans<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let span = rpc_span("client", &self.service, request.uri().path());
        if !span.is_disabled() {
            span.record("server.address", &*self.peer);
            platform_telemetry::inject_span(&span, request.headers_mut());
        }
        let call = self.inner.call(request);
        let traced = span.clone();
        Box::pin(
            async move {
                let result = call.await;
                match &result {
                    Ok(response) => {
                        record_status(&traced, true, response.status(), response.headers())
                    }
                    Err(error) => {
                        // Never reached the service: no gRPC code; UNAVAILABLE says as much.
                        traced.record("rpc.grpc.status_code", 14);
                        platform_telemetry::record_error(&traced, "transport", &error.to_string());
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            rpc_parts("/product.v1.ProductService/Reserve"),
            ("product.v1.ProductService", "Reserve")
        );
        assert_eq!(rpc_parts("/odd"), ("odd", ""));
    }

    #[test]
    fn status_comes_from_the_head_or_means_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_of(http::StatusCode::OK, &headers), 0);
        assert_eq!(status_of(http::StatusCode::BAD_GATEWAY, &headers), 2);
        headers.insert("grpc-status", http::HeaderValue::from_static("9"));
        assert_eq!(status_of(http::StatusCode::OK, &headers), 9);
    }
}
