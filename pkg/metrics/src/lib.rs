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
#![warn(missing_docs)]

mod process;

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

/// A gauge-setting closure run before each render ([`Metrics::on_render`]).
type RenderHook = Box<dyn Fn() + Send + Sync>;
type Hooks = std::sync::Mutex<Vec<RenderHook>>;

/// A service's metric registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// Tells registries apart in the per-thread cache of request series.
    id: u64,
    /// The service whose registry this is (its `service` label).
    service: Arc<str>,
    /// Run before each render: gauges read from their source at scrape time.
    on_render: Arc<std::sync::Mutex<Vec<RenderHook>>>,
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
        let recorder = Arc::new(builder.build_recorder());
        let handle = recorder.handle();
        let on_render: Arc<std::sync::Mutex<Vec<RenderHook>>> = Arc::default();
        live()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((Arc::downgrade(&recorder), Arc::downgrade(&on_render)));
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            service: Arc::from(service),
            on_render,
            recorder,
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

    /// The service whose registry this is.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Runs `hook` inside this registry before every render, for gauges whose value is read
    /// from elsewhere when scraped (a connection pool's size, say).
    pub fn on_render(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.on_render
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(hook));
    }

    /// The registry in Prometheus' text format, with the process's resource use as of now.
    pub fn render(&self) -> String {
        {
            let hooks = self
                .on_render
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.record(|| hooks.iter().for_each(|hook| hook()));
        }
        let usage = process::read();
        self.record(|| {
            let set = |name: &'static str, value: Option<f64>| {
                if let Some(value) = value {
                    gauge!(name).set(value);
                }
            };
            set("process_resident_memory_bytes", usage.resident_bytes);
            set("process_open_fds", usage.open_fds);
            set("process_memory_limit_bytes", usage.memory_limit_bytes);
            // A gauge, not a counter: the exporter's counters are integers, and CPU time
            // needs its fractions for rate() over a few seconds. It only ever grows.
            set("process_cpu_seconds_total", usage.cpu_seconds);
        });
        self.render_registry()
    }

    fn render_registry(&self) -> String {
        self.handle.render()
    }

    /// Every registry alive in this process in one exposition (each series keeps its
    /// `service` label): what the gateway serves under `platform up`, where all services share
    /// the process, so that its `/metrics` answers for the whole platform.
    pub fn render_process(&self) -> String {
        let registries: Vec<(Arc<PrometheusRecorder>, Arc<Hooks>)> = {
            let mut live = live()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            live.retain(|(recorder, _)| recorder.strong_count() > 0);
            live.iter()
                .filter_map(|(recorder, hooks)| Some((recorder.upgrade()?, hooks.upgrade()?)))
                .collect()
        };
        // This registry's own process gauges, once: the others' would repeat them. The others'
        // scrape-time hooks (pool gauges) run as their own render would run them.
        let own = self.render();
        let others = registries
            .iter()
            .filter(|(recorder, _)| !Arc::ptr_eq(recorder, &self.recorder))
            .map(|(recorder, hooks)| {
                let hooks = hooks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                metrics::with_local_recorder(recorder.as_ref(), || {
                    hooks.iter().for_each(|hook| hook())
                });
                recorder.handle().render()
            });
        merge_expositions(std::iter::once(own).chain(others))
    }

    /// Drains histogram samples into buckets; call periodically so memory stays bounded even
    /// when nobody scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// A registry as the process-wide list keeps it: its recorder and its render hooks.
type LiveRegistry = (
    std::sync::Weak<PrometheusRecorder>,
    std::sync::Weak<std::sync::Mutex<Vec<RenderHook>>>,
);

/// Every registry created in this process (weakly: dropping a service drops its registry).
fn live() -> &'static std::sync::Mutex<Vec<LiveRegistry>> {
    static LIVE: std::sync::OnceLock<std::sync::Mutex<Vec<LiveRegistry>>> =
        std::sync::OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// Joins expositions into one, each metric family once (its `# HELP`/`# TYPE` header, then
