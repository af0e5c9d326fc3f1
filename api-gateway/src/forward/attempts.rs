//! Attempts at an upstream: which failures may be retried and when a request may be sent
//! again (RFC 9110 §9.2.2), each attempt balanced and breaker-guarded, counted per endpoint,
//! and paid for from the retry budget. Shared by the hyper path and the fast path.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use platform_http::Problem;
use platform_proxy::ProxyError;
use platform_proxy::balance::{Endpoint, Pool};
use platform_resilience::Backoff;

use super::{Gateway, OUTCOMES};
use crate::routes::Route;

/// When a failed attempt may be sent again (RFC 9110 §9.2.2: only a request that is
/// idempotent may be repeated after it may have reached the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryPolicy {
    /// After any retryable failure: safe methods, PUT and DELETE on a route declared
    /// `idempotent`, and anything carrying an `Idempotency-Key` (the service deduplicates).
    Always,
    /// Only when the upstream certainly did not see the request (the connection was
    /// refused): a POST or PATCH without a key, a PUT or DELETE on other routes, and any
    /// request with a body but no key.
    BeforeSend,
}

impl RetryPolicy {
    pub(crate) fn of(
        method: &Method,
        route: &Route,
        has_idempotency_key: bool,
        has_body: bool,
    ) -> Self {
        if has_idempotency_key {
            return RetryPolicy::Always;
        }
        let repeatable = match *method {
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE => true,
            Method::PUT | Method::DELETE => route.idempotent,
            _ => false,
        };
        if repeatable && !has_body {
            RetryPolicy::Always
        } else {
            RetryPolicy::BeforeSend
        }
    }

    /// Whether a stale pooled connection that failed before any answer may be replaced and
    /// the request written again (the upstream may have read it before closing).
    pub(crate) fn after_send(self) -> bool {
        self == RetryPolicy::Always
    }
}

/// The 504 for a route whose upstream did not answer in time.
pub(crate) fn timed_out(route: &Route) -> Response {
    Problem::new(StatusCode::GATEWAY_TIMEOUT)
        .with_type("upstream-timeout")
        .with_detail(format!("The {} did not answer in time.", route.service))
        .into_response()
}

/// What an attempt got back: enough to judge it.
pub(crate) trait Answered {
    fn status(&self) -> StatusCode;
}

impl Answered for Response {
    fn status(&self) -> StatusCode {
        Response::status(self)
    }
}

/// Whether an attempt's outcome counts against the endpoint, and whether it may be retried.
fn classify<R: Answered>(result: &Result<R, ProxyError>) -> (bool, bool, &'static str) {
    match result {
        Ok(answer) => {
            let status = answer.status();
            let retry = matches!(status.as_u16(), 502..=504);
            (status.is_server_error(), retry, status_class(status))
        }
        Err(ProxyError::Unreachable { .. }) => (true, true, "unreachable"),
        Err(ProxyError::Timeout { .. }) => (true, true, "timeout"),
        Err(ProxyError::Broken { .. }) => (true, true, "broken"),
        Err(ProxyError::Request(_)) => (false, false, "invalid"),
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Gateway {
    fn count_upstream(&self, endpoint: &Arc<Endpoint>, outcome: &str) {
        let counters = self
            .upstream_counters
            .get(&(Arc::as_ptr(endpoint) as usize));
        let index = OUTCOMES.iter().position(|o| *o == outcome);
        if let (Some(counters), Some(index)) = (counters, index)
            && let Some(counter) = counters.get(index)
        {
            counter.increment(1);
        }
    }

    /// The upstream pool of `route`'s service.
    pub(crate) fn pool(&self, route: &Route) -> Result<&Arc<Pool>, Response> {
        self.pools.get(&route.service).ok_or_else(|| {
            tracing::error!(service = %route.service, "route to a service without upstreams");
            Problem::internal().into_response()
        })
    }

    /// Sends a request to `pool` until an answer is final: each attempt on an endpoint the
    /// pool picks (another one after a failure), through its breaker, counted in
    /// `upstream_requests_total`. Retried — when `replayable` — on connect errors, timeouts
    /// and 502/503/504 as `policy` allows, with backoff, within the route's retry count and
    /// the retry budget.
    /// `send` makes one attempt with an optional per-try deadline. `Err` carries the
    /// gateway's own problem response.
    pub(crate) async fn attempts<R, F, Fut>(
        &self,
        route: &Route,
        pool: &Arc<Pool>,
        replayable: bool,
        policy: RetryPolicy,
        mut send: F,
    ) -> Result<R, Response>
    where
        R: Answered,
        F: FnMut(Arc<Endpoint>, Option<Duration>) -> Fut,
        Fut: std::future::Future<Output = Result<R, ProxyError>>,
    {
        let backoff = Backoff {
            base: self.retry.backoff_base,
            max: self.retry.backoff_max,
        };
        let unavailable = |wait: u64| {
            Problem::unavailable(format!("The {} is not available right now.", route.service))
                .with_retry_after(wait.max(1))
                .into_response()
        };
        let mut failed: Option<Arc<Endpoint>> = None;
        let mut retry = 0u32;
        loop {
            let Some(endpoint) = pool.pick(failed.as_ref()) else {
                return Err(unavailable(pool.retry_after().as_secs()));
            };
            let Ok(permit) = endpoint.breaker.try_acquire() else {
                // Lost a race for a half-open probe slot: treat like a failed pick.
                failed = Some(endpoint);
                if retry >= route.retries {
                    return Err(unavailable(1));
                }
                retry += 1;
                continue;
            };
            let in_flight = endpoint.start();
            // One attempt's deadline; when it is the whole route's, the total deadline around
            // all attempts already enforces it (one timer fewer per request).
            let attempt_limit = route.try_timeout.min(self.proxy.timeout());
            let attempt_timer = (attempt_limit < route.timeout).then_some(attempt_limit);
            let result = send(Arc::clone(&endpoint), attempt_timer).await;
            drop(in_flight);
            let (failure, retry_worthy, outcome) = classify(&result);
            endpoint.breaker.record(permit, !failure);
            self.count_upstream(&endpoint, outcome);
            let unseen = matches!(&result, Err(error) if error.retry_safe());
            let allowed = match policy {
                RetryPolicy::Always => true,
                RetryPolicy::BeforeSend => unseen,
            };
            let may_retry = retry_worthy && allowed && replayable && retry < route.retries;
            if !may_retry || !self.budget.withdraw() {
                return result.map_err(|error| {
                    tracing::warn!(service = %route.service, endpoint = %endpoint.url(), %error, "upstream request failed");
                    error.to_problem().into_response()
                });
            }
            retry += 1;
            let wait = backoff.delay(retry);
            tracing::info!(service = %route.service, endpoint = %endpoint.url(), outcome, retry, wait_ms = wait.as_millis() as u64, "retrying on another endpoint");
            failed = Some(endpoint);
            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
        }
    }
}
