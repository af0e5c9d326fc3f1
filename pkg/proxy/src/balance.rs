//! Load balancing over a service's endpoints, with active health checks.
//!
//! An endpoint is eligible when its last health checks passed and its circuit breaker lets
//! calls through. Among eligible endpoints the pool picks by round-robin, smooth weighted
//! round-robin (nginx's algorithm: interleaved, not bursty), or power of two choices on
//! in-flight requests (the default: two random endpoints, the less busy wins — near-optimal
//! spreading without global coordination).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform_resilience::{BreakerConfig, CircuitBreaker};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{Proxy, Upstream};

/// How a pool chooses among eligible endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each eligible endpoint in turn (`round_robin`).
    RoundRobin,
    /// In proportion to the endpoints' weights, interleaved (`weighted_round_robin`).
    WeightedRoundRobin,
    /// The one with fewer requests in flight of two picked at random (`p2c` or
    /// `power_of_two_choices`); the default.
    #[default]
    #[serde(alias = "p2c")]
    PowerOfTwoChoices,
}

impl Strategy {
    /// The configuration's names: `round_robin`, `weighted_round_robin`, `p2c` or
    /// `power_of_two_choices`; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "round_robin" => Some(Strategy::RoundRobin),
            "weighted_round_robin" => Some(Strategy::WeightedRoundRobin),
            "p2c" | "power_of_two_choices" => Some(Strategy::PowerOfTwoChoices),
            _ => None,
        }
    }
}

/// One upstream address of a service.
pub struct Endpoint {
    /// Where its requests go.
    pub upstream: Upstream,
    /// `upstream`'s base URL, kept for labels and logs (shared, never re-formatted).
    url: Arc<str>,
    /// Its share under weighted round-robin; at least 1.
    pub weight: u32,
    /// While it refuses calls, the endpoint is not picked.
    pub breaker: Arc<CircuitBreaker>,
    in_flight: AtomicUsize,
    healthy: AtomicBool,
    /// Consecutive failed health checks.
    failures: AtomicU32,
    /// Latency of the last health check, in microseconds.
    latency_us: AtomicU64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.upstream.base_url())
            .field("healthy", &self.is_healthy())
            .field("breaker", &self.breaker.state())
            .finish()
    }
}

/// Failed health checks in a row before an endpoint is taken out.
const UNHEALTHY_AFTER: u32 = 2;

impl Endpoint {
    /// An endpoint taken as healthy until its health checks say otherwise; a weight of 0
    /// counts as 1.
    pub fn new(upstream: Upstream, weight: u32, breaker: CircuitBreaker) -> Self {
        Self {
            url: Arc::from(upstream.base_url()),
            upstream,
            weight: weight.max(1),
            breaker: Arc::new(breaker),
            in_flight: AtomicUsize::new(0),
            // Optimistic until the first check: a gateway starting with its upstreams serves.
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            latency_us: AtomicU64::new(0),
        }
    }

    /// The base URL (`http://host:port`).
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// The base URL, shared (for metric labels).
    pub fn url_label(&self) -> Arc<str> {
        Arc::clone(&self.url)
    }

