//! Binding, serving and stopping: HTTP and gRPC for one service in one call.
//!
//! [`Server::bind`] opens both listeners (port 0 picks a free port, which tests use), so the
//! caller learns the real addresses before serving starts. [`Server::run`] serves until the
//! [`CancellationToken`](crate::CancellationToken) fires, then stops accepting, lets in-flight
//! requests finish for at most `SHUTDOWN_TIMEOUT`, and returns; the caller then closes its pools.

mod bind;
mod config;
mod run;
mod signal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use platform_audit::Audit;
use platform_metrics::Metrics;
use tokio::net::TcpListener;

use crate::front::Front;
use crate::grpc_guard::{CallerAuthenticator, GrpcAccess, MutualTls};
use crate::health::Readiness;
use crate::router::HttpApi;
use crate::tls::TlsConfig;

pub use config::{ConnectionLimits, ServerConfig, ServerDefaults};
pub use signal::shutdown_on_signal;

/// A service's gRPC side: its servers plus the descriptor set that reflection serves.
pub struct GrpcApi {
    /// The service's tonic servers.
    pub routes: tonic::service::Routes,
    /// Encoded `FileDescriptorSet` of the service's protos, for reflection.
    pub file_descriptor_set: &'static [u8],
    /// Fully qualified service names, reported as SERVING by the health service.
    pub services: Vec<&'static str>,
    /// Who is calling (a service credential on every call; see [`crate::grpc_guard`]).
    pub authenticator: Arc<dyn CallerAuthenticator>,
    /// Which callers may call which method; methods it does not name are refused.
    pub access: GrpcAccess,
}

/// Everything a service hands the kit.
pub struct ServiceParts {
    /// The service's routes and their OpenAPI document.
    pub http: HttpApi,
    /// The gRPC side; `None` opens no gRPC listener.
    pub grpc: Option<GrpcApi>,
    /// The checks `/ready` runs.
    pub readiness: Readiness,
    /// The service's registry: request metrics go to it, `/metrics` renders it.
    pub metrics: Metrics,
    /// The service's audit trail: every request carries it (see [`crate::audit::Auditor`]).
    pub audit: Audit,
}

/// Failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be opened (a port already taken, say).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the system refused it.
        source: std::io::Error,
    },
    /// The service's descriptor set does not make a reflection service.
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(String),
    /// The certificate or key could not be loaded: start-up stops rather than serve without.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A listener failed while serving, or an HTTP thread could not start or ended abnormally.
    #[error("server failed: {0}")]
    Serve(String),
}

/// Where HTTP connections are accepted.
enum Listeners {
    /// One socket, served on the process's runtime.
    Shared(TcpListener),
    /// One socket per HTTP thread, all on one port (`SO_REUSEPORT`).
    PerCore(Vec<std::net::TcpListener>),
}

/// A bound, not yet serving, service.
pub struct Server {
    name: String,
    http_listener: Listeners,
    router: Router,
    grpc: Option<(TcpListener, tonic::service::Routes, Option<MutualTls>)>,
    /// `METRICS_PORT`: `/metrics` alone, on its own listener.
    metrics_listener: Option<(TcpListener, Router)>,
    shutdown_timeout: Duration,
    /// Request timeout, also the deadline of a gRPC call.
    request_timeout: Duration,
    connections: ConnectionLimits,
    metrics: Metrics,
    /// The certificate being served and where it comes from, when serving HTTPS.
    tls: Option<(TlsConfig, Arc<rustls::ServerConfig>)>,
    /// Takes plain-HTTP connections before hyper does (the gateway's fast path).
    front: Option<Arc<dyn Front>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("http_addr", &self.http_addr())
            .finish_non_exhaustive()
    }
}
