//! W3C trace-context propagation: reading a remote parent from headers (or an event's
//! `traceparent`) and writing the current one for the next hop, so a trace crosses HTTP,
//! gRPC and the event bus unbroken.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The remote parent carried by a request's `traceparent`/`tracestate` headers (W3C).
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes `cx` as `traceparent`/`tracestate` headers for the next hop.
pub fn inject_context(cx: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace in `headers` (when there is one) and returns the span's
/// trace id in hex, or `None` when no OpenTelemetry layer is installed.
pub fn join_trace(span: &tracing::Span, headers: &http::HeaderMap) -> Option<String> {
    let parent = extract_context(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Writes the trace context of `span` into `headers` for an outgoing call.
pub fn inject_span(span: &tracing::Span, headers: &mut http::HeaderMap) {
    // No span (logging filtered it out): nothing to propagate beyond what the caller sent.
    if span.is_disabled() {
        return;
    }
    inject_context(&span.context(), headers);
}

/// The current span's trace context as a W3C `traceparent` value, for carrying a trace across
/// an asynchronous hop (an event) where there are no headers.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// `span`'s trace context as a W3C `traceparent` value.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut headers = http::HeaderMap::new();
    inject_span(span, &mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Makes `span` a child of a W3C `traceparent` value (an event's) when there is a valid one;
/// returns the span's trace id as [`join_trace`] does.
pub fn join_traceparent(span: &tracing::Span, traceparent: Option<&str>) -> Option<String> {
    let mut headers = http::HeaderMap::new();
    if let Some(value) = traceparent.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        headers.insert("traceparent", value);
    }
    join_trace(span, &headers)
}

/// The current span's trace id in hex, when there is one.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_through_headers() {
        let mut incoming = http::HeaderMap::new();
        incoming.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = extract_context(&incoming);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut outgoing = http::HeaderMap::new();
        inject_context(&cx, &mut outgoing);
        assert_eq!(
            outgoing.get("traceparent").and_then(|v| v.to_str().ok()),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
    }
}
