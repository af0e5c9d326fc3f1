//! The circuit breaker.
//!
//! States:
//! - **Closed**: calls pass; each outcome goes into a sliding window bounded both by count (the
//!   last `window_size` calls) and by time (calls older than `window` are forgotten). When the
//!   window holds at least `min_requests` calls and the failure share reaches `failure_rate`, the
//!   breaker opens.
//! - **Open**: calls are refused at once with the time left ([`Rejected::retry_after`]). After
//!   `open_for`, the next call moves it to half-open.
//! - **Half-open**: up to `half_open_probes` calls pass concurrently; when that many succeed the
//!   breaker closes (with an empty window); any failure opens it again for `open_for`.
//!
//! Recovery is therefore bounded: a breaker never stays open more than `open_for` after the
//! upstream is healthy again, plus one round of probes.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Tuning of a breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Outcomes older than this are forgotten.
    pub window: Duration,
    /// At most this many recent outcomes are considered.
    pub window_size: usize,
    /// Fewer calls than this in the window never open the breaker.
    pub min_requests: usize,
    /// Share of failures (0–1) that opens the breaker.
    pub failure_rate: f64,
    /// How long an open breaker refuses calls before probing.
    pub open_for: Duration,
    /// Concurrent probes allowed when half-open, and successes needed to close.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            window_size: 100,
            min_requests: 10,
            failure_rate: 0.5,
            open_for: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// The externally visible state; the numbers are the `circuit_breaker_state` gauge's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass, and their outcomes fill the window.
    Closed = 0,
    /// Calls are refused at once, until `open_for` has passed.
    Open = 1,
    /// Up to `half_open_probes` calls pass as probes; the rest are refused.
    HalfOpen = 2,
}

impl BreakerState {
    /// Its name, as `Display` writes it: `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// Its value on the `circuit_breaker_state` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        f64::from(self as u8)
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call refused by an open (or saturated half-open) breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// When a call may succeed again.
    pub retry_after: Duration,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit open; retry in {:?}", self.retry_after)
    }
}

impl std::error::Error for Rejected {}

enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

struct Inner {
    state: State,
    /// (when, failed) of recent calls while closed.
    window: VecDeque<(Instant, bool)>,
    failures: usize,
}

/// Called on every state change with (from, to).
type Listener = Box<dyn Fn(BreakerState, BreakerState) + Send + Sync>;

/// A circuit breaker. Share it (`Arc`) between every caller of one endpoint.
pub struct CircuitBreaker {
    config: BreakerConfig,
    /// Mirrors `state == Closed`, so the common case (closed) lets calls through without the
    /// lock.
    closed: AtomicBool,
    inner: Mutex<Inner>,
    listener: Option<Listener>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("state", &self.state())
            .finish()
    }
}

/// Permission to make one call; report how it went with [`CircuitBreaker::record`]. A permit
/// dropped unreported counts as neither success nor failure (the call was abandoned).
#[derive(Debug)]
#[must_use = "report the outcome with CircuitBreaker::record"]
pub struct Permit {
    probe: bool,
    reported: bool,
    breaker: Option<Arc<CircuitBreaker>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe
            && !self.reported
            && let Some(breaker) = self.breaker.take()
        {
            // An abandoned probe frees its slot without deciding anything.
            let mut inner = breaker.lock();
            if let State::HalfOpen { in_flight, .. } = &mut inner.state {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker with an empty window and no transition listener.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            closed: AtomicBool::new(true),
            inner: Mutex::new(Inner {
                state: State::Closed,
                window: VecDeque::with_capacity(config.window_size),
                failures: 0,
            }),
            listener: None,
        }
    }

    /// Calls `listener(from, to)` on every state change (for metrics and logs).
    pub fn on_transition(
        mut self,
        listener: impl Fn(BreakerState, BreakerState) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }

