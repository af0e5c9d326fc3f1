//! Prometheus metrics, one registry per service.
//!
//! Owns [`Metrics`]: a handle on a Prometheus recorder labelled with the service's name. Each
//! service (and the gateway) gets its own registry instead of the process-global one, because
//! `platform up` and the test suites host several services in one process, and each `/metrics`
//! must show that service's numbers only. Code records through [`Metrics::record`], which
//! scopes the `metrics` macros to this registry.
//!
//! Metric names follow the specification: `http_requests_total`,
//! `http_request_duration_seconds`, and later `circuit_breaker_state`, `cache_hits_total`, …
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub use metrics::{Counter, Gauge, Histogram, SharedString, counter, gauge, histogram};

/// Latency buckets in seconds: fine below 10 ms (the gateway's p99 target), coarse above.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A service's metric registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// Tells registries apart in the per-thread cache of request series.
    id: u64,
    /// Receives the `metrics` macros while inside [`Metrics::record`].
    recorder: Arc<PrometheusRecorder>,
    /// Renders the registry in the Prometheus text format.
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry whose every series carries `service="<service>"`.
    pub fn new(service: &str) -> Self {
        let labelled = || PrometheusBuilder::new().add_global_label("service", service);
        // Histograms render as real buckets (not summaries) so Prometheus can aggregate them.
        // (Setting buckets fails only for an empty list, which LATENCY_BUCKETS is not.)
        let builder = labelled()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| labelled());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            recorder: Arc::new(recorder),
            handle,
        }
    }

    /// Runs `f` with the `metrics` macros writing to this registry.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    /// Records one served request: `http_requests_total{method,route,status}` and
    /// `http_request_duration_seconds{method,route}`. The series' handles are cached per
    /// thread, so the hot path is a few hash lookups and two atomic updates — no registry
    /// lookup, no label strings built.
    pub fn record_request(
        &self,
        method: SharedString,
        route: &str,
        status: SharedString,
        elapsed: Duration,
    ) {
        type Series = HashMap<(SharedString, SharedString), (Counter, Histogram)>;
        thread_local! {
            /// Registry id → route → (method, status) → handles.
            static SERIES: RefCell<HashMap<u64, HashMap<Box<str>, Series>>> = RefCell::new(HashMap::new());
        }
        SERIES.with(|cache| {
            let mut cache = cache.borrow_mut();
            let routes = cache.entry(self.id).or_default();
            if !routes.contains_key(route) {
                routes.insert(Box::from(route), Series::new());
            }
            let Some(series) = routes.get_mut(route) else {
                return;
            };
            let (counter, histogram) =
                series
                    .entry((method, status))
                    .or_insert_with_key(|(method, status)| {
                        let route: Arc<str> = Arc::from(route);
                        self.record(|| {
                            (
                                counter!(
                                    "http_requests_total",
                                    "method" => method.clone(),
                                    "route" => Arc::clone(&route),
                                    "status" => status.clone(),
                                ),
                                histogram!(
                                    "http_request_duration_seconds",
                                    "method" => method.clone(),
                                    "route" => route,
                                ),
                            )
                        })
                    });
            counter.increment(1);
            histogram.record(elapsed.as_secs_f64());
        });
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into buckets; call periodically so memory stays bounded even
    /// when nobody scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_separate_and_labelled() {
        let a = Metrics::new("user-service");
        let b = Metrics::new("api-gateway");
        a.record(|| counter!("http_requests_total", "route" => "/x").increment(2));
        b.record(|| histogram!("http_request_duration_seconds").record(0.003));
        let text_a = a.render();
        let text_b = b.render();
        assert!(
            text_a.contains(r#"http_requests_total{service="user-service",route="/x"} 2"#),
            "{text_a}"
        );
        assert!(!text_a.contains("http_request_duration_seconds"));
        assert!(
            text_b.contains(
                r#"http_request_duration_seconds_bucket{service="api-gateway",le="0.005"} 1"#
            ),
            "{text_b}"
        );
        assert!(!text_b.contains("http_requests_total"));
    }
}
