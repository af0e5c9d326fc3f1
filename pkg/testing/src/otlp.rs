//! A stand-in OpenTelemetry collector: an OTLP/gRPC `TraceService` on a free loopback port that
//! keeps every span it is sent, with the `service.name` of the resource it came under.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// One received span, flattened for assertions.
#[derive(Debug, Clone)]
pub struct Span {
    /// `service.name` of the resource the span was exported under.
    pub service: String,
    /// The span's name, e.g. `GET /api/v1/orders` or `publish order`.
    pub name: String,
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP's `SpanKind` number: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status: i32,
    /// The span's attributes, every value as text (numbers and booleans formatted).
    pub attributes: HashMap<String, String>,
    /// Names of the span's events (`exception`, log events).
    pub events: Vec<String>,
}

impl Span {
    /// The attribute `key` as text; `None` when the span does not have it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A running collector; spans accumulate until read.
#[derive(Clone)]
pub struct Collector {
    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
    received: Arc<AtomicU64>,
}

struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    received: Arc<AtomicU64>,
    /// Keep each span (tests), or only count them (benchmarks, which send millions).
    keep: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        if !self.keep {
            let count: usize = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            self.received.fetch_add(count as u64, Ordering::Relaxed);
            return Ok(tonic::Response::new(ExportTraceServiceResponse::default()));
        }
        let mut received = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    status: span.status.map_or(0, |s| s.code),
                    attributes: attributes(&span.attributes),
                    events: span.events.into_iter().map(|e| e.name).collect(),
                });
            }
        }
        self.received
            .fetch_add(received.len() as u64, Ordering::Relaxed);
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Starts a collector on a free loopback port, served by the current Tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", true).await
    }

    /// A collector on `addr` that keeps each span (`keep`) or only counts them.
    pub async fn start_on(addr: &str, keep: bool) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(AtomicU64::new(0));
        let receiver = Receiver {
            spans: Arc::clone(&spans),
            received: Arc::clone(&received),
            keep,
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        Ok(Self {
            endpoint,
            spans,
            received,
        })
    }

    /// How many spans arrived, kept or not.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The spans of one trace (hex id).
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}
