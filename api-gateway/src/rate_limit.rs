//! Per-client rate limiting at the edge.
//!
//! Each client IP may make `RATE_LIMIT_PER_MINUTE` requests per minute (GCRA, via governor:
//! the allowance refills continuously, and a client may spend a whole minute's allowance in
//! a burst). Beyond it: 429 problem with `Retry-After`. Only API routes are limited; health and
//! metrics endpoints never are, so monitoring cannot be locked out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use platform_http::{CancellationToken, Problem};

/// The limiter shared by every API route. Cheap to clone.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimit {
    pub fn per_minute(requests: NonZeroU32) -> Self {
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::dashmap(Quota::per_minute(
                requests,
            ))),
        }
    }

    /// Forgets clients whose allowance is full again, so memory follows active clients only.
    pub async fn prune_until(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.limiter.retain_recent();
                    self.limiter.shrink_to_fit();
                }
            }
        }
    }
}

/// Middleware: admits the request or answers 429.
pub async fn limit(State(rate): State<RateLimit>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    match rate.limiter.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Round up: retrying after a truncated wait would be refused again.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Problem::too_many_requests(seconds.max(1)).into_response()
        }
    }
}
