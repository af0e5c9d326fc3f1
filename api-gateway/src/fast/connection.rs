//! An HTTP/1 client connection on the fast path: requests read and parsed off the socket under
//! the head and idle deadlines, each either taken here, handed to hyper with the bytes already
//! read, or refused outright.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::{Buf, BytesMut};
use platform_http::framing::{self, Head, Refusal};
use platform_http::front::{ClientStream, Connection};
use platform_http::guard::GuardConfig;
use platform_proxy::h1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Body, FastPath, Prepared, READ_LIMIT, RequestHead};

struct Http1Head<'h, 'b>(&'h httparse::Request<'h, 'b>);

impl RequestHead for Http1Head<'_, '_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    fn fields(&self) -> Vec<(&str, &[u8])> {
        self.0.headers.iter().map(|h| (h.name, h.value)).collect()
    }

    fn write_start(&self, out: &mut Vec<u8>, skip: impl Fn(&str) -> bool) {
        h1::write_request_start(out, self.0, skip);
    }
}

enum Next<'g> {
    Ready(Box<Prepared<'g>>),
    /// More bytes needed: the head is incomplete (`false`) or its body is (`true`).
    Read {
        body: bool,
    },
    Fallback,
    /// Refused before anything acted on it; the connection closes after the answer.
    Refuse(Refusal),
}

impl FastPath {
    pub(super) async fn connection(self: Arc<Self>, connection: Connection) {
        let Connection {
            mut stream,
            peer,
            fallback,
            shutdown,
            stopping,
            limits,
        } = connection;
        let mut buf = BytesMut::with_capacity(2 * 1024);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let connected = Instant::now();
        // One idle deadline per connection, moved on at most once a second: a timer per
        // request would cost more than the whole rest of the wait. The first request has the
        // head's deadline from the start: a connection that sends nothing is not kept.
        let idle_timeout = limits.idle_timeout.unwrap_or(Duration::from_secs(60));
        let mut idle_from = connected;
        let idle = tokio::time::sleep(limits.header_read_timeout);
        tokio::pin!(idle);
        let mut first = true;
        loop {
            // When the request that has started arriving must be complete: its head within
            // the header-read timeout of its first byte (of the connection's start, for the
            // first), so a client trickling bytes is cut off; its body within the idle
            // timeout of the head.
            let mut deadline: Option<Instant> =
                first.then(|| connected + limits.header_read_timeout);
            let mut reading_body = false;
            let prepared = loop {
                match self.prepare(&buf, peer.ip(), &limits, stream.is_tls()) {
                    Next::Ready(prepared) => break prepared,
                    Next::Fallback => return fallback.serve(stream, peer, buf.freeze()).await,
                    Next::Refuse(refusal) => return refuse(&mut stream, refusal).await,
                    Next::Read { body } => {
                        if body && !reading_body {
                            reading_body = true;
                            deadline = Some(Instant::now() + idle_timeout);
                        }
                    }
                }
                if buf.len() >= READ_LIMIT {
                    return fallback.serve(stream, peer, buf.freeze()).await;
                }
                let read = if buf.is_empty() {
                    // Between requests: idle, so a stop closes the connection now.
                    tokio::select! {
                        biased;
                        _ = &mut cancelled => return,
                        () = &mut idle => return,
                        read = stream.read_buf(&mut buf) => Ok(read),
                    }
                } else {
                    let until = *deadline
                        .get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
                    match tokio::time::timeout_at(until.into(), stream.read_buf(&mut buf)).await {
                        Err(_) if !reading_body => {
                            return refuse(
                                &mut stream,
                                Refusal {
                                    status: 408,
                                    reason: "The request head did not arrive in time.",
                                },
                            )
                            .await;
                        }
                        read => read,
                    }
                };
                match read {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            };
            let started = Instant::now();
            let consumed = prepared.head_len + prepared.body_len;
            let body = &buf[prepared.head_len..consumed];
            let keep = self
                .exchange(*prepared, body, &mut stream, started, &stopping)
                .await;
            buf.advance(consumed);
            if !keep || stopping.is_set() {
                return;
            }
            let now = Instant::now();
            if first || now.saturating_duration_since(idle_from) > Duration::from_secs(1) {
                // Idleness starts after the answer (a long download or an event stream is
                // not idle time).
                first = false;
                idle_from = now;
                idle.as_mut().reset((now + idle_timeout).into());
            }
        }
    }

    /// Parses the request at the start of `buf` and decides whether the fast path takes it.
    fn prepare(&self, buf: &[u8], peer: IpAddr, limits: &GuardConfig, secure: bool) -> Next<'_> {
        let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
        let (head_len, request, framing) = match framing::parse_head(buf, &mut headers, limits.head)
        {
            Ok(Head::Complete {
                len,
                request,
                framing,
            }) => (len, request, framing),
            Ok(Head::Incomplete) => return Next::Read { body: false },
            // More fields than the fast path keeps: the guard in front of hyper checks them.
            Ok(Head::TooManyHeaders) => return Next::Fallback,
            Err(refusal) => return Next::Refuse(refusal),
        };
        let Some(plain) = h1::plain_request(&request, framing) else {
            return Next::Fallback;
        };
        let body_len = usize::try_from(plain.body_len).unwrap_or(usize::MAX);
        if body_len > self.gateway.max_body_bytes || body_len.saturating_add(head_len) > READ_LIMIT
        {
            return Next::Fallback;
        }
        let Ok(method) = Method::from_bytes(request.method.unwrap_or("").as_bytes()) else {
            return Next::Fallback;
        };
        let target = request.path.unwrap_or("/");
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let Some(route) = self.gateway.routes.find(&method, path) else {
            return Next::Fallback;
        };
        let head = Http1Head(&request);
        if self.cors && head.header("origin").is_some() {
            return Next::Fallback;
        }
        if buf.len() < head_len + body_len {
            return Next::Read { body: true };
        }
        Next::Ready(Box::new(self.admit_head(
            route,
            method,
            &head,
            Body {
                head_len,
                len: body_len,
                close: plain.close,
            },
            peer,
            secure,
        )))
    }
}

/// Answers a request refused before anything acted on it, and ends the connection. What the
/// client still sends is read briefly (and dropped), so that closing does not reset the
/// connection under the answer.
async fn refuse(stream: &mut ClientStream, refusal: Refusal) {
    tracing::debug!(%refusal, "request refused on the fast path");
    if stream.write_all(&refusal.response()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}
