//! A hook that takes plain-HTTP connections before hyper does: the gateway's HTTP/1 fast path.
//!
//! A [`Front`] gets every accepted connection. It serves what it knows how to serve and hands
//! the connection, with the bytes it has already read, to the [`Fallback`] (hyper with the full
//! router and middleware) as soon as it meets anything else: HTTP/2, upgrades, chunked request
//! bodies, the gateway's own pages. Nothing is lost in the hand-over, because the fallback
//! reads the returned bytes first ([`Prefixed`]).
//!
//! HTTPS connections reach the front after the TLS handshake, unless the client chose HTTP/2
//! by ALPN; connections without a front go to the fallback (see [`crate::serve`]). HTTP/2 (by
//! ALPN or with prior knowledge) is framed by hyper, which offers the front each request
//! before the router ([`Front::serve_h2`]). Either way hyper only ever reads through a
//! [`Guard`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::{Buf, Bytes};
use futures::FutureExt;
use futures::future::Either;

use crate::guard::{Guard, GuardConfig, Protocol};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::Service as _;

/// A boxed connection future.
pub type ConnectionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A client's connection as the front reads it: plain TCP, or TLS after the handshake.
/// An enum rather than a boxed trait object, so the plain path pays nothing for TLS.
pub enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, the handshake done (boxed: the TLS state is large).
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ClientStream {
    /// Whether the connection came over TLS (`X-Forwarded-Proto: https`, HSTS).
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(stream) => stream.is_write_vectored(),
            ClientStream::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

/// An accepted connection and what its front needs to serve it.
pub struct Connection {
    /// The client's connection, nothing read from it yet.
    pub stream: ClientStream,
    /// The address the connection comes from (a proxy's, when there is one in front).
    pub peer: SocketAddr,
    /// Serves the connection with hyper and the router, when the front will not.
    pub fallback: Fallback,
    /// Fires when the server stops: an idle connection closes at once.
    pub shutdown: CancellationToken,
    /// Set when the server stops: a busy connection closes after its request in flight.
    pub stopping: Stopping,
    /// The listener's head limits and clocks, which the front enforces on what it reads.
    pub limits: GuardConfig,
}

/// Whether the server is stopping: a flag as cheap to read per request as it gets (unlike
/// [`CancellationToken::is_cancelled`], which takes a lock).
#[derive(Clone, Debug, Default)]
pub struct Stopping(Arc<std::sync::atomic::AtomicBool>);

impl Stopping {
    /// The server is stopping: finish the request in flight, then close.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A boxed response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = axum::response::Response> + Send>>;

/// An HTTP/2 request as hyper hands it over.
pub type H2Request = hyper::Request<hyper::body::Incoming>;

/// Serves accepted HTTP/1 connections ahead of hyper, and HTTP/2 requests ahead of the router.
pub trait Front: Send + Sync + 'static {
    /// Serves `connection` to its end, or hands it over with the bytes already read to
    /// [`Connection::fallback`] at the first thing the front does not serve.
    fn serve(self: Arc<Self>, connection: Connection) -> ConnectionFuture;

    /// Answers one HTTP/2 request (hyper keeps the framing) or gives it back for the
    /// router. `secure`: the connection is TLS.
    fn serve_h2(
        self: Arc<Self>,
        request: H2Request,
        peer: SocketAddr,
        secure: bool,
    ) -> Result<ResponseFuture, H2Request> {
        let _ = (peer, secure);
        Err(request)
    }
}

/// Marks a request that came over TLS (the pipeline adds `Strict-Transport-Security`).
#[derive(Debug, Clone, Copy)]
pub struct Secure;

/// The router served by hyper (HTTP/1.1 and HTTP/2) through a [`Guard`]: every connection
/// no front takes, and those a front hands back.
#[derive(Clone)]
pub struct Fallback {
    router: Router,
    shutdown: CancellationToken,
    guard: GuardConfig,
    /// Offered every HTTP/2 request before the router.
    front: Option<Arc<dyn Front>>,
}

impl Fallback {
    pub(crate) fn new(
        router: Router,
        shutdown: CancellationToken,
        guard: GuardConfig,
        front: Option<Arc<dyn Front>>,
    ) -> Self {
        Self {
            router,
            shutdown,
            guard,
            front,
        }
    }

    /// Serves `stream` after replaying `read`, the bytes the front already took from it.
    pub async fn serve(self, stream: ClientStream, peer: SocketAddr, read: Bytes) {
        match stream {
            ClientStream::Plain(stream) => {
                self.serve_io(stream, peer, read, Protocol::Auto, false)
                    .await;
            }
            ClientStream::Tls(stream) => {
                self.serve_io(*stream, peer, read, Protocol::Auto, true)
                    .await;
            }
        }
    }

    /// Serves any stream (a TLS one, `secure`) as [`Fallback::serve`] does.
    pub async fn serve_io<S>(
        self,
        stream: S,
        peer: SocketAddr,
        read: Bytes,
        protocol: Protocol,
        secure: bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router;
        let front = self.front;
        let service = hyper::service::service_fn(move |request: H2Request| {
            let request = match &front {
                Some(front) if request.version() == http::Version::HTTP_2 => {
                    match Arc::clone(front).serve_h2(request, peer, secure) {
                        Ok(answer) => return Either::Left(answer.map(Ok)),
                        Err(request) => request,
                    }
                }
                _ => request,
            };
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            if secure {
                request.extensions_mut().insert(Secure);
            }
            Either::Right(router.clone().call(request))
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // A client that half-closes (or a refused pipelined head, which ends the read side)
        // still gets the answers to what it sent before.
        builder.http1().half_close(true);
        let io = TokioIo::new(Guard::with_prefix(stream, self.guard, protocol, &read));
        // No upgrades: nothing on the platform switches protocols, and a connection that did
        // would escape the guard's framing.
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            _ = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// A stream whose first reads return `prefix`.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn prefixed_streams_replay_the_prefix_first() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let mut io = Prefixed {
            prefix: Bytes::from_static(b"GET / HTTP/1.1\r\n"),
            inner: &mut server,
        };
        let mut read = Vec::new();
        io.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"GET / HTTP/1.1\r\n");
    }
}