    /// The tuning it was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one
        // assignment), so a poisoned lock is safe to keep using.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state (an open breaker whose time is up reports half-open).
    pub fn state(&self) -> BreakerState {
        match self.lock().state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// While open: how long until it lets a probe through.
    pub fn open_remaining(&self) -> Option<Duration> {
        match self.lock().state {
            State::Open { until } => until.checked_duration_since(Instant::now()),
            _ => None,
        }
    }

    /// Whether a call would be let through now (without taking a permit).
    pub fn allows(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        match self.lock().state {
            State::Closed => true,
            State::Open { until } => Instant::now() >= until,
            State::HalfOpen { in_flight, .. } => in_flight < self.config.half_open_probes,
        }
    }

    fn transition(&self, inner: &mut Inner, to: State) {
        let from = Self::visible(&inner.state);
        inner.state = to;
        self.closed
            .store(matches!(inner.state, State::Closed), Ordering::Release);
        let to = Self::visible(&inner.state);
        if from != to
            && let Some(listener) = &self.listener
        {
            listener(from, to);
        }
    }

    fn visible(state: &State) -> BreakerState {
        match state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Rejected> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(Permit {
                probe: false,
                reported: false,
                breaker: None,
            });
        }
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.state {
            State::Closed => Ok(Permit {
                probe: false,
                reported: false,
                breaker: None,
            }),
            State::Open { until } if now < until => Err(Rejected {
                retry_after: until - now,
            }),
            State::Open { .. } => {
                self.transition(
                    &mut inner,
                    State::HalfOpen {
                        in_flight: 1,
                        successes: 0,
                    },
                );
                Ok(self.probe_permit())
            }
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                if in_flight < self.config.half_open_probes {
                    inner.state = State::HalfOpen {
                        in_flight: in_flight + 1,
                        successes,
                    };
                    Ok(self.probe_permit())
                } else {
                    // The probes are out; their verdict is due within one call's time.
                    Err(Rejected {
                        retry_after: Duration::from_secs(1),
                    })
                }
            }
        }
    }

    fn probe_permit(self: &Arc<Self>) -> Permit {
        Permit {
            probe: true,
            reported: false,
            breaker: Some(Arc::clone(self)),
        }
    }

    /// Reports the outcome of a permitted call.
    pub fn record(&self, mut permit: Permit, success: bool) {
        permit.reported = true;
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.state {
            State::HalfOpen {
                in_flight,
                successes,
            } if permit.probe => {
                if success {
                    let successes = successes + 1;
                    if successes >= self.config.half_open_probes {
                        inner.window.clear();
                        inner.failures = 0;
                        self.transition(&mut inner, State::Closed);
                    } else {
                        inner.state = State::HalfOpen {
                            in_flight: in_flight.saturating_sub(1),
                            successes,
                        };
                    }
                } else {
                    self.transition(
                        &mut inner,
                        State::Open {
                            until: now + self.config.open_for,
                        },
                    );
                }
            }
            State::Closed if !permit.probe => {
                inner.window.push_back((now, !success));
                if !success {
                    inner.failures += 1;
                }
                // Count bound, then time bound.
                while inner.window.len() > self.config.window_size
                    || inner
                        .window
                        .front()
                        .is_some_and(|(at, _)| now.duration_since(*at) > self.config.window)
                {
                    if let Some((_, failed)) = inner.window.pop_front()
                        && failed
                    {
                        inner.failures -= 1;
                    }
                }
                let total = inner.window.len();
                if total >= self.config.min_requests
                    && inner.failures as f64 / total as f64 >= self.config.failure_rate
                {
                    inner.window.clear();
                    inner.failures = 0;
                    self.transition(
                        &mut inner,
                        State::Open {
                            until: now + self.config.open_for,
                        },
                    );
                }
            }
            // A late report from before the last transition: it no longer decides anything.
            _ => {}
        }
    }
}

mod layer;