/// every exposition's samples of it): Prometheus rejects a family declared twice.
fn merge_expositions(texts: impl Iterator<Item = String>) -> String {
    // family name → (header lines, sample lines), in order of first appearance
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for text in texts {
        let mut current: Option<usize> = None;
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            let declared = line
                .strip_prefix("# TYPE ")
                .or_else(|| line.strip_prefix("# HELP "))
                .and_then(|rest| rest.split_ascii_whitespace().next());
            let index = |families: &mut Vec<(String, Vec<String>, Vec<String>)>, name: &str| {
                families
                    .iter()
                    .position(|(n, _, _)| n == name)
                    .unwrap_or_else(|| {
                        families.push((name.to_owned(), Vec::new(), Vec::new()));
                        families.len() - 1
                    })
            };
            if let Some(name) = declared {
                let at = index(&mut families, name);
                if !families[at].1.iter().any(|l| l == line) {
                    families[at].1.push(line.to_owned());
                }
                current = Some(at);
            } else if line.starts_with('#') {
                continue;
            } else {
                let at = match current {
                    Some(at) => at,
                    None => {
                        let name = line.split(['{', ' ']).next().unwrap_or(line);
                        index(&mut families, name)
                    }
                };
                families[at].2.push(line.to_owned());
            }
        }
    }
    let mut out = String::new();
    for (_, headers, samples) in families {
        for line in headers.iter().chain(&samples) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_hooks_set_gauges_at_scrape_time() {
        let metrics = Metrics::new("hooked");
        let size = Arc::new(AtomicU64::new(3));
        let seen = Arc::clone(&size);
        metrics.on_render(move || {
            gauge!("db_pool_max_connections").set(seen.load(Ordering::Relaxed) as f64)
        });
        assert!(
            metrics
                .render()
                .contains(r#"db_pool_max_connections{service="hooked"} 3"#)
        );
        size.store(5, Ordering::Relaxed);
        assert!(
            metrics
                .render()
                .contains(r#"db_pool_max_connections{service="hooked"} 5"#)
        );
    }

    #[test]
    fn expositions_merge_each_family_once() {
        let a = "# TYPE cache_hits_total counter\ncache_hits_total{service=\"product-service\"} 3\n\n# TYPE up gauge\nup{service=\"product-service\"} 1\n";
        let b = "# TYPE cache_hits_total counter\ncache_hits_total{service=\"api-gateway\"} 0\n";
        let merged = merge_expositions([a.to_owned(), b.to_owned()].into_iter());
        assert_eq!(
            merged.matches("# TYPE cache_hits_total").count(),
            1,
            "{merged}"
        );
        assert!(merged.contains("cache_hits_total{service=\"product-service\"} 3"));
        assert!(merged.contains("cache_hits_total{service=\"api-gateway\"} 0"));
        assert!(merged.contains("up{service=\"product-service\"} 1"));
    }

    #[test]
    fn a_registry_renders_the_whole_process_when_asked() {
        let product = Metrics::new("product-service-fed");
        let gateway = Metrics::new("api-gateway-fed");
        product.record(|| counter!("cache_hits_total").increment(7));
        product.on_render(|| gauge!("db_pool_max_connections").set(4.0));
        let all = gateway.render_process();
        assert!(
            all.contains(r#"cache_hits_total{service="product-service-fed"} 7"#),
            "{all}"
        );
        assert!(
            all.contains(r#"db_pool_max_connections{service="product-service-fed"} 4"#),
            "another registry's scrape-time hooks run too: {all}"
        );
        assert!(!gateway.render().contains("cache_hits_total"));
        assert!(
            all.contains(r#"process_resident_memory_bytes{service="api-gateway-fed"}"#)
                || !cfg!(target_os = "linux")
        );
        drop(product);
        assert!(!gateway.render_process().contains("product-service-fed"));
    }

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
