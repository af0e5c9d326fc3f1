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
#![warn(missing_docs)]

mod config;
mod export;
mod logs;
mod propagation;
mod spans;
mod subscriber;

pub use config::{LogFormat, Root, Sampling, TelemetryConfig};
pub use opentelemetry::{Context, KeyValue};
pub use propagation::{
    current_trace_id, current_traceparent, extract_context, inject_context, inject_span,
    join_trace, join_traceparent, traceparent_of,
};
pub use spans::{record_error, record_finished, rename};
pub use subscriber::{SERVICE_FIELD, TelemetryError, TelemetryGuard, init, init_for};
