//! Resilience building blocks: circuit breakers, retry policies and retry budgets.
//!
//! - [`breaker`]: a circuit breaker per endpoint (closed → open on a failure rate over a
//!   sliding window with a minimum volume; open fails fast with a retry hint; half-open lets a
//!   few probes through and closes on their success), usable directly or as a tower layer
//!   ([`breaker::CircuitBreakerLayer`]) around any service, gRPC clients included.
//! - [`retry`]: exponential backoff with jitter, and a retry budget that caps retries to a
//!   fraction of recent requests so retries cannot multiply an outage.
//!
//! Written here rather than taken from tower-resilience: the gateway needs the breaker's state
//! per endpoint as a value (for `/health` and the `circuit_breaker_state` gauge) and a
//! breaker that is consulted before an endpoint is chosen, not only as a layer.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod breaker;
pub mod observed;
pub mod retry;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer, Rejected};
pub use observed::observed_breaker;
pub use retry::{Backoff, RetryBudget};
