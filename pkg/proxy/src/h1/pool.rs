//! The per-thread pool of keep-alive upstream connections: the request's own task drives its
//! connection, so no connection task and no channel, and a connection never changes thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::UpstreamConnection;
use crate::{ProxyError, Upstream};

/// An idle keep-alive connection to an upstream.
struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// Idle connections per upstream address, per thread (the request's task drives its
/// connection, so a connection never changes thread).
struct ThreadPool {
    idle: HashMap<(u64, u64), Vec<Idle>>,
}

thread_local! {
    static POOL: RefCell<ThreadPool> = RefCell::new(ThreadPool { idle: HashMap::new() });
}

/// Connections idle longer than this are dropped.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// A stateless proxy client that opens, reuses and pools [`UpstreamConnection`]s.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// Tells pools of different proxies apart.
    pub id: u64,
    /// The TCP connect deadline (`Unreachable` past it).
    pub connect_timeout: Duration,
    /// Idle connections kept per upstream on each thread; more are closed on release.
    pub max_idle: usize,
}

impl Client {
    /// A pooled connection to `upstream`, or a new one.
    pub async fn connect(&self, upstream: &Upstream) -> Result<UpstreamConnection, ProxyError> {
        let key = (self.id, upstream.pool_key);
        let now = Instant::now();
        loop {
            let idle = POOL.with(|pool| {
                pool.borrow_mut()
                    .idle
                    .get_mut(&key)
                    .and_then(|list| list.pop())
            });
            let Some(idle) = idle else { break };
            let age = now.saturating_duration_since(idle.since);
            if age > MAX_IDLE || has_input(&idle.stream) {
                continue;
            }
            return Ok(UpstreamConnection {
                stream: idle.stream,
                buf: BytesMut::with_capacity(2048),
                reused: true,
                key,
            });
        }
        self.connect_new(upstream, key).await
    }

    /// A new connection to `upstream`, bypassing the pool (after a stale pooled one failed).
    pub async fn connect_fresh(
        &self,
        upstream: &Upstream,
    ) -> Result<UpstreamConnection, ProxyError> {
        self.connect_new(upstream, (self.id, upstream.pool_key))
            .await
    }

    async fn connect_new(
        &self,
        upstream: &Upstream,
        key: (u64, u64),
    ) -> Result<UpstreamConnection, ProxyError> {
        let unreachable = |reason: String| ProxyError::Unreachable {
            service: upstream.service.clone(),
            reason,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(upstream.authority.as_str()),
        )
        .await
        .map_err(|_| unreachable("connect timed out".to_owned()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(UpstreamConnection {
            stream,
            buf: BytesMut::with_capacity(2048),
            reused: false,
            key,
        })
    }

    /// Returns a connection whose exchange ended cleanly to this thread's pool: only when
    /// its response ended exactly where its framing said, with nothing after it (bytes after
    /// a response would be taken as the answer to the next client's request).
    pub fn release(&self, connection: UpstreamConnection) {
        if !connection.buf.is_empty() || has_input(&connection.stream) {
            return;
        }
        let max = self.max_idle;
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.idle.entry(connection.key).or_default();
            if list.len() < max {
                list.push(Idle {
                    stream: connection.stream,
                    since: Instant::now(),
                });
            }
        });
    }
}

/// Whether an idle connection still looks open: nothing to read, no EOF, no error.
fn alive(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Whether a pooled connection has something to read: an EOF, an error, or bytes nobody asked
/// for (an answer to no request would be taken as the next client's answer). Asked of the
/// reactor first, which knows without a system call when nothing has arrived since the last
/// read; only when it may have, a non-blocking read settles it.
fn has_input(stream: &TcpStream) -> bool {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut context) {
        std::task::Poll::Pending => false,
        std::task::Poll::Ready(_) => !alive(stream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread keeps every connection that its requests in flight used: one released past
    /// the cap is closed and has to be opened again by the next request (at 256 clients and a
    /// cap of 64, about 1,900 new upstream connections a second).
    #[tokio::test(flavor = "current_thread")]
    async fn the_pool_keeps_as_many_connections_as_were_in_flight() {
        const IN_FLIGHT: usize = 256;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&accepted);
        let server = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                open.push(stream);
            }
        });
        let upstream = Upstream::parse("svc", &format!("http://127.0.0.1:{port}")).unwrap();
        let config = crate::ProxyConfig::default();
        let client = Client {
            id: 7,
            connect_timeout: config.connect_timeout,
            max_idle: config.max_idle_per_host,
        };
        for round in 0..3 {
            let connections =
                futures::future::join_all((0..IN_FLIGHT).map(|_| client.connect(&upstream))).await;
            let reused = connections
                .iter()
                .filter(|c| c.as_ref().is_ok_and(|c| c.reused))
                .count();
            if round > 0 {
                assert_eq!(reused, IN_FLIGHT, "round {round}");
            }
            for connection in connections {
                client.release(connection.unwrap());
            }
        }
        // Let the server take whatever the kernel has queued for it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::Relaxed),
            IN_FLIGHT,
            "connections opened"
        );
        server.abort();
    }
}
