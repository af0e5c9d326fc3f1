//! Accepting connections: one loop for every HTTP listener of the platform (plain or TLS, with
//! a front or without) and the incoming stream of every gRPC listener.
//!
//! Each listener holds a fixed number of connection slots (`MAX_CONNECTIONS`, shared by the
//! sockets of a thread-per-core port). A connection past the limit is refused at once: plain
//! HTTP gets a `503` problem and is closed; TLS and gRPC connections are closed (there is no
//! cheap way to speak their protocol). Each accepted connection is read through a
//! [`Guard`] (strict framing, header-read and idle clocks) before hyper, or a front, sees it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::framing::Refusal;
use crate::front::{ClientStream, Connection, Fallback, Front, Stopping};
use crate::guard::{Guard, GuardConfig, Protocol};

/// The certificate being served, swapped in place when it is reloaded.
#[derive(Clone)]
pub struct LiveTls(Arc<RwLock<Arc<rustls::ServerConfig>>>);

impl LiveTls {
    /// Serves `config` until it is replaced.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Self(Arc::new(RwLock::new(config)))
    }

    /// Serves `config` from the next handshake on; connections already open keep theirs.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        if let Ok(mut current) = self.0.write() {
            *current = config;
        }
    }

    fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        let current = self.0.read().ok()?;
        Some(tokio_rustls::TlsAcceptor::from(Arc::clone(&current)))
    }
}

/// What every connection of one HTTP listener shares.
pub(crate) struct HttpListener {
    pub router: Router,
    /// Takes plain-HTTP connections before hyper (the gateway's fast path).
    pub front: Option<Arc<dyn Front>>,
    /// Serve HTTPS with this certificate.
    pub tls: Option<LiveTls>,
    pub guard: GuardConfig,
    /// `MAX_CONNECTIONS` slots (shared by every socket of a thread-per-core port).
    pub slots: Arc<Semaphore>,
    /// Connections being told "too many connections" at once: past this, a refused
    /// connection is just closed (a flood must not turn into as many tasks).
    pub refusals: Arc<Semaphore>,
    pub shutdown: CancellationToken,
}

/// Accepts until shutdown, serving each connection in its own task; then waits for them to
/// finish (the server's shutdown timeout bounds the wait).
pub(crate) async fn serve_http(
    listener: TcpListener,
    shared: Arc<HttpListener>,
) -> std::io::Result<()> {
    let fallback = Fallback::new(
        shared.router.clone(),
        shared.shutdown.clone(),
        shared.guard,
        shared.front.clone(),
    );
    let connections = tokio_util::task::TaskTracker::new();
    let stopping = Stopping::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: back off rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Responses are small and latency matters: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let Ok(slot) = Arc::clone(&shared.slots).try_acquire_owned() else {
            if let Ok(refusing) = Arc::clone(&shared.refusals).try_acquire_owned() {
                tokio::spawn(refuse(stream, shared.tls.is_none(), refusing));
            }
            continue;
        };
        connections.spawn(serve_connection(
            Arc::clone(&shared),
            fallback.clone(),
            stream,
            peer,
            stopping.clone(),
            slot,
        ));
    }
    stopping.set();
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(
    shared: Arc<HttpListener>,
    fallback: Fallback,
    stream: TcpStream,
    peer: SocketAddr,
    stopping: Stopping,
    _slot: OwnedSemaphorePermit,
) {
    let Some(tls) = &shared.tls else {
        let stream = ClientStream::Plain(stream);
        match &shared.front {
            Some(front) => {
                let connection = front_connection(&shared, stream, peer, fallback, stopping);
                Arc::clone(front).serve(connection).await;
            }
            None => fallback.serve(stream, peer, Bytes::new()).await,
        }
        return;
    };
    let Some(acceptor) = tls.acceptor() else {
        return;
    };
    // The handshake is the first thing the client must send: the head's clock applies.
    let handshake =
        tokio::time::timeout(shared.guard.header_read_timeout, acceptor.accept(stream)).await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    match (stream.get_ref().1.alpn_protocol(), &shared.front) {
        (Some(b"h2"), _) => {
            fallback
                .serve_io(stream, peer, Bytes::new(), Protocol::Http2, true)
                .await;
        }
        // HTTP/1 over TLS takes the same front as plain HTTP, on the decrypted stream.
        (_, Some(front)) => {
            let stream = ClientStream::Tls(Box::new(stream));
            let connection = front_connection(&shared, stream, peer, fallback, stopping);
            Arc::clone(front).serve(connection).await;
        }
        (_, None) => {
            fallback
                .serve_io(stream, peer, Bytes::new(), Protocol::Auto, true)
                .await;
        }
    }
}

fn front_connection(
    shared: &HttpListener,
    stream: ClientStream,
    peer: SocketAddr,
    fallback: Fallback,
    stopping: Stopping,
) -> Connection {
    Connection {
        stream,
        peer,
        fallback,
        shutdown: shared.shutdown.clone(),
        stopping,
        limits: shared.guard,
    }
}

/// Connections past the limit being answered at once, per listener.
pub(crate) const MAX_REFUSING: usize = 256;

/// Answers a connection over the limit: a `503` problem for plain HTTP, then close. The
/// request is read briefly, unparsed, so that closing does not reset the connection under
/// the answer.
async fn refuse(mut stream: TcpStream, plain: bool, _refusing: OwnedSemaphorePermit) {
    tracing::debug!("connection refused: MAX_CONNECTIONS reached");
    if !plain {
        return;
    }
    let response = Refusal {
        status: 503,
        reason: "The server has too many open connections; try again shortly.",
    }
    .response();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&response).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// A gRPC connection: the socket under a [`Guard`] (its first bytes must arrive within the
/// header-read timeout), holding its listener slot while it lives.
pub struct GrpcConnection {
    io: Guard<TcpStream>,
    info: tonic::transport::server::TcpConnectInfo,
    _slot: OwnedSemaphorePermit,
}

impl GrpcConnection {
    /// Who connected.
    pub fn peer(&self) -> SocketAddr {
        self.info
            .remote_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

impl tonic::transport::server::Connected for GrpcConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for GrpcConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connections of a gRPC listener, within its slots; connections past the limit are
/// closed as they come.
pub(crate) fn grpc_incoming(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    guard: GuardConfig,
) -> impl Stream<Item = std::io::Result<GrpcConnection>> {
    // Channels between services are idle between calls by design: no idle clock.
    let guard = GuardConfig {
        idle_timeout: None,
        ..guard
    };
    futures::stream::unfold((listener, slots), move |(listener, slots)| async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!(%peer, "gRPC connection refused: MAX_CONNECTIONS reached");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let info = tonic::transport::server::TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(peer),
            };
            let connection = GrpcConnection {
                io: Guard::new(stream, guard, Protocol::Opaque),
                info,
                _slot: slot,
            };
            return Some((Ok(connection), (listener, slots)));
        }
    })
}
