//! Binding, serving and stopping: HTTP and gRPC for one service in one call.
//!
//! [`Server::bind`] opens both listeners (port 0 picks a free port, which tests use), so the
//! caller learns the real addresses before serving starts. [`Server::run`] serves until the
//! [`CancellationToken`] fires, then stops accepting, lets in-flight requests finish for at most
//! `SHUTDOWN_TIMEOUT`, and returns; the caller then closes its pools.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use platform_audit::Audit;
use platform_config::{Env, Environment};
use platform_metrics::Metrics;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::client_ip::{INTERNAL_NETWORKS, TrustedProxies};
use crate::framing::{HeadLimits, MAX_REQUEST_LINE};
use crate::front::Front;
use crate::grpc_guard::{CallerAuthenticator, GrpcAccess, MutualTls};
use crate::guard::GuardConfig;
use crate::health::Readiness;
use crate::serve::{HttpListener, LiveTls, MAX_REFUSING, grpc_incoming, serve_http};
use crate::tls::TlsConfig;
use std::sync::Arc;

use crate::router::{self, HttpApi, RequestLimits};

/// The settings every server shares.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `SERVICE_NAME`: the `service` label of logs and metrics.
    pub service_name: String,
    /// `ENVIRONMENT`: production turns insecure defaults into start-up errors.
    pub environment: Environment,
    /// `HOST`: the address to listen on.
    pub host: IpAddr,
    /// `PORT`: the HTTP port (0 picks a free one).
    pub port: u16,
    /// `GRPC_PORT`: the gRPC port of services that have one (0 picks a free one).
    pub grpc_port: u16,
    /// `REQUEST_TIMEOUT`: deadline of one request.
    pub request_timeout: Duration,
    /// `MAX_BODY_BYTES`: the largest request body accepted.
    pub max_body_bytes: usize,
    /// `SHUTDOWN_TIMEOUT`: how long in-flight requests may run after a stop signal.
    pub shutdown_timeout: Duration,
    /// `TLS_CERT_FILE` / `TLS_KEY_FILE`: serve HTTPS (HTTP/1.1 and HTTP/2) instead of HTTP.
    pub tls: Option<TlsConfig>,
    /// `HTTP_THREADS`: 0 serves HTTP on the process's shared runtime; n > 0 serves it on n
    /// threads, each with its own single-threaded runtime and its own listening socket
    /// (`SO_REUSEPORT`), nginx-style: a connection never leaves its thread, so requests cost no
    /// cross-thread wake-ups, and each TLS handshake runs on the thread that accepted it. The
    /// gateway's default is one per CPU.
    pub http_threads: usize,
    /// The socket limits every listener enforces.
    pub connections: ConnectionLimits,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-For` / `Forwarded` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `METRICS_PORT`: serve `/metrics` on its own listener (same host) instead of the main
    /// one, so that it can stay internal while the API is public.
    pub metrics_port: Option<u16>,
    /// `METRICS_FEDERATE`: `/metrics` serves every service's registry in this process, not
    /// only this one's (`platform up` turns it on for the gateway, so that one scrape of
    /// `:8080/metrics` covers the whole platform).
    pub metrics_federate: bool,
    /// `GRPC_REFLECTION`: serve gRPC server reflection (off: it tells a caller every method).
    pub grpc_reflection: bool,
}

/// How long a socket may take and how many there may be, per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `HEADER_READ_TIMEOUT`: a request head (and a TLS handshake) must arrive within this
    /// once its first byte has (a client trickling bytes is cut off).
    pub header_read_timeout: Duration,
    /// `IDLE_TIMEOUT`: a keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// `MAX_CONNECTIONS`: open connections per listener; the next one is refused at once
    /// (HTTP: a 503 problem and close; gRPC: closed).
    pub max_connections: usize,
    /// `MAX_HEADER_BYTES`: the largest request head (431 beyond).
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl ConnectionLimits {
    pub fn from_env(env: &mut Env) -> Self {
        let defaults = Self::default();
        let header_read_timeout = env.or("HEADER_READ_TIMEOUT", defaults.header_read_timeout);
        let idle_timeout = env.or("IDLE_TIMEOUT", defaults.idle_timeout);
        if header_read_timeout.is_zero() {
            env.report("HEADER_READ_TIMEOUT", "a positive duration such as 10s");
        }
        if idle_timeout.is_zero() {
            env.report("IDLE_TIMEOUT", "a positive duration such as 60s");
        }
        Self {
            header_read_timeout,
            idle_timeout,
            max_connections: env.in_range(
                "MAX_CONNECTIONS",
                defaults.max_connections,
                1..=1_000_000,
            ),
            max_header_bytes: env.in_range(
                "MAX_HEADER_BYTES",
                defaults.max_header_bytes,
                1024..=1024 * 1024,
            ),
        }
    }

    /// What the guard of every connection enforces.
    pub fn guard(&self) -> GuardConfig {
        GuardConfig {
            head: HeadLimits {
                max_head_bytes: self.max_header_bytes,
                max_request_line: MAX_REQUEST_LINE.min(self.max_header_bytes),
            },
            header_read_timeout: self.header_read_timeout,
            idle_timeout: Some(self.idle_timeout),
        }
    }
}

/// A service's own defaults, overridden by the environment.
#[derive(Debug, Clone, Copy)]
pub struct ServerDefaults {
    pub name: &'static str,
    pub port: u16,
    pub grpc_port: u16,
    /// The gateway's is longer than its upstream timeout, so a slow upstream gets the precise
    /// 504 rather than the generic deadline.
    pub request_timeout: Duration,
    /// Serve HTTP thread-per-core by default (the gateway: pure I/O, no blocking work).
    pub per_core: bool,
    /// Faces clients (the gateway): listens on every interface and trusts no proxy by default.
    /// Internal services listen on loopback and trust the internal networks' proxies.
    pub edge: bool,
}

impl ServerConfig {
    pub fn from_env(env: &mut Env, defaults: ServerDefaults) -> Self {
        Self {
            service_name: env.or("SERVICE_NAME", defaults.name.to_owned()),
            environment: env.or("ENVIRONMENT", Environment::Development),
            host: env.or(
                "HOST",
                IpAddr::V4(if defaults.edge {
                    Ipv4Addr::UNSPECIFIED
                } else {
                    Ipv4Addr::LOCALHOST
                }),
            ),
            port: env.or("PORT", defaults.port),
            grpc_port: env.or("GRPC_PORT", defaults.grpc_port),
            request_timeout: env.or("REQUEST_TIMEOUT", defaults.request_timeout),
            max_body_bytes: env.in_range("MAX_BODY_BYTES", 1024 * 1024, 1..=1024 * 1024 * 1024),
            shutdown_timeout: env.or("SHUTDOWN_TIMEOUT", Duration::from_secs(30)),
            tls: TlsConfig::from_env(env),
            http_threads: env.in_range(
                "HTTP_THREADS",
                if defaults.per_core {
                    available_cores()
                } else {
                    0
                },
                0..=1024,
            ),
            connections: ConnectionLimits::from_env(env),
            trusted_proxies: TrustedProxies::from_env(
                env,
                if defaults.edge { "" } else { INTERNAL_NETWORKS },
            ),
            metrics_port: env.optional("METRICS_PORT"),
            metrics_federate: env.or("METRICS_FEDERATE", false),
            grpc_reflection: env.or("GRPC_REFLECTION", false),
        }
    }

    /// A configuration for tests: loopback, free ports, short timeouts.
    pub fn for_tests(name: &str) -> Self {
        Self {
            service_name: name.to_owned(),
            environment: Environment::Test,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            grpc_port: 0,
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            shutdown_timeout: Duration::from_secs(5),
            tls: None,
            http_threads: 0,
            connections: ConnectionLimits::default(),
            trusted_proxies: TrustedProxies::default(),
            metrics_port: None,
            metrics_federate: false,
            grpc_reflection: false,
        }
    }

    fn limits(&self) -> RequestLimits {
        RequestLimits {
            timeout: self.request_timeout,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

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
    pub http: HttpApi,
    pub grpc: Option<GrpcApi>,
    pub readiness: Readiness,
    pub metrics: Metrics,
    /// The service's audit trail: every request carries it (see [`crate::audit::Auditor`]).
    pub audit: Audit,
}

/// Failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(String),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
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

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A listening socket with `SO_REUSEPORT`, so that several can share one port.
fn listen_shared(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(BACKLOG).unwrap_or(1024))?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    bind().map_err(|source| ServerError::Bind { addr, source })
}

/// Connections the kernel queues on a listening socket until they are accepted. Past it, a
/// connecting client's handshake is dropped and retried a second later: tokio's default
/// (128) turned a burst of a few hundred connections into one-second stalls.
const BACKLOG: u32 = 4096;

async fn listen(host: IpAddr, port: u16) -> Result<TcpListener, ServerError> {
    let addr = SocketAddr::new(host, port);
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    bind().map_err(|source| ServerError::Bind { addr, source })
}

impl Server {
    /// Builds the router and opens the listeners.
    pub async fn bind(config: &ServerConfig, parts: ServiceParts) -> Result<Self, ServerError> {
        let routers = router::finish(
            &config.service_name,
            parts.http,
            parts.readiness,
            parts.metrics.clone(),
            config.limits(),
            router::RequestContext {
                audit: parts.audit.clone(),
                trusted_proxies: config.trusted_proxies.clone(),
                separate_metrics: config.metrics_port.is_some(),
                federate_metrics: config.metrics_federate,
            },
        );
        // Load the certificate before binding: a bad one stops start-up.
        let tls = match &config.tls {
            Some(tls) => Some((tls.clone(), crate::tls::load(tls)?)),
            None => None,
        };
        let http_listener = if config.http_threads > 0 {
            let first = listen_shared(SocketAddr::new(config.host, config.port))?;
            // Port 0 picked a port: the others join that one.
            let addr = first.local_addr().map_err(|source| ServerError::Bind {
                addr: SocketAddr::new(config.host, config.port),
                source,
            })?;
            let mut all = vec![first];
            for _ in 1..config.http_threads {
                all.push(listen_shared(addr)?);
            }
            Listeners::PerCore(all)
        } else {
            Listeners::Shared(listen(config.host, config.port).await?)
        };
        let grpc = match parts.grpc {
            Some(api) => {
                let listener = listen(config.host, config.grpc_port).await?;
                let tls = api.authenticator.server_tls().map(|config_tls| MutualTls {
                    config: config_tls,
                    audit: parts.audit.clone(),
                    handshake_timeout: config.connections.header_read_timeout,
                });
                let routes = grpc_routes(
                    &config.service_name,
                    api,
                    config.grpc_reflection,
                    &parts.audit,
                )
                .await?;
                Some((listener, routes, tls))
            }
            None => None,
        };
        let metrics_listener = match (config.metrics_port, routers.metrics) {
            (Some(port), Some(router)) => Some((listen(config.host, port).await?, router)),
            _ => None,
        };
        Ok(Self {
            name: config.service_name.clone(),
            http_listener,
            router: routers.main,
            grpc,
            metrics_listener,
            shutdown_timeout: config.shutdown_timeout,
            request_timeout: config.request_timeout,
            connections: config.connections,
            metrics: parts.metrics,
            tls,
            front: None,
        })
    }

    /// Gives every plain-HTTP connection to `front` first (see [`crate::front`]).
    pub fn with_front(mut self, front: Arc<dyn Front>) -> Self {
        self.front = Some(front);
        self
    }

    pub fn http_addr(&self) -> SocketAddr {
        let addr = match &self.http_listener {
            Listeners::Shared(listener) => listener.local_addr(),
            Listeners::PerCore(listeners) => match listeners.first() {
                Some(listener) => listener.local_addr(),
                None => Err(std::io::ErrorKind::NotFound.into()),
            },
        };
        addr.unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// Where `/metrics` is served when `METRICS_PORT` moved it off the main listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown`, then waits for the service's background `tasks` (relays,
    /// consumers, sweepers: each stops on the same token), so none is cut off mid-write
    /// before the service closes its database.
    pub async fn run_with(
        self,
        shutdown: CancellationToken,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(), ServerError> {
        let served = self.run(shutdown).await;
        for task in tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a background task ended abnormally");
            }
        }
        served
    }

    /// Serves until `shutdown` fires, then drains in-flight requests for at most the
    /// configured shutdown timeout.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server {
            name,
            http_listener,
            router,
            grpc,
            metrics_listener,
            shutdown_timeout,
            request_timeout,
            connections,
            metrics,
            tls,
            front,
        } = self;

        // Histogram samples are drained into buckets here even if nobody scrapes /metrics.
        let upkeep = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tick.tick() => metrics.run_upkeep(),
                    }
                }
            }
        });

        let live_tls = match tls {
            Some((files, server_config)) => {
                let live = LiveTls::new(server_config);
                tokio::spawn(crate::tls::reload_until(
                    files,
                    live.clone(),
                    Duration::from_secs(2),
                    shutdown.clone(),
                ));
                Some(live)
            }
            None => None,
        };
        let shared = Arc::new(HttpListener {
            router,
            front,
            tls: live_tls,
            guard: connections.guard(),
            slots: Arc::new(Semaphore::new(connections.max_connections)),
            refusals: Arc::new(Semaphore::new(MAX_REFUSING)),
            shutdown: shutdown.clone(),
        });
        let http = async {
            match http_listener {
                Listeners::PerCore(listeners) => serve_per_core(&name, listeners, shared).await,
                Listeners::Shared(listener) => serve_http(listener, shared)
                    .await
                    .map_err(|e| ServerError::Serve(e.to_string())),
            }
        };
        let metrics_only = async {
            let Some((listener, router)) = metrics_listener else {
                return Ok(());
            };
            let shared = Arc::new(HttpListener {
                router,
                front: None,
                tls: None,
                guard: connections.guard(),
                slots: Arc::new(Semaphore::new(connections.max_connections)),
                refusals: Arc::new(Semaphore::new(MAX_REFUSING)),
                shutdown: shutdown.clone(),
            });
            serve_http(listener, shared)
                .await
                .map_err(|e| ServerError::Serve(e.to_string()))
        };
        let grpc = async {
            let Some((listener, routes, tls)) = grpc else {
                return Ok(());
            };
            let server = tonic::transport::Server::builder()
                .timeout(request_timeout)
                // Peers that vanish without closing are found and dropped.
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_routes(routes);
            let stop = shutdown.clone().cancelled_owned();
            let slots = Arc::new(Semaphore::new(connections.max_connections));
            let incoming = grpc_incoming(listener, slots, connections.guard());
            match tls {
                Some(tls) => {
                    server
                        .serve_with_incoming_shutdown(tls.incoming(incoming), stop)
                        .await
                }
                None => server.serve_with_incoming_shutdown(incoming, stop).await,
            }
            .map_err(|e| ServerError::Serve(e.to_string()))
        };
        let serving = async { tokio::try_join!(http, metrics_only, grpc).map(|_| ()) };
        let grace = async {
            shutdown.cancelled().await;
            tracing::info!(service = %name, "shutting down: draining in-flight requests");
            tokio::time::sleep(shutdown_timeout).await;
        };
        let result = tokio::select! {
            result = serving => result,
            _ = grace => {
                tracing::warn!(
                    service = %name,
                    timeout_s = shutdown_timeout.as_secs(),
                    "in-flight requests still running after the shutdown timeout; dropping them"
                );
                Ok(())
            }
        };
        upkeep.abort();
        tracing::info!(service = %name, "stopped");
        result
    }
}

