//! api-gateway: the platform's front door.
//!
//! Layout:
//! - [`routes`]: the route table (`GATEWAY_CONFIG` or built in): prefix → service, auth,
//!   timeouts, retries, rate limits;
//! - [`forward`]: the request path — edge authentication (identity headers only from a verified
//!   token), rate limits per IP and per user, balanced and breaker-guarded forwarding with
//!   budgeted retries;
//! - [`fast`]: the HTTP/1 fast path — plain HTTP/1.1 API requests served with the same policy
//!   on `platform_proxy::h1`, everything else handed to hyper;
//! - [`health`]: `/health` aggregating every service, `/health/{service}`;
//! - [`docs`]: the merged OpenAPI document and Swagger UI;
//! - [`config`] and [`startup`]: configuration and wiring.
//!
//! Reusable parts live in `pkg/`: forwarding and balancing (`platform-proxy`), breakers and
//! retry budgets (`platform-resilience`), rate limits, load shedding, CORS
//! (`platform-middleware`); the request pipeline (request ids, spans, metrics, deadlines,
//! problem+json) and TLS are the service kit's. Architecture invariant: the gateway knows no
//! service's code, only their addresses and path prefixes.
#![forbid(unsafe_code)]

pub mod config;
pub mod docs;
pub mod fast;
pub mod forward;
pub mod health;
mod parts;
pub mod routes;
pub mod startup;

pub use config::GatewayConfig;
pub use startup::Application;