    /// Whether its health checks pass: it is taken out after 2 failures in a row and back at
    /// the first success.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Requests on it now (each counted from [`Endpoint::start`] until its guard drops).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// How long the last health check took; zero before the first.
    pub fn check_latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    fn eligible(&self) -> bool {
        self.is_healthy() && self.breaker.allows()
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Records a health check's result; returns the new health when it changed.
    pub fn record_check(&self, ok: bool, latency: Duration) -> Option<bool> {
        self.latency_us.store(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            (!self.healthy.swap(true, Ordering::Relaxed)).then_some(true)
        } else {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            (failures >= UNHEALTHY_AFTER && self.healthy.swap(false, Ordering::Relaxed))
                .then_some(false)
        }
    }
}

/// A request in flight on an endpoint.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A service's endpoints and how to choose among them.
pub struct Pool {
    /// The service's name.
    pub service: String,
    endpoints: Vec<Arc<Endpoint>>,
    strategy: Strategy,
    next: AtomicUsize,
    /// Smooth weighted round-robin's running weights, one per endpoint.
    current: Mutex<Vec<i64>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("service", &self.service)
            .field("strategy", &self.strategy)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl Pool {
    /// A pool choosing among `endpoints` by `strategy`.
    pub fn new(service: &str, endpoints: Vec<Endpoint>, strategy: Strategy) -> Self {
        let current = vec![0; endpoints.len()];
        Self {
            service: service.to_owned(),
            endpoints: endpoints.into_iter().map(Arc::new).collect(),
            strategy,
            next: AtomicUsize::new(0),
            current: Mutex::new(current),
        }
    }

    /// A pool with one endpoint per URL, each with its own breaker.
    pub fn from_urls(
        service: &str,
        urls: &[(String, u32)],
        strategy: Strategy,
        breaker: BreakerConfig,
    ) -> Result<Self, crate::InvalidUpstream> {
        let endpoints = urls
            .iter()
            .map(|(url, weight)| {
                Ok(Endpoint::new(
                    Upstream::parse(service, url)?,
                    *weight,
                    CircuitBreaker::new(breaker),
                ))
            })
            .collect::<Result<Vec<_>, crate::InvalidUpstream>>()?;
        Ok(Self::new(service, endpoints, strategy))
    }

    /// Every endpoint, eligible or not, in the order given.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// How the pool chooses.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// An eligible endpoint, or `None` when every endpoint is unhealthy or its breaker open.
    /// `exclude` skips one endpoint (the one a retry just failed on), unless it is the only one.
    pub fn pick(&self, exclude: Option<&Arc<Endpoint>>) -> Option<Arc<Endpoint>> {
        // The common case, one endpoint, touches no allocator.
        if let [only] = self.endpoints.as_slice() {
            return only.eligible().then(|| Arc::clone(only));
        }
        let mut eligible: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| self.endpoints[i].eligible())
            .collect();
        if let Some(excluded) = exclude
            && eligible.len() > 1
        {
            eligible.retain(|&i| !Arc::ptr_eq(&self.endpoints[i], excluded));
        }
        let chosen = match eligible.len() {
            0 => return None,
            1 => eligible[0],
            n => match self.strategy {
                Strategy::RoundRobin => eligible[self.next.fetch_add(1, Ordering::Relaxed) % n],
                Strategy::WeightedRoundRobin => self.weighted(&eligible),
                Strategy::PowerOfTwoChoices => {
                    let a = rand::random_range(0..n);
                    let mut b = rand::random_range(0..n - 1);
                    if b >= a {
                        b += 1;
                    }
                    let (a, b) = (eligible[a], eligible[b]);
                    if self.endpoints[b].in_flight() < self.endpoints[a].in_flight() {
                        b
                    } else {
                        a
                    }
                }
            },
        };
        Some(Arc::clone(&self.endpoints[chosen]))
    }

