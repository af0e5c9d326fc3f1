//! Binding: the listeners opened before serving starts (so the caller learns the real
//! addresses, port 0 included) and what they will serve, the router and the guarded gRPC
//! routes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use platform_audit::Audit;
use tokio::net::TcpListener;

use super::{GrpcApi, Listeners, Server, ServerConfig, ServerError, ServiceParts};
use crate::front::Front;
use crate::grpc_guard::MutualTls;
use crate::router;

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

    /// Where HTTP is served (the real port when `PORT` was 0), one port for every HTTP
    /// thread; `0.0.0.0:0` if the socket cannot say.
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

    /// Where gRPC is served; `None` for a service without a gRPC side.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// Where `/metrics` is served when `METRICS_PORT` moved it off the main listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
    }
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
