//! Logs and traces for every binary of the platform.
//!
//! Owns the global `tracing` subscriber: JSON lines by default (`LOG_FORMAT=pretty` for humans),
//! filtered by `RUST_LOG` or `LOG_LEVEL`, and an OpenTelemetry layer so that every span has a
//! W3C trace id. Spans are exported over OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set; without it the layer still assigns ids (so logs carry `trace_id`) but nothing leaves the
//! process. Also owns W3C trace-context propagation over HTTP headers ([`extract_context`],
//! [`inject_context`]), used by the HTTP kit on the way in and by the proxy on the way out.
//!
//! Architecture invariant: this crate knows nothing of HTTP servers or services; it only reads
//! and writes header maps.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use platform_config::{Env, FromEnv};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use opentelemetry::Context;

/// How log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    #[default]
    Json,
    /// Multi-line, coloured, for a developer's terminal.
    Pretty,
    /// One short human-readable line per event (the default of `platform up`).
    Compact,
}

impl FromEnv for LogFormat {
    const EXPECTED: &'static str = "json, pretty or compact";
    fn from_env(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "json" => Some(LogFormat::Json),
            "pretty" => Some(LogFormat::Pretty),
            "compact" | "text" => Some(LogFormat::Compact),
            _ => None,
        }
    }
}

/// Settings of the logging and tracing pipeline.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive string.
    pub filter: String,
    /// OTLP/gRPC collector address (Jaeger accepts OTLP on :4317); `None` exports nothing.
    pub otlp_endpoint: Option<String>,
}

/// Crates whose `info` logs are per-query or per-connection noise.
const QUIET: &str = "sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,hyper_util=warn,h2=warn,tower=warn,opentelemetry=warn";

impl TelemetryConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let log_format = env.or("LOG_FORMAT", LogFormat::Json);
        let filter = match env.optional::<String>("RUST_LOG") {
            Some(filter) => filter,
            None => {
                let level = env.optional_with(
                    "LOG_LEVEL",
                    "one of error, warn, info, debug, trace",
                    |raw| {
                        let raw = raw.to_ascii_lowercase();
                        ["error", "warn", "info", "debug", "trace"]
                            .contains(&raw.as_str())
                            .then_some(raw)
                    },
                );
                format!("{},{QUIET}", level.as_deref().unwrap_or("info"))
            }
        };
        if EnvFilter::try_new(&filter).is_err() {
            env.report("RUST_LOG", "a valid tracing filter such as info,sqlx=warn");
        }
        let otlp_endpoint = env.optional_with(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "an http:// or https:// URL of an OTLP/gRPC collector",
            |raw| {
                (raw.starts_with("http://") || raw.starts_with("https://")).then(|| raw.to_owned())
            },
        );
        Self {
            log_format,
            filter,
            otlp_endpoint,
        }
    }
}

/// Telemetry could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// Keeps the tracer provider alive; dropping it flushes spans still buffered for export.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Best effort: a collector that is down must not block or fail shutdown.
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. Calling it again (several services in one process, or
/// several tests) keeps the first subscriber and returns an inert guard.
pub fn init(
    service_name: &str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(TelemetryGuard { provider: None });
    }
    // Audit records are never filtered away: whatever the level asked for, the `audit` target
    // stays on at `info` (a directive for a target outranks the default level).
    let filter = EnvFilter::try_new(format!("{},audit=info", config.filter))
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;

    let mut provider = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let otel =
        tracing_opentelemetry::layer().with_tracer(provider.tracer("microservices-platform"));

    let fmt = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().pretty().boxed(),
        LogFormat::Compact => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(fmt)
        .try_init()
        .is_ok();
    let _ = INSTALLED.set(());
    if !installed {
        // Someone else (a test harness) installed a subscriber first; keep theirs.
        let _ = provider.shutdown();
        return Ok(TelemetryGuard { provider: None });
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

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
    let mut headers = http::HeaderMap::new();
    inject_span(&tracing::Span::current(), &mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
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

    #[test]
    fn config_rejects_bad_values_and_names_them() {
        let mut env = Env::from_pairs([
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "loud"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4317"),
        ]);
        let _ = TelemetryConfig::from_env(&mut env);
        let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        assert_eq!(
            vars,
            ["LOG_FORMAT", "LOG_LEVEL", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        );
    }

    #[test]
    fn default_filter_quiets_noisy_crates() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = TelemetryConfig::from_env(&mut env);
        assert!(config.filter.starts_with("info,"));
        assert!(config.filter.contains("sqlx=warn"));
        assert!(config.otlp_endpoint.is_none());
    }
}