    fn weighted(&self, eligible: &[usize]) -> usize {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let total: i64 = eligible
            .iter()
            .map(|&i| i64::from(self.endpoints[i].weight))
            .sum();
        let mut best = eligible[0];
        for &i in eligible {
            current[i] += i64::from(self.endpoints[i].weight);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        best
    }

    /// How long until a breaker lets a call through, when every endpoint is refused by its
    /// breaker (for `Retry-After`).
    pub fn retry_after(&self) -> Duration {
        self.endpoints
            .iter()
            .filter(|e| e.is_healthy())
            .filter_map(|e| e.breaker.open_remaining())
            .min()
            .unwrap_or(Duration::from_secs(5))
    }

    /// Probes every endpoint's `/health` every `interval` until `shutdown`, taking endpoints
    /// out after two failures in a row and back after one success.
    pub async fn check_health(
        self: Arc<Self>,
        proxy: Proxy,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            for endpoint in &self.endpoints {
                let started = Instant::now();
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(2), proxy.fetch(&endpoint.upstream, "/health")).await,
                    Ok(Ok((status, _))) if status.is_success()
                );
                if let Some(healthy) = endpoint.record_check(ok, started.elapsed()) {
                    if healthy {
                        tracing::info!(service = %self.service, endpoint = %endpoint.url(), "endpoint healthy again; back in rotation");
                    } else {
                        tracing::warn!(service = %self.service, endpoint = %endpoint.url(), "endpoint failed its health checks; out of rotation");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pool(strategy: Strategy, weights: &[u32]) -> Pool {
        let urls: Vec<(String, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("http://10.0.0.{}:80", i + 1), *w))
            .collect();
        Pool::from_urls("svc", &urls, strategy, BreakerConfig::default()).unwrap()
    }

    fn counts(pool: &Pool, picks: usize) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for _ in 0..picks {
            *counts.entry(pool.pick(None).unwrap().url()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn round_robin_takes_turns() {
        let pool = pool(Strategy::RoundRobin, &[1, 1, 1]);
        let counts = counts(&pool, 300);
        assert!(counts.values().all(|&c| c == 100), "{counts:?}");
    }

    #[test]
    fn weighted_round_robin_follows_the_weights_smoothly() {
        let pool = pool(Strategy::WeightedRoundRobin, &[5, 1, 1]);
        let sequence: Vec<String> = (0..7).map(|_| pool.pick(None).unwrap().url()).collect();
        let heavy = "http://10.0.0.1:80";
        assert_eq!(sequence.iter().filter(|u| *u == heavy).count(), 5);
        // Smooth: the heavy endpoint never gets more than three in a row.
        assert!(
            !sequence.windows(4).any(|w| w.iter().all(|u| u == heavy)),
            "{sequence:?}"
        );
    }

    #[test]
    fn two_choices_avoid_the_busy_endpoint() {
        let pool = pool(Strategy::PowerOfTwoChoices, &[1, 1]);
        let busy = pool.endpoints()[0].clone();
        let _held: Vec<InFlight> = (0..5).map(|_| busy.start()).collect();
        let counts = counts(&pool, 100);
        assert_eq!(counts.get("http://10.0.0.2:80"), Some(&100), "{counts:?}");
    }

    #[test]
    fn unhealthy_or_broken_endpoints_are_skipped_and_come_back() {
        let pool = pool(Strategy::RoundRobin, &[1, 1]);
        let first = pool.endpoints()[0].clone();
        assert_eq!(
            first.record_check(false, Duration::ZERO),
            None,
            "one failure is tolerated"
        );
        assert_eq!(first.record_check(false, Duration::ZERO), Some(false));
        assert!(!counts(&pool, 10).contains_key(&first.url()));
        assert_eq!(first.record_check(true, Duration::ZERO), Some(true));
        assert_eq!(counts(&pool, 10).get(&first.url()), Some(&5));

        let second = pool.endpoints()[1].clone();
        for _ in 0..10 {
            let permit = second.breaker.try_acquire().unwrap();
            second.breaker.record(permit, false);
        }
        assert!(
            !counts(&pool, 10).contains_key(&second.url()),
            "open breaker: skipped"
        );
        first.record_check(false, Duration::ZERO);
        first.record_check(false, Duration::ZERO);
        assert!(pool.pick(None).is_none(), "nothing eligible");
        assert!(pool.retry_after() <= BreakerConfig::default().open_for);
    }

    #[test]
    fn a_retry_avoids_the_endpoint_that_just_failed() {
        let pool = pool(Strategy::RoundRobin, &[1, 1]);
        let failed = pool.endpoints()[0].clone();
        for _ in 0..20 {
            assert!(!Arc::ptr_eq(&pool.pick(Some(&failed)).unwrap(), &failed));
        }
        let single = self::pool(Strategy::RoundRobin, &[1]);
        let only = single.endpoints()[0].clone();
        assert!(
            Arc::ptr_eq(&single.pick(Some(&only)).unwrap(), &only),
            "unless it is the only one"
        );
    }
}
