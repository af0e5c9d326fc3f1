//! What stands between a client's socket and hyper on every HTTP listener of the platform:
//! strict framing, and the clocks a socket is read under.
//!
//! [`Guard`] wraps a connection's stream. On HTTP/1 it holds each request head back until the
//! whole head has arrived and passed [`crate::framing`]'s checks, then releases it to hyper
//! and follows the body by the same framing (a length counted down, or chunks scanned), so it
//! knows where the next head starts. A head that fails the checks never reaches hyper: the
//! guard ends the read side (hyper finishes whatever it was answering) and writes the refusal
//! as the last response before the connection closes. A malformed chunked body is an I/O
//! error to hyper, which fails the request's body and closes the connection.
//!
//! Clocks (hyper's HTTP/1 server has none of its own unless given a timer):
//! - the first request head must arrive within the header-read timeout of the connection's
//!   start, and every later one within that of its first byte (a client trickling a byte a
//!   second is cut off; a 408 refusal is written);
//! - a connection with no bytes either way for the idle timeout is closed (between requests:
//!   hyper only reads then; an event stream writes heartbeats, so it is never idle).
//!
//! HTTP/2 (the prior-knowledge preface, or `h2` by ALPN) passes through once its preface has
//! arrived in time: h2 frames are unambiguous, and the h2 layer enforces their rules.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::framing::{self, BodyFraming, ChunkedScanner, HeadLimits, Refusal};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a guarded connection is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, or HTTP/2 with prior knowledge if the preface comes.
    Auto,
    /// HTTP/2 only (ALPN said `h2`).
    Http2,
    /// Not looked at (gRPC, possibly under TLS): only the first bytes' clock applies, until
    /// [`OPAQUE_START`] bytes have come (a preface or a TLS hello).
    Opaque,
}

/// What an opaque connection must send within the header-read timeout: the length of the
/// HTTP/2 preface, and less than any TLS ClientHello.
pub const OPAQUE_START: usize = 24;

/// The limits a guard enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Size limits of each request head (414 and 431 beyond).
    pub head: HeadLimits,
    /// A request head (or the HTTP/2 preface) must arrive within this.
    pub header_read_timeout: Duration,
    /// No bytes either way for this long closes the connection (`None`: never, for gRPC
    /// channels that are idle by design between calls).
    pub idle_timeout: Option<Duration>,
}

/// Where the reader is in the message stream.
#[derive(Debug)]
enum State {
    Head,
    Length(u64),
    Chunked(ChunkedScanner),
    /// HTTP/2 after its preface: everything passes.
    Through,
    /// After a refusal, a body error, or the client's EOF: nothing more is read.
    Closed,
}

/// A stream with the framing checks and clocks of [`crate::guard`].
pub struct Guard<S> {
    inner: S,
    config: GuardConfig,
    protocol: Protocol,
    state: State,
    /// Bytes read from the client and not yet handed on.
    pending: BytesMut,
    /// How many of `pending` passed the checks and may be handed on.
    released: usize,
    /// The response written when the connection closes, if a head was refused.
    refusal: Option<Vec<u8>>,
    refusal_written: usize,
    /// An error to hand the reader once (a malformed chunked body).
    error: Option<&'static str>,
    /// When the head being waited for must be complete, once it has started (or from the
    /// start of the connection for the first one).
    head_deadline: Option<Instant>,
    last_activity: Instant,
    /// The timer, and the instant it is set for.
    timer: Pin<Box<Sleep>>,
    armed: Instant,
}

