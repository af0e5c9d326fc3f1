//! Span export under each service's own name when several services share a process.

use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::time::Duration;

/// Hands each span to the exporter of the service its [`crate::SERVICE_FIELD`] names, whose
/// resource says `service.name = <that service>`; other spans go to the process's exporter.
/// OTLP carries one resource per batch, hence one exporter (and connection) per service.
#[derive(Debug)]
pub(crate) struct PerService<E> {
    default: E,
    routes: Vec<(String, E)>,
}

impl<E> PerService<E> {
    pub(crate) fn new(default: E, routes: Vec<(String, E)>) -> Self {
        Self { default, routes }
    }

    /// The index in `routes` of the service `span` belongs to, if it names one.
    fn route_of(&self, span: &SpanData) -> Option<usize> {
        let service = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == crate::SERVICE_FIELD)?;
        let Value::String(name) = &service.value else {
            return None;
        };
        self.routes
            .iter()
            .position(|(route, _)| route.as_str() == name.as_str())
    }

    fn all(&self) -> impl Iterator<Item = &E> {
        std::iter::once(&self.default).chain(self.routes.iter().map(|(_, e)| e))
    }
}

impl<E: SpanExporter> SpanExporter for PerService<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.routes.is_empty() {
            return self.default.export(batch).await;
        }
        let mut groups: Vec<Vec<SpanData>> = (0..=self.routes.len()).map(|_| Vec::new()).collect();
        for span in batch {
            let index = self.route_of(&span).map_or(0, |i| i + 1);
            groups[index].push(span);
        }
        let mut result = Ok(());
        for (index, group) in groups.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let exporter = match index {
                0 => &self.default,
                i => &self.routes[i - 1].1,
            };
            // One failing group must not cost the others their export.
            if let Err(error) = exporter.export(group).await {
                result = Err(error);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut result = Ok(());
        for exporter in self.all() {
            if let Err(error) = exporter.shutdown_with_timeout(timeout) {
                result = Err(error);
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut result = Ok(());
        for exporter in self.all() {
            if let Err(error) = exporter.force_flush() {
                result = Err(error);
            }
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.default.set_resource(resource);
        let service_name = Key::from_static_str("service.name");
        for (name, exporter) in &mut self.routes {
            let own = Resource::builder_empty()
                .with_attributes(
                    resource
                        .iter()
                        .filter(|(key, _)| **key != service_name)
                        .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
                )
                .with_service_name(name.clone())
                .build();
            exporter.set_resource(&own);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    /// Records what it was given, under the `service.name` of its resource.
    #[derive(Debug, Clone, Default)]
    struct Recorder {
        name: Arc<Mutex<String>>,
        seen: Arc<Mutex<Vec<(String, String)>>>,
    }

    impl SpanExporter for Recorder {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let name = self.name.lock().unwrap().clone();
            for span in batch {
                self.seen
                    .lock()
                    .unwrap()
                    .push((name.clone(), span.name.to_string()));
            }
            Ok(())
        }

        fn set_resource(&mut self, resource: &Resource) {
            let name = resource
                .get(&Key::from_static_str("service.name"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            let env = resource
                .get(&Key::from_static_str("deployment.environment.name"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            *self.name.lock().unwrap() = format!("{name}/{env}");
        }
    }

    fn span(name: &'static str, service: Option<&'static str>) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1),
                SpanId::from(2),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: service
                .map(|s| vec![KeyValue::new(crate::SERVICE_FIELD, s)])
                .unwrap_or_default(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    #[test]
    fn spans_go_out_under_the_service_they_name() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = || Recorder {
            name: Arc::default(),
            seen: Arc::clone(&seen),
        };
        let mut exporter = PerService::new(
            recorder(),
            vec![
                ("order-service".to_owned(), recorder()),
                ("product-service".to_owned(), recorder()),
            ],
        );
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name("platform")
                .with_attribute(KeyValue::new("deployment.environment.name", "test"))
                .build(),
        );
        let batch = vec![
            span("POST /api/v1/orders", Some("order-service")),
            span("Reserve", Some("product-service")),
            span("child", None),
            span("stranger", Some("cart-service")),
        ];
        futures::executor::block_on(exporter.export(batch)).unwrap();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("order-service/test".into(), "POST /api/v1/orders".into()),
                ("platform/test".into(), "child".into()),
                ("platform/test".into(), "stranger".into()),
                ("product-service/test".into(), "Reserve".into()),
            ]
        );
    }
}
