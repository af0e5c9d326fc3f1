//! HTTP middleware beyond the service kit's defaults, for the gateway and any service that
//! faces clients directly.
//!
//! - [`rate_limit`]: token buckets per key (client IP, user) with `RateLimit-*` headers, shared
//!   across replicas through Redis when configured, in-process otherwise — and in-process when
//!   Redis fails, so a Redis outage never stops the traffic;
//! - [`limits`]: load shedding (a cap on concurrent requests, 503 beyond) and a cap on the size
//!   of request headers (431);
//! - [`cors`]: CORS settings from the environment.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cors;
pub mod limits;
pub mod rate_limit;

pub use cors::CorsConfig;
pub use limits::{LoadShed, MaxHeaderBytes};
pub use rate_limit::{Decision, LimitKey, RateLimiter};
