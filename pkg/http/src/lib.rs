//! The service kit: what every HTTP service of the platform (and the gateway) shares.
//!
//! Layout:
//! - [`problem`]: RFC 9457 problem documents, the one error body;
//! - [`extract`]: `Json`, `Query`, `Path` extractors whose rejections are problems, and
//!   [`FieldErrors`] for 422s naming every invalid field;
//! - [`pagination`]: the `?page=&per_page=` → `{items, page, per_page, total}` contract;
//! - [`health`]: `/health`, `/ready` with pluggable [`HealthCheck`]s, `/metrics`;
//! - [`middleware`] and [`router`]: request ids, spans, access logs, metrics, timeouts, body
//!   limits, panics, 404/405 — assembled once by [`router::finish`];
//! - [`server`]: HTTP + gRPC start-up in one call, graceful shutdown on SIGINT/SIGTERM;
//! - [`grpc_guard`]: every gRPC call authenticated (a service credential) and authorized
//!   (the service's policy), refusals audited;
//! - [`service`]: the [`Service`] trait every service implements and the `main` they share.
//!
//! Architecture invariant: the kit knows no domain and no database. Services plug in by handing
//! over an [`HttpApi`], optional [`GrpcApi`], their [`Readiness`] checks and [`Metrics`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod client_ip;
pub mod contract;
pub mod extract;
pub mod framing;
pub mod front;
pub mod grpc_guard;
pub mod grpc_trace;
pub mod guard;
pub mod health;
pub mod middleware;
pub mod number;
pub mod pagination;
pub mod problem;
pub mod router;
pub mod serve;
pub mod server;
pub mod service;
pub mod text;
pub mod tls;

pub use audit::Auditor;
pub use client_ip::TrustedProxies;
pub use extract::{
    FieldErrors, IdempotencyKey, InvalidIdempotencyKey, Json, Path, Query, fingerprint,
    idempotent_response,
};
pub use grpc_guard::{CallerAuthenticator, GrpcAccess, GrpcCaller};
pub use health::{FnCheck, HealthCheck, Readiness, ReadinessReport};
pub use middleware::RouteLabel;

pub use pagination::{Page, PageQuery, PageRequest};
pub use platform_metrics::Metrics;
pub use problem::{PROBLEM_JSON, Problem};
pub use router::HttpApi;
pub use server::{
    GrpcApi, Server, ServerConfig, ServerDefaults, ServerError, ServiceParts, shutdown_on_signal,
};
pub use service::{BoxError, Command, Service, run, run_main};
pub use tokio_util::sync::CancellationToken;
