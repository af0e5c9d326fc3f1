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

use std::sync::{Arc, OnceLock};

mod export;
mod logs;

pub use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use platform_config::{Env, Environment, FromEnv};
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

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, as the
/// OpenTelemetry specification names them). The default follows the caller's decision and
/// records every trace that starts here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    AlwaysOn,
    AlwaysOff,
    /// This fraction of traces, by trace id.
    Ratio(f64),
    /// The caller's decision; for traces that start here, the inner choice.
    ParentBased(Root),
}

/// The choice for traces that start in this process, under [`Sampling::ParentBased`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::ParentBased(Root::AlwaysOn)
    }
}

impl Sampling {
    const EXPECTED: &'static str = "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio";

    fn from_env(env: &mut Env) -> Self {
        let ratio = env
            .optional_with("OTEL_TRACES_SAMPLER_ARG", "a ratio from 0 to 1", |raw| {
                raw.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
            })
            .unwrap_or(1.0);
        env.optional_with("OTEL_TRACES_SAMPLER", Self::EXPECTED, |raw| {
            Some(match raw.trim().to_ascii_lowercase().as_str() {
                "always_on" => Sampling::AlwaysOn,
                "always_off" => Sampling::AlwaysOff,
                "traceidratio" => Sampling::Ratio(ratio),
                "parentbased_always_on" => Sampling::ParentBased(Root::AlwaysOn),
                "parentbased_always_off" => Sampling::ParentBased(Root::AlwaysOff),
                "parentbased_traceidratio" => Sampling::ParentBased(Root::Ratio(ratio)),
                _ => return None,
            })
        })
        .unwrap_or_default()
    }

    fn sampler(self) -> Sampler {
        let root = |root: Root| match root {
            Root::AlwaysOn => Sampler::AlwaysOn,
            Root::AlwaysOff => Sampler::AlwaysOff,
            Root::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
        };
        match self {
            Sampling::AlwaysOn => Sampler::AlwaysOn,
            Sampling::AlwaysOff => Sampler::AlwaysOff,
            Sampling::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Sampling::ParentBased(inner) => Sampler::ParentBased(Box::new(root(inner))),
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
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` over `OTEL_EXPORTER_OTLP_ENDPOINT`; nothing when
    /// `OTEL_SDK_DISABLED=true`. The exporter reads `OTEL_EXPORTER_OTLP_HEADERS` and
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` itself.
    pub otlp_endpoint: Option<String>,
    pub sampling: Sampling,
    /// `OTEL_SERVICE_NAME`: names every span of the process, whichever service made it.
    pub service_name: Option<String>,
    /// `deployment.environment.name` of every span (`ENVIRONMENT`, default development).
    pub environment: String,
}

/// Crates whose `info` logs are per-query or per-connection noise. rustls warns once per
/// connection about what the client sent (an IP address as the SNI name, as h2load and
/// `curl https://127.0.0.1` do): a line per connection that any client can trigger, so only
/// its errors are kept.
const QUIET: &str = "sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,hyper_util=warn,h2=warn,tower=warn,opentelemetry=warn,rustls=error";

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
        let url = |raw: &str| {
            (raw.starts_with("http://") || raw.starts_with("https://")).then(|| raw.to_owned())
        };
        const URL: &str = "an http:// or https:// URL of an OTLP/gRPC collector";
        let traces_endpoint = env.optional_with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", URL, url);
        let endpoint = env.optional_with("OTEL_EXPORTER_OTLP_ENDPOINT", URL, url);
        let disabled = env.or("OTEL_SDK_DISABLED", false);
        let sampling = Sampling::from_env(env);
        let service_name = env
            .optional::<String>("OTEL_SERVICE_NAME")
            .filter(|name| !name.trim().is_empty());
        let environment = env
            .or("ENVIRONMENT", Environment::Development)
            .as_str()
            .to_owned();
        Self {
            log_format,
            filter,
            otlp_endpoint: if disabled {
                None
            } else {
                traces_endpoint.or(endpoint)
            },
            sampling,
            service_name,
            environment,
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

/// The span field naming the service a span belongs to. Under `platform up` several services
/// share one process and one tracer; spans that carry this field are exported under that
/// service's own `service.name` (see [`init_for`]). Spans without it (children of a request,
/// say) take the process's name, which is the service's own when it runs alone.
pub const SERVICE_FIELD: &str = "service";

/// Installs the global subscriber for a process that runs one service. Calling it again
/// (several tests) keeps the first subscriber and returns an inert guard.
pub fn init(
    service_name: &str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    init_for(service_name, &[], config)
}

/// Installs the global subscriber for a process named `process_name` that runs `services`:
/// spans whose [`SERVICE_FIELD`] names one of them are exported with that `service.name`.
pub fn init_for(
    process_name: &str,
    services: &[&str],
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

    let name = config.service_name.as_deref().unwrap_or(process_name);
    let mut provider = SdkTracerProvider::builder()
        .with_sampler(config.sampling.sampler())
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name.to_owned())
                .with_attributes([
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                    KeyValue::new("deployment.environment.name", config.environment.clone()),
                ])
                .build(),
        );
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = || {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))
        };
        // OTEL_SERVICE_NAME names everything: no routing then.
        let services = if config.service_name.is_some() {
            &[][..]
        } else {
            services
        };
        let mut routes = Vec::with_capacity(services.len());
        for service in services {
            routes.push(((*service).to_owned(), exporter()?));
        }
        provider = provider.with_batch_exporter(export::PerService::new(exporter()?, routes));
    }
    let provider = provider.build();
    if config.otlp_endpoint.is_some() {
        let _ = FINISHED.set(provider.tracer("microservices-platform"));
    }
    // The log level must not decide what is traced: with spans exported, every span of the
    // platform at info is recorded whatever LOG_LEVEL says (warn in production must not turn
    // tracing off). Without export, spans only serve the log lines, so they follow the log
    // filter and cost nothing where no line would be written.
    let trace_filter = if config.otlp_endpoint.is_some() {
        EnvFilter::try_new(format!("info,{QUIET}"))
    } else {
        EnvFilter::try_new(format!("{},audit=info", config.filter))
    }
    .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    // Per-span work the platform has no use for, measured on the hot path
    // (scripts/bench-tracing.sh): busy/idle timing on every poll, the thread's name and id on
    // every span, and activating an OpenTelemetry context on every poll (nothing here reads
    // OpenTelemetry's current context; parents come from the tracing span).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("microservices-platform"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_context_activation(false)
        .with_filter(trace_filter);

    let dispatch = logs::DispatchSlot::default();
    let fmt = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .map_event_format(|inner| logs::WithTraceIds {
                inner,
                dispatch: Arc::clone(&dispatch),
            })
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().pretty().boxed(),
        LogFormat::Compact => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .with(logs::RegisterDispatch::layer(dispatch))
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

