//! Installing the global subscriber: the OpenTelemetry layer (with OTLP export when
//! configured, routed per service under `platform up`) and the log layer, each with the
//! filter it needs, so the log level never decides what is traced.

use std::sync::{Arc, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::QUIET;
use crate::spans::FINISHED;
use crate::{LogFormat, TelemetryConfig, export, logs};

/// Telemetry could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The config's `filter` does not parse as `EnvFilter` directives.
    #[error("invalid log filter: {0}")]
    Filter(String),
    /// The OTLP exporter could not be built for the configured endpoint.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join_trace;

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
}
