//! Span helpers for instrumented code: renaming a span once its route is known, marking it
//! failed as the OpenTelemetry conventions ask, and recording work timed by someone else.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The tracer of [`record_finished`]: set only while spans are exported, so recording costs
/// nothing otherwise.
pub(crate) static FINISHED: OnceLock<opentelemetry_sdk::trace::SdkTracer> = OnceLock::new();

/// Records an operation that has just finished, `elapsed` long, as a client span named `name`
/// under the current span: for work timed by someone else (a query timed by the database
/// driver, reported after the fact). Nothing is recorded outside a sampled trace, or when
/// spans are not exported.
pub fn record_finished(
    name: String,
    elapsed: std::time::Duration,
    failed: bool,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) {
    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
    let Some(tracer) = FINISHED.get() else {
        return;
    };
    let parent = tracing::Span::current().context();
    if !parent.span().span_context().is_sampled() {
        return;
    }
    let end = std::time::SystemTime::now();
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(end.checked_sub(elapsed).unwrap_or(end))
        .with_attributes(attributes())
        .start_with_context(tracer, &parent);
    if failed {
        span.set_status(Status::error("failed"));
    }
    span.end_with_timestamp(end);
}

/// Renames `span` once its name is known (an HTTP span learns its route only after routing).
/// `otel.name` alone does not do it: the span may already have started, when the layer no
/// longer reads it.
pub fn rename(span: &tracing::Span, name: String) {
    if span.is_disabled() {
        return;
    }
    span.record("otel.name", name.as_str());
    span.context().span().update_name(name);
}

/// Marks `span` failed with an OpenTelemetry `exception` event (`exception.type`,
/// `exception.message`) and an error status, as the conventions ask of a failed operation.
/// `kind` is a short class of the failure (a type or an outcome), `message` says what failed.
pub fn record_error(span: &tracing::Span, kind: &str, message: &str) {
    if span.is_disabled() {
        return;
    }
    span.set_status(opentelemetry::trace::Status::error(message.to_owned()));
    span.context().span().add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", kind.to_owned()),
            KeyValue::new("exception.message", message.to_owned()),
        ],
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn an_error_inside_a_span_marks_it_failed_with_an_exception_event() {
        use opentelemetry_sdk::error::OTelSdkResult;
        use opentelemetry_sdk::trace::{SpanData, SpanExporter};
        use std::sync::Mutex;

        #[derive(Debug, Clone, Default)]
        struct Kept(Arc<Mutex<Vec<SpanData>>>);
        impl SpanExporter for Kept {
            async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
                self.0.lock().unwrap().extend(batch);
                Ok(())
            }
        }
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("saga step");
            record_error(&span, "SagaError", "payment service unavailable");
        });
        let spans = kept.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert!(
            matches!(span.status, opentelemetry::trace::Status::Error { .. }),
            "{:?}",
            span.status
        );
        let event = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .expect("an exception event");
        let attribute = |key: &str| {
            event
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(
            attribute("exception.message").as_deref(),
            Some("payment service unavailable")
        );
        assert_eq!(attribute("exception.type").as_deref(), Some("SagaError"));
    }
}