impl<S> Guard<S> {
    /// Guards a connection with nothing read from it yet; the header-read clock starts now.
    pub fn new(inner: S, config: GuardConfig, protocol: Protocol) -> Self {
        let now = Instant::now();
        let first_head = now + config.header_read_timeout;
        Self {
            inner,
            config,
            protocol,
            state: State::Head,
            pending: BytesMut::new(),
            released: 0,
            refusal: None,
            refusal_written: 0,
            error: None,
            head_deadline: Some(first_head),
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(first_head.into())),
            armed: first_head,
        }
    }

    /// Starts with `read`: bytes already taken from `inner` (by a front that looked first).
    pub fn with_prefix(inner: S, config: GuardConfig, protocol: Protocol, read: &[u8]) -> Self {
        let mut guard = Self::new(inner, config, protocol);
        guard.pending.extend_from_slice(read);
        guard.advance();
        guard
    }

    /// The refusal a head met, if any (tests and logs).
    pub fn refused(&self) -> bool {
        self.refusal.is_some()
    }

    fn refuse(&mut self, refusal: Refusal) {
        tracing::debug!(%refusal, "request refused before it reached a handler");
        self.refusal = Some(refusal.response());
        self.state = State::Closed;
        // What was already checked still goes to the reader; nothing after it does.
        self.pending.truncate(self.released);
    }

    /// Moves every byte that passes the checks into the released part of `pending`.
    fn advance(&mut self) {
        loop {
            let unchecked = &self.pending[self.released..];
            if unchecked.is_empty() {
                return;
            }
            match &mut self.state {
                State::Closed => return,
                State::Through => {
                    self.released = self.pending.len();
                    return;
                }
                State::Head => {
                    if self.head_deadline.is_none() {
                        self.head_deadline = Some(Instant::now() + self.config.header_read_timeout);
                    }
                    if self.protocol == Protocol::Opaque {
                        if self.pending.len() < OPAQUE_START {
                            return;
                        }
                        self.state = State::Through;
                        self.head_deadline = None;
                        continue;
                    }
                    if unchecked.starts_with(H2_PREFACE) {
                        self.state = State::Through;
                        self.head_deadline = None;
                        continue;
                    }
                    // Shorter than the preface and matching it so far: wait for the rest.
                    if H2_PREFACE.starts_with(unchecked) {
                        return;
                    }
                    if self.protocol == Protocol::Http2 {
                        self.refuse(Refusal {
                            status: 400,
                            reason: "Expected the HTTP/2 connection preface.",
                        });
                        return;
                    }
                    match framing::check_head(unchecked, self.config.head) {
                        Ok(None) => return,
                        Ok(Some((len, framing))) => {
                            self.released += len;
                            self.head_deadline = None;
                            self.state = match framing.body {
                                BodyFraming::None => State::Head,
                                BodyFraming::Length(n) => State::Length(n),
                                BodyFraming::Chunked => State::Chunked(ChunkedScanner::default()),
                            };
                        }
                        Err(refusal) => {
                            self.refuse(refusal);
                            return;
                        }
                    }
                }
                State::Length(left) => {
                    let take = unchecked
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    self.released += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(scanner) => match scanner.advance(unchecked) {
                    Ok((used, done)) => {
                        self.released += used;
                        if done {
                            self.state = State::Head;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, "malformed chunked request body");
                        // What was released still goes to the reader, then the error.
                        self.error = Some(error.0);
                        self.pending.truncate(self.released);
                        self.state = State::Closed;
                        return;
                    }
                },
            }
        }
    }

    /// The instant the connection times out, and whether it is a head's deadline.
    fn deadline(&self) -> Option<(Instant, bool)> {
        match (&self.state, self.head_deadline) {
            (State::Closed, _) => None,
            (State::Head, Some(deadline)) => Some((deadline, true)),
            _ => self
                .config
                .idle_timeout
                .map(|idle| (self.last_activity + idle, false)),
        }
    }

    /// Polls the clock: `Ready` once the connection has timed out (a 408 refusal is recorded
    /// if a head was late).
    fn poll_clock(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let Some((deadline, head)) = self.deadline() else {
                return Poll::Pending;
            };
            if self.armed != deadline {
                self.timer.as_mut().reset(deadline.into());
                self.armed = deadline;
            }
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() < deadline {
                continue;
            }
            if head && !self.pending.is_empty() && self.protocol != Protocol::Opaque {
                self.refuse(Refusal {
                    status: 408,
                    reason: "The request head did not arrive in time.",
                });
            } else {
                self.state = State::Closed;
            }
            return Poll::Ready(());
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.released > 0 {
                let n = this.released.min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                this.released -= n;
                return Poll::Ready(Ok(()));
            }
            if let Some(reason) = this.error.take() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    reason,
                )));
            }
            if matches!(this.state, State::Closed) {
                return Poll::Ready(Ok(()));
            }
            if this.pending.capacity() - this.pending.len() < 1024 {
                this.pending.reserve(8 * 1024);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.pending) {
                Poll::Ready(Ok(0)) => {
                    // The client is done; whatever it left unfinished stays unread.
                    this.state = State::Closed;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(_)) => {
                    this.last_activity = Instant::now();
                    this.advance();
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    ready!(this.poll_clock(cx));
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf));
        if matches!(written, Ok(n) if n > 0) {
            self.last_activity = Instant::now();
        }
        Poll::Ready(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs));
        if matches!(written, Ok(n) if n > 0) {
            self.last_activity = Instant::now();
        }
        Poll::Ready(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Writes the refusal, if a head was refused, before closing.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(refusal) = &this.refusal {
            while this.refusal_written < refusal.len() {
                match ready!(
                    Pin::new(&mut this.inner).poll_write(cx, &refusal[this.refusal_written..])
                ) {
                    Ok(0) | Err(_) => {
                        this.refusal_written = refusal.len();
                    }
                    Ok(n) => this.refusal_written += n,
                }
            }
            let _ = ready!(Pin::new(&mut this.inner).poll_flush(cx));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config() -> GuardConfig {
        GuardConfig {
            head: HeadLimits::default(),
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Some(Duration::from_millis(600)),
        }
    }

    /// What a reader behind the guard sees of `sent`, and what the client gets back after
    /// the reader shuts the connection down.
    async fn through(sent: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(sent).await.unwrap();
        client.shutdown().await.unwrap();
        let mut guard = Guard::new(server, config(), Protocol::Auto);
        let mut seen = Vec::new();
        let _ = guard.read_to_end(&mut seen).await;
        guard.shutdown().await.unwrap();
        drop(guard);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        (seen, answer)
    }

    #[tokio::test]
    async fn valid_pipelined_requests_pass_whole() {
        let sent = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: a\r\n\r\nPOST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (seen, answer) = through(sent).await;
        assert_eq!(seen, sent);
        assert!(answer.is_empty());
    }

    #[tokio::test]
    async fn a_smuggled_head_never_reaches_the_reader_and_is_refused_last() {
        // The body of the first request is exactly its length; the second head is ambiguous.
        let first = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let mut sent = first.to_vec();
        sent.extend_from_slice(
            b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        let (seen, answer) = through(&sent).await;
        assert_eq!(seen, first, "only the valid request passed");
        let answer = String::from_utf8(answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.contains("connection: close"));
    }

    #[tokio::test]
    async fn a_malformed_chunked_body_is_an_error_to_the_reader() {
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
            .await
            .unwrap();
        let mut guard = Guard::new(server, config(), Protocol::Auto);
        let mut seen = vec![0u8; 4096];
        let mut total = 0;
        let error = loop {
            match guard.read(&mut seen[total..]).await {
                Ok(0) => panic!("EOF instead of an error"),
                Ok(n) => total += n,
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            seen[..total].ends_with(b"chunked\r\n\r\n"),
            "the head passed"
        );
        assert_eq!(guard.read(&mut seen).await.unwrap(), 0, "then nothing more");
    }

    #[tokio::test]
    async fn a_head_trickling_in_is_cut_off_with_408() {
        let (mut client, server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut guard = Guard::new(server, config(), Protocol::Auto);
            let mut seen = Vec::new();
            let started = Instant::now();
            guard.read_to_end(&mut seen).await.unwrap();
            guard.shutdown().await.unwrap();
            (seen, started.elapsed())
        });
        for byte in b"GET / HTTP/1.1\r\nHost: a\r\n" {
            if client.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if reader.is_finished() {
                break;
            }
        }
        let (seen, elapsed) = reader.await.unwrap();
        assert!(seen.is_empty());
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_at_the_first_head_deadline_without_an_answer() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guard = Guard::new(server, config(), Protocol::Auto);
        let started = Instant::now();
        let mut seen = Vec::new();
        guard.read_to_end(&mut seen).await.unwrap();
        guard.shutdown().await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(290) && elapsed < Duration::from_millis(550));
        drop(guard);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.is_empty(), "nothing was asked, nothing is answered");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut guard = Guard::new(server, config(), Protocol::Auto);
        let mut head = [0u8; 64];
        let n = guard.read(&mut head).await.unwrap();
        assert_eq!(n, 27);
        let started = Instant::now();
        assert_eq!(guard.read(&mut head).await.unwrap(), 0);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(590) && elapsed < Duration::from_millis(900),
            "idle, not the head timeout: {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn http2_passes_through_after_its_preface() {
        let mut sent = H2_PREFACE.to_vec();
        sent.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00 anything \n at all");
        let (seen, answer) = through(&sent).await;
        assert_eq!(seen, sent);
        assert!(answer.is_empty());
        // Declared HTTP/2 (ALPN) but something else came.
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut guard = Guard::new(server, config(), Protocol::Http2);
        let mut seen = Vec::new();
        guard.read_to_end(&mut seen).await.unwrap();
        assert!(seen.is_empty());
        assert!(guard.refused());
    }
}
