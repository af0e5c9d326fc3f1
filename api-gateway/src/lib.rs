//! api-gateway: the platform's front door.
//!
//! Layout:
//! - [`routes`]: the route table (path templates → service);
//! - [`proxy`]: the forwarding handler (streaming, `X-Forwarded-*`, trace context), built on
//!   `platform-proxy`;
//! - [`rate_limit`]: `RATE_LIMIT_PER_MINUTE` per client IP, 429 beyond;
//! - [`health`]: `/health/{service}` and readiness of the upstreams;
//! - [`docs`]: the merged OpenAPI document and Swagger UI;
//! - [`config`] and [`startup`]: configuration and wiring.
//!
//! The request pipeline (request ids, spans, metrics, timeouts, problem+json errors) is the
//! service kit's, shared with every service. Architecture invariant: the gateway knows no
//! service's code, only their addresses and paths.
#![forbid(unsafe_code)]

pub mod config;
pub mod docs;
pub mod health;
pub mod proxy;
pub mod rate_limit;
pub mod routes;
pub mod startup;

pub use config::GatewayConfig;
pub use startup::Gateway;