#[cfg(test)]
use layer::BoxError;
pub use layer::{CircuitBreakerLayer, CircuitBreakerService};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            window_size: 20,
            min_requests: 10,
            failure_rate: 0.5,
            open_for: Duration::from_millis(100),
            half_open_probes: 2,
        }
    }

    fn call(breaker: &Arc<CircuitBreaker>, success: bool) -> Result<(), Rejected> {
        let permit = breaker.try_acquire()?;
        breaker.record(permit, success);
        Ok(())
    }

    #[test]
    fn failures_below_the_minimum_volume_never_open_it() {
        let breaker = Arc::new(CircuitBreaker::new(config()));
        for _ in 0..9 {
            call(&breaker, false).unwrap();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        call(&breaker, false).unwrap();
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "ten failures reach the volume"
        );
    }

    #[test]
    fn it_opens_at_the_failure_rate_and_not_below() {
        let breaker = Arc::new(CircuitBreaker::new(config()));
        // 40 % failures over the window (never 50 % at any point): stays closed.
        for i in 0..20 {
            call(&breaker, i % 5 != 0 && i % 5 != 3).unwrap();
        }

        assert_eq!(breaker.state(), BreakerState::Closed);
        // Enough failures to pass 50 % of the last 20 calls.
        for _ in 0..3 {
            let _ = call(&breaker, false);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        let rejected = breaker.try_acquire().unwrap_err();
        assert!(rejected.retry_after <= Duration::from_millis(100));
    }

    #[test]
    fn old_outcomes_leave_the_time_window() {
        let breaker = Arc::new(CircuitBreaker::new(BreakerConfig {
            window: Duration::from_millis(50),
            ..config()
        }));
        for _ in 0..9 {
            call(&breaker, false).unwrap();
        }
        std::thread::sleep(Duration::from_millis(80));
        // The nine old failures are gone: one more failure is 1 of 1, under the volume.
        call(&breaker, false).unwrap();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn it_half_opens_after_the_open_time_and_closes_when_probes_succeed() {
        let transitions = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&transitions);
        let breaker = Arc::new(
            CircuitBreaker::new(config()).on_transition(move |from, to| {
                seen.lock().unwrap().push((from, to));
            }),
        );
        for _ in 0..10 {
            call(&breaker, false).unwrap();
        }
        assert!(breaker.try_acquire().is_err());
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        // Two probes at once; a third waits for their verdict.
        let first = breaker.try_acquire().unwrap();
        let second = breaker.try_acquire().unwrap();
        assert!(breaker.try_acquire().is_err());
        breaker.record(first, true);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.record(second, true);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(
            *transitions.lock().unwrap(),
            [
                (BreakerState::Closed, BreakerState::Open),
                (BreakerState::Open, BreakerState::HalfOpen),
                (BreakerState::HalfOpen, BreakerState::Closed),
            ]
        );
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let breaker = Arc::new(CircuitBreaker::new(config()));
        for _ in 0..10 {
            call(&breaker, false).unwrap();
        }
        std::thread::sleep(Duration::from_millis(120));
        call(&breaker, false).unwrap();
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let breaker = Arc::new(CircuitBreaker::new(BreakerConfig {
            half_open_probes: 1,
            ..config()
        }));
        for _ in 0..10 {
            call(&breaker, false).unwrap();
        }
        std::thread::sleep(Duration::from_millis(120));
        drop(breaker.try_acquire().unwrap());
        assert!(breaker.try_acquire().is_ok(), "the slot came back");
    }

    #[tokio::test]
    async fn as_a_tower_layer_it_fails_fast_once_open() {
        use tower::{Layer, Service, ServiceExt};
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let failing = tower::service_fn(move |_: ()| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), BoxError>("upstream down".into()) }
        });
        let breaker = Arc::new(CircuitBreaker::new(config()));
        let mut service =
            CircuitBreakerLayer::new(breaker.clone(), |r: &Result<(), BoxError>| r.is_err())
                .layer(failing);
        for _ in 0..15 {
            let _ = service.ready().await.unwrap().call(()).await;
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            10,
            "the last five never reached the service"
        );
        let error = service.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(error.downcast_ref::<Rejected>().is_some());
    }
}