/// Serves on one thread per listener, each with a single-threaded runtime; the port's
/// connection slots are shared by all of them.
async fn serve_per_core(
    name: &str,
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<HttpListener>,
) -> Result<(), ServerError> {
    let mut done = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let (finished, result) = tokio::sync::oneshot::channel();
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("{name}-http-{index}"))
            .spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            serve_http(TcpListener::from_std(listener)?, shared).await
                        })
                    });
                let _ = finished.send(outcome);
            })
            .map_err(|e| ServerError::Serve(e.to_string()))?;
        done.push(result);
    }
    for result in done {
        match result.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(ServerError::Serve(error.to_string())),
            Err(_) => {
                return Err(ServerError::Serve(
                    "an HTTP thread ended abnormally".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

/// The service's gRPC routes plus the standard health service, and reflection when asked for
/// (`GRPC_REFLECTION=true`: it lists every method to anyone who can connect), all behind the
/// guard that authenticates and authorizes every call but health and reflection.
async fn grpc_routes(
    service: &str,
    api: GrpcApi,
    reflect: bool,
    audit: &Audit,
) -> Result<tonic::service::Routes, ServerError> {
    let guard = Arc::new(crate::grpc_guard::Guard {
        service: Arc::from(service),
        authenticator: api.authenticator,
        access: api.access,
        audit: audit.clone(),
    });
    let guarded = |routes: tonic::service::Routes| {
        tonic::service::Routes::from(routes.into_axum_router().layer(
            axum::middleware::from_fn_with_state(guard, crate::grpc_guard::guard),
        ))
    };
    let (reporter, health_service) = tonic_health::server::health_reporter();
    for service in &api.services {
        reporter
            .set_service_status(*service, tonic_health::ServingStatus::Serving)
            .await;
    }
    // The empty name is the server as a whole.
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let routes = api.routes.add_service(health_service);
    if !reflect {
        return Ok(guarded(routes));
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(api.file_descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    Ok(guarded(routes.add_service(reflection)))
}

/// A token cancelled on SIGINT (Ctrl-C) or SIGTERM: the stop signal of every binary.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stop signal received");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_server_settings_are_all_reported() {
        let mut env = Env::from_pairs([
            ("PORT", "99999"),
            ("REQUEST_TIMEOUT", "forever"),
            ("HOST", "localhost:80"),
        ]);
        let _ = ServerConfig::from_env(
            &mut env,
            ServerDefaults {
                name: "x",
                port: 1,
                grpc_port: 2,
                request_timeout: Duration::from_secs(30),
                per_core: false,
                edge: false,
            },
        );
        let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        assert_eq!(vars, ["HOST", "PORT", "REQUEST_TIMEOUT"]);
    }
}
