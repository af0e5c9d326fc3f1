//! The gateway's request path: route → edge authentication → rate limits → balanced,
//! breaker-guarded, retried forwarding.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderName;
use platform_auth::Jwt;
use platform_http::audit::Audit;
use platform_http::{Metrics, TrustedProxies};
use platform_metrics::Counter;
use platform_middleware::{LoadShed, MaxHeaderBytes, RateLimiter};
use platform_proxy::Proxy;
use platform_proxy::balance::Pool;
use platform_resilience::RetryBudget;

use crate::config::RetryConfig;
use crate::routes::RouteTable;

mod attempts;
mod edge;
mod handler;

pub(crate) use attempts::{Answered, RetryPolicy, timed_out};
pub use handler::handle;

/// The identity headers the gateway sets from a verified token; a client's own are removed.
pub static USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub static USER_ROLE: HeaderName = HeaderName::from_static("x-user-role");

/// Everything the request path needs.
pub struct Gateway {
    pub routes: RouteTable,
    pub pools: HashMap<String, Arc<Pool>>,
    pub proxy: Proxy,
    /// Verifies tokens at the edge, revocations included (its store is shared with every
    /// service through Redis, or the process's own).
    pub jwt: Jwt,
    /// Where edge refusals (401, 403) are recorded: the fast path has no request `Auditor`.
    pub audit: Audit,
    pub limiter: RateLimiter,
    pub default_limit: Option<std::num::NonZeroU32>,
    pub budget: RetryBudget,
    pub retry: RetryConfig,
    pub max_body_bytes: usize,
    pub max_header_bytes: MaxHeaderBytes,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-For`/`Forwarded` names the client.
    pub trusted_proxies: TrustedProxies,
    pub shed: LoadShed,
    pub metrics: Metrics,
    /// `upstream_requests_total` per endpoint (by address) and outcome, registered once.
    pub upstream_counters: HashMap<usize, Vec<Counter>>,
}

/// The outcomes `upstream_requests_total` distinguishes, in counter order.
pub const OUTCOMES: [&str; 9] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "unreachable",
    "timeout",
    "broken",
    "invalid",
];
