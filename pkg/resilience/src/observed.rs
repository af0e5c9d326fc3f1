//! Breakers that report themselves: every state change is logged and exported as the
//! `circuit_breaker_state{upstream,endpoint}` gauge (`service` is the caller, as on every series) (0 closed, 1 open, 2 half-open), the one
//! way the gateway and the services' gRPC clients expose their breakers.

use platform_metrics::{Metrics, gauge};

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker};

/// A breaker for `endpoint` of `service`, its gauge registered (closed) in `metrics`.
pub fn observed_breaker(
    config: BreakerConfig,
    metrics: &Metrics,
    service: &str,
    endpoint: &str,
) -> CircuitBreaker {
    let labels = (service.to_owned(), endpoint.to_owned());
    let set = move |metrics: &Metrics, state: BreakerState| {
        metrics.record(|| {
            gauge!("circuit_breaker_state", "upstream" => labels.0.clone(), "endpoint" => labels.1.clone())
                .set(state.gauge());
        });
    };
    set(metrics, BreakerState::Closed);
    let metrics = metrics.clone();
    let (service, endpoint) = (service.to_owned(), endpoint.to_owned());
    CircuitBreaker::new(config).on_transition(move |from, to| {
        tracing::warn!(%service, %endpoint, %from, %to, "circuit breaker changed state");
        set(&metrics, to);
    })
}