/// The tracer of [`record_finished`]: set only while spans are exported, so recording costs
/// nothing otherwise.
static FINISHED: OnceLock<opentelemetry_sdk::trace::SdkTracer> = OnceLock::new();

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
    fn sampling_follows_the_otel_variables() {
        let sampling = |pairs: &[(&str, &str)]| {
            let mut env = Env::from_pairs(pairs.iter().copied());
            let config = TelemetryConfig::from_env(&mut env);
            let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
            (config.sampling, vars)
        };
        assert_eq!(
            sampling(&[]),
            (Sampling::ParentBased(Root::AlwaysOn), vec![])
        );
        assert_eq!(
            sampling(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]),
            (Sampling::ParentBased(Root::Ratio(0.25)), vec![])
        );
        assert_eq!(
            sampling(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            (Sampling::AlwaysOff, vec![])
        );
        let (_, problems) = sampling(&[
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ]);
        assert_eq!(problems, ["OTEL_TRACES_SAMPLER_ARG", "OTEL_TRACES_SAMPLER"]);
    }

    #[test]
    fn the_traces_endpoint_wins_and_the_sdk_can_be_disabled() {
        let config = |pairs: &[(&str, &str)]| {
            TelemetryConfig::from_env(&mut Env::from_pairs(pairs.iter().copied()))
        };
        let both = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ];
        assert_eq!(
            config(&both).otlp_endpoint.as_deref(),
            Some("http://traces:4317")
        );
        let disabled = [both[0], ("OTEL_SDK_DISABLED", "true")];
        assert_eq!(config(&disabled).otlp_endpoint, None);
        let named = config(&[("OTEL_SERVICE_NAME", "shop"), ("ENVIRONMENT", "staging")]);
        assert_eq!(named.service_name.as_deref(), Some("shop"));
        assert_eq!(named.environment, "staging");
    }

    #[test]
    fn json_lines_inside_a_span_carry_its_trace_and_span_ids() {
        use std::sync::Mutex;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = SdkTracerProvider::builder().build();
        let slot = logs::DispatchSlot::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(move || writer.clone())
                    .map_event_format(|inner| logs::WithTraceIds {
                        inner,
                        dispatch: Arc::clone(&slot),
                    }),
            )
            .with(logs::RegisterDispatch::layer(Arc::clone(&slot)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("request");
            let mut incoming = http::HeaderMap::new();
            incoming.insert(
                "traceparent",
                http::HeaderValue::from_static(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            );
            join_trace(&span, &incoming);
            span.in_scope(|| tracing::info!("inside"));
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        assert_eq!(lines[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let span_id = lines[1]["span_id"].as_str().unwrap();
        assert!(
            span_id.len() == 16 && span_id != "00f067aa0ba902b7",
            "{text}"
        );
        assert_eq!(lines[1]["message"], "inside");
    }

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

    #[test]
    fn default_filter_quiets_noisy_crates() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = TelemetryConfig::from_env(&mut env);
        assert!(config.filter.starts_with("info,"));
        assert!(config.filter.contains("sqlx=warn"));
        assert!(config.otlp_endpoint.is_none());
    }
}
