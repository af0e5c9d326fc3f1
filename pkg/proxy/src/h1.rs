//! A lean HTTP/1.1 forwarding engine: the gateway's fast path.
//!
//! Owns the wire format of plain HTTP/1.1 exchanges (heads parsed with `httparse`, rewritten
//! straight into an output buffer), the body framings a proxy must follow (RFC 9112 §6:
//! no body, `Content-Length`, `chunked` passed through verbatim, until close), and a per-thread
//! pool of keep-alive upstream connections that the request's own task drives — no connection
//! task, no channel, no `HeaderMap`. That is where hyper spends what this saves.
//!
//! Framing is decided once for the platform by `platform_http::framing` (the same checks guard
//! hyper): a request that could be framed two ways is refused before it gets here. Of the
//! rest, this engine handles only the plain cases, and says so: [`plain_request`] answers
//! `None` for anything else (HTTP/1.0, chunked request bodies, upgrades, `Expect`,
//! absolute-form targets), and the caller hands such a connection to hyper.
//!
//! Lengths are always the engine's own: a request's `Content-Length` is written from the body
//! it forwards, a response's from the framing it relays, and `Connection` can never name a
//! framing header or one the gateway sets ([`PROTECTED`]) away.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use httparse::Header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use platform_http::framing::{self, ChunkedScanner, tokens};

use crate::{ProxyError, Upstream};

/// Most headers a head may carry on the fast path (more → hyper's path).
pub const MAX_HEADERS: usize = 64;

/// Headers meaningful for one connection only (RFC 9110 §7.6.1), never forwarded (by either
/// path: [`crate::Proxy`] strips the same list).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers a `Connection` header may not name away: the framing ones (whose removal would
/// leave a body without its length: request smuggling), and those the gateway sets or checks.
pub const PROTECTED: [&str; 14] = [
    "content-length",
    "transfer-encoding",
    "host",
    "authorization",
    "x-user-id",
    "x-user-role",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "traceparent",
    "tracestate",
    "idempotency-key",
];

/// Whether `Connection` may name `name` as hop-by-hop (see [`PROTECTED`]).
pub fn may_be_named_hop_by_hop(name: &str) -> bool {
    !PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p))
}

/// Whether `name` is hop-by-hop, or named as such by the message's `Connection` header (a
/// name in [`PROTECTED`] stays end-to-end whatever `Connection` says).
pub fn is_hop_by_hop(name: &str, connection: &[Header<'_>]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || (may_be_named_hop_by_hop(name)
            && connection.iter().any(|header| {
                tokens(header.value).any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
            }))
}

fn has_token(headers: &[Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
}

/// The single `Content-Length` of a head (one number per field, repeats agreeing): `Ok(None)`
/// when absent, `Err` when malformed or with different values (a request-smuggling vector).
fn content_length(headers: &[Header<'_>]) -> Result<Option<u64>, ()> {
    let mut length = None;
    for header in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let parsed = framing::parse_length(header.value.trim_ascii()).ok_or(())?;
        if length.is_some_and(|previous| previous != parsed) {
            return Err(());
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// A request the fast path can forward as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainRequest {
    /// Bytes of body after the head (0 when none).
    pub body_len: u64,
    /// The client asked to close the connection after this exchange.
    pub close: bool,
}

/// Whether a request whose head passed `framing::check_request` (as `framing`) is plain
/// enough for the fast path: HTTP/1.1, origin-form, at most a `Content-Length` body, no
/// upgrade and no `Expect`.
pub fn plain_request(
    request: &httparse::Request<'_, '_>,
    framing: framing::Framing,
) -> Option<PlainRequest> {
    let plain = request.version == Some(1)
        && request.path.is_some_and(|p| p.starts_with('/'))
        && !request.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("upgrade") || h.name.eq_ignore_ascii_case("expect")
        });
    let body_len = match framing.body {
        framing::BodyFraming::None => 0,
        framing::BodyFraming::Length(n) => n,
        framing::BodyFraming::Chunked => return None,
    };
    plain.then_some(PlainRequest {
        body_len,
        close: framing.close,
    })
}

/// Appends `name: value\r\n`.
pub fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number.
pub fn put_number(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes (HTTP/1.0 style): the client connection closes too.
    UntilClose,
}

/// Where [`UpstreamConnection::poll_data`] is in a response body.
#[derive(Debug)]
pub enum BodyReader {
    /// Bytes left.
    Length(u64),
    Chunked(ChunkedScanner),
    UntilClose,
    Done,
}

impl BodyReader {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyReader::Done,
            Framing::Length(n) => BodyReader::Length(n),
            Framing::Chunked => BodyReader::Chunked(ChunkedScanner::default()),
            Framing::UntilClose => BodyReader::UntilClose,
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        matches!(self, BodyReader::Done)
    }

    /// Bytes left, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            BodyReader::Length(n) => Some(*n),
            BodyReader::Done => Some(0),
            BodyReader::Chunked(_) | BodyReader::UntilClose => None,
        }
    }
}

/// A response head read from an upstream.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The upstream connection may carry another request afterwards.
    pub reusable: bool,
}

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

/// A connection to an upstream, checked out of this thread's pool or freshly made.
pub struct UpstreamConnection {
    stream: TcpStream,
    /// Bytes read past the response head.
    buf: BytesMut,
    /// Came from the pool: a failure before any response byte may be a stale connection.
    pub reused: bool,
    key: (u64, u64),
}

/// A stateless proxy client that opens, reuses and pools [`UpstreamConnection`]s.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// Tells pools of different proxies apart.
    pub id: u64,
    pub connect_timeout: Duration,
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

/// A relay that broke, and whether the client had been sent any of the answer (if not, it
/// can still be answered with an error).
#[derive(Debug)]
pub struct RelayError {
    pub error: std::io::Error,
    pub sent: bool,
}

/// Why an exchange with an upstream failed, and whether the upstream can have seen it.
#[derive(Debug)]
pub enum ExchangeError {
    /// Nothing came back and the connection was a pooled one that may have been closed
    /// before the request arrived: safe to try again on a fresh connection when the request
    /// may be repeated.
    Stale(ProxyError),
    Failed(ProxyError),
}

impl UpstreamConnection {
    /// Sends `request` (head and body, already encoded) and reads the response head,
    /// rewriting it into `out` for the client: hop-by-hop headers and those in `replaced`
    /// dropped, `connection: close` added when `close` (the client connection ends after
    /// this exchange), `extra` called to append the caller's own headers.
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange(
        &mut self,
        service: &str,
        request: &[u8],
        head_only: bool,
        close: bool,
        out: &mut Vec<u8>,
        replaced: &[&str],
        extra: impl FnOnce(&mut Vec<u8>),
    ) -> Result<ResponseHead, ExchangeError> {
        let broken = |reason: String| ProxyError::Broken {
            service: service.to_owned(),
            reason,
        };
        if let Err(error) = self.stream.write_all(request).await {
            let error = broken(error.to_string());
            return Err(if self.reused {
                ExchangeError::Stale(error)
            } else {
                ExchangeError::Failed(error)
            });
        }
        let mut extra = Some(extra);
        loop {
            match take_head(&mut self.buf, head_only, close, out, replaced, &mut extra) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(reason) => return Err(ExchangeError::Failed(broken(reason))),
            }
            if self.buf.len() > 64 * 1024 {
                return Err(ExchangeError::Failed(broken(
                    "response head too large".to_owned(),
                )));
            }
            let nothing_yet = self.buf.is_empty();
            let read = self.stream.read_buf(&mut self.buf).await;
            match read {
                Ok(n) if n > 0 => {}
                Ok(_) | Err(_) => {
                    let reason = match read {
                        Err(error) => error.to_string(),
                        Ok(_) => "connection closed before a response".to_owned(),
                    };
                    let error = broken(reason);
                    return Err(if self.reused && nothing_yet {
                        ExchangeError::Stale(error)
                    } else {
                        ExchangeError::Failed(error)
                    });
                }
            }
        }
    }

    /// Copies the response to `client`: `out` (the rewritten head) first, then the body as
    /// `framing` delimits it. `Err` when the client went away or the upstream broke mid-body
    /// (neither connection can be used again); it says whether the client was sent anything.
    pub async fn relay<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        framing: Framing,
        out: &mut Vec<u8>,
        client: &mut W,
    ) -> Result<(), RelayError> {
        let mut sent = false;
        self.relay_body(framing, out, client, &mut sent)
            .await
            .map_err(|error| RelayError { error, sent })
    }

    async fn relay_body<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        framing: Framing,
        out: &mut Vec<u8>,
        client: &mut W,
        sent: &mut bool,
    ) -> std::io::Result<()> {
        match framing {
            Framing::Empty => {
                *sent = true;
                client.write_all(out).await?;
            }
            Framing::Length(mut left) => loop {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                out.extend_from_slice(&self.buf[..take]);
                self.buf.advance(take);
                left -= take as u64;
                *sent = true;
                client.write_all(out).await?;
                out.clear();
                if left == 0 {
                    break;
                }
                self.fill().await?;
            },
            Framing::Chunked => {
                let mut scanner = ChunkedScanner::default();
                loop {
                    let (used, done) = scanner
                        .advance(&self.buf)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    out.extend_from_slice(&self.buf[..used]);
                    self.buf.advance(used);
                    *sent = true;
                    client.write_all(out).await?;
                    out.clear();
                    if done {
                        break;
                    }
                    self.fill().await?;
                }
            }
            Framing::UntilClose => {
                *sent = true;
                client.write_all(out).await?;
                out.clear();
                loop {
                    client.write_all(&self.buf).await?;
                    self.buf.clear();
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The next piece of the response body as `body` delimits it, with any chunk framing
    /// taken off (for a client that frames bodies its own way: HTTP/2); `None` at its end.
    /// `body` is [`BodyReader::Done`] as soon as the last piece has been returned.
    pub fn poll_data(
        &mut self,
        cx: &mut std::task::Context<'_>,
        body: &mut BodyReader,
    ) -> std::task::Poll<std::io::Result<Option<Bytes>>> {
        use std::task::Poll;
        loop {
            match body {
                BodyReader::Done => return Poll::Ready(Ok(None)),
                BodyReader::Length(left) => {
                    if !self.buf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(self.buf.len());
                        *left -= take as u64;
                        if *left == 0 {
                            *body = BodyReader::Done;
                        }
                        return Poll::Ready(Ok(Some(self.buf.split_to(take).freeze())));
                    }
                }
                BodyReader::Chunked(scanner) => {
                    let mut data = BytesMut::new();
                    let (used, done) = scanner
                        .decode(&self.buf, &mut data)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    self.buf.advance(used);
                    if done {
                        *body = BodyReader::Done;
                    }
                    if !data.is_empty() {
                        return Poll::Ready(Ok(Some(data.freeze())));
                    }
                    if done {
                        return Poll::Ready(Ok(None));
                    }
                }
                BodyReader::UntilClose => {
                    if !self.buf.is_empty() {
                        return Poll::Ready(Ok(Some(self.buf.split().freeze())));
                    }
                }
            }
            // Nothing buffered to hand out: read more.
            self.buf.reserve(16 * 1024);
            let read = match self.stream.try_read_buf(&mut self.buf) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    match self.stream.poll_read_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(ready) => {
                            ready?;
                            continue;
                        }
                    }
                }
                read => read?,
            };
            if read == 0 {
                if matches!(body, BodyReader::UntilClose) {
                    *body = BodyReader::Done;
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(16 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Starts the upstream request head in `out`: the request line and the client's headers
/// except `Host`, `Content-Length` ([`finish_request`] writes the length of the body it
/// sends), hop-by-hop ones and those `skip` names. The caller appends its own headers;
/// [`finish_request`] completes it for one upstream.
pub fn write_request_start(
    out: &mut Vec<u8>,
    request: &httparse::Request<'_, '_>,
    skip: impl Fn(&str) -> bool,
) {
    let headers = &*request.headers;
    let connection: Vec<Header<'_>> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .copied()
        .collect();
    out.extend_from_slice(request.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for header in headers {
        if header.name.eq_ignore_ascii_case("host")
            || header.name.eq_ignore_ascii_case("content-length")
            || is_hop_by_hop(header.name, &connection)
            || skip(header.name)
        {
            continue;
        }
        put_header(out, header.name, header.value);
    }
}

/// The whole request for `upstream`: `start` (from [`write_request_start`] plus the caller's
/// headers), `Host`, the body's `Content-Length` (when there is a body, or `declare_length`
/// says the method expects one), the blank line and the body.
pub fn finish_request(
    start: &[u8],
    upstream: &Upstream,
    body: &[u8],
    declare_length: bool,
) -> Vec<u8> {
    let authority = upstream.authority.as_str().as_bytes();
    let mut request = Vec::with_capacity(start.len() + authority.len() + body.len() + 40);
    request.extend_from_slice(start);
    put_header(&mut request, "host", authority);
    if declare_length || !body.is_empty() {
        request.extend_from_slice(b"content-length: ");
        put_number(&mut request, body.len() as u64);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

/// Writes the client's response head for `response`; says how its body is framed.
fn rewrite_response(
    response: &httparse::Response<'_, '_>,
    head_only: bool,
    close: bool,
    out: &mut Vec<u8>,
    replaced: &[&str],
    extra: impl FnOnce(&mut Vec<u8>),
) -> Result<ResponseHead, &'static str> {
    let status = response.code.unwrap_or(0);
    let headers = &*response.headers;
    // Only exactly `chunked` is relayed: any other coding would reach the client unlabelled.
    let mut codings = 0;
    let mut chunked = false;
    for header in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        for coding in tokens(header.value) {
            codings += 1;
            chunked = coding.eq_ignore_ascii_case(b"chunked");
        }
    }
    if codings > 1 || (codings == 1 && !chunked) {
        return Err("unsupported transfer coding");
    }
    let length = content_length(headers).map_err(|()| "invalid content-length")?;
    if chunked && length.is_some() {
        // Two framings at once: the response cannot be relayed safely.
        return Err("content-length with transfer-encoding");
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (true, _) => Framing::Chunked,
            // No framing at all: the body ends when the upstream closes.
            (false, None) => Framing::UntilClose,
            (false, Some(n)) => Framing::Length(n),
        }
    };
    let keep_alive = response.version == Some(1) && !has_token(headers, "connection", "close");
    write_status_and_headers(response, out, replaced);
    if close || framing == Framing::UntilClose {
        put_header(out, "connection", b"close");
    }
    match (framing, length) {
        (Framing::Chunked, _) => put_header(out, "transfer-encoding", b"chunked"),
        (Framing::UntilClose, _) => {}
        (Framing::Length(n), _) => {
            out.extend_from_slice(b"content-length: ");
            put_number(out, n);
            out.extend_from_slice(b"\r\n");
        }
        // A HEAD or 304 answer describes the body it did not send.
        (Framing::Empty, Some(n)) if status != 204 => {
            out.extend_from_slice(b"content-length: ");
            put_number(out, n);
            out.extend_from_slice(b"\r\n");
        }
        (Framing::Empty, _) => {}
    }
    extra(out);
    out.extend_from_slice(b"\r\n");
    Ok(ResponseHead {
        status,
        framing,
        reusable: keep_alive && framing != Framing::UntilClose,
    })
}

/// The status line and the end-to-end headers of `response` (hop-by-hop ones and those in
/// `replaced` dropped), without the blank line.
fn write_status_and_headers(
    response: &httparse::Response<'_, '_>,
    out: &mut Vec<u8>,
    replaced: &[&str],
) {
    let headers = &*response.headers;
    let connection: Vec<Header<'_>> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .copied()
        .collect();
    out.extend_from_slice(b"HTTP/1.1 ");
    put_number(out, u64::from(response.code.unwrap_or(0)));
    out.push(b' ');
    out.extend_from_slice(response.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in headers {
        if is_hop_by_hop(header.name, &connection)
            || header.name.eq_ignore_ascii_case("content-length")
            || replaced.iter().any(|r| header.name.eq_ignore_ascii_case(r))
        {
            continue;
        }
        put_header(out, header.name, header.value);
    }
}

/// Takes the response head at the start of `buf` once it is all there: rewritten into `out`,
/// after any interim 1xx responses, which are forwarded as they come (RFC 9110 §15.2: a proxy
/// forwards the 1xx responses it did not ask for). Not async on purpose: the parser's 2 KiB
/// header array stays on the stack instead of in the exchange's future.
fn take_head(
    buf: &mut BytesMut,
    head_only: bool,
    close: bool,
    out: &mut Vec<u8>,
    replaced: &[&str],
    extra: &mut Option<impl FnOnce(&mut Vec<u8>)>,
) -> Result<Option<ResponseHead>, String> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => return Err(format!("invalid response head: {error}")),
        };
        let status = response.code.unwrap_or(0);
        if (100..200).contains(&status) {
            if status == 101 {
                return Err("unrequested protocol switch".to_owned());
            }
            write_status_and_headers(&response, out, &[]);
            out.extend_from_slice(b"\r\n");
            buf.advance(len);
            continue;
        }
        let write_extra = extra.take().ok_or("response head already taken")?;
        let head = rewrite_response(&response, head_only, close, out, replaced, write_extra)?;
        buf.advance(len);
        return Ok(Some(head));
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

    fn parse_request(raw: &[u8]) -> Option<PlainRequest> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(raw).unwrap().is_complete());
        let framing = framing::check_request(&request).ok()?;
        plain_request(&request, framing)
    }

    #[test]
    fn only_plain_requests_take_the_fast_path() {
        assert_eq!(
            parse_request(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(PlainRequest {
                body_len: 0,
                close: false
            })
        );
        assert_eq!(
            parse_request(
                b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
            ),
            Some(PlainRequest {
                body_len: 5,
                close: true
            })
        );
        // Repeated identical lengths are one length.
        assert!(
            parse_request(
                b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
            )
            .is_some()
        );
        for raw in [
            &b"GET /a HTTP/1.0\r\n\r\n"[..],
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(parse_request(raw), None, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn hop_by_hop_includes_what_connection_names_except_protected_headers() {
        let connection = [Header {
            name: "Connection",
            value: b"keep-alive, X-Secret-Hop, Content-Length, Host, Authorization, x-user-id",
        }];
        assert!(is_hop_by_hop("Keep-Alive", &connection));
        assert!(is_hop_by_hop("x-secret-hop", &connection));
        assert!(is_hop_by_hop("Transfer-Encoding", &[]));
        assert!(!is_hop_by_hop("x-request-id", &connection));
        for protected in ["content-length", "Host", "authorization", "X-User-Id"] {
            assert!(!is_hop_by_hop(protected, &connection), "{protected}");
        }
    }

    #[test]
    fn forwarded_requests_carry_the_length_of_their_body_only() {
        let raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: Content-Length\r\nX-A: 1\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(raw).unwrap().is_complete());
        let mut start = Vec::new();
        write_request_start(&mut start, &request, |_| false);
        let upstream = Upstream::parse("s", "http://127.0.0.1:1").unwrap();
        let sent = String::from_utf8(finish_request(&start, &upstream, b"abc", true)).unwrap();
        assert_eq!(
            sent,
            "POST /a HTTP/1.1\r\nX-A: 1\r\nhost: 127.0.0.1:1\r\ncontent-length: 3\r\n\r\nabc"
        );
        let empty = String::from_utf8(finish_request(&start, &upstream, b"", false)).unwrap();
        assert!(!empty.contains("content-length"));
        let declared = String::from_utf8(finish_request(&start, &upstream, b"", true)).unwrap();
        assert!(declared.contains("content-length: 0\r\n"));
    }

    fn rewrite(raw: &[u8], head_only: bool) -> (ResponseHead, String) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        assert!(response.parse(raw).unwrap().is_complete());
        let mut out = Vec::new();
        let head = rewrite_response(
            &response,
            head_only,
            false,
            &mut out,
            &["x-request-id"],
            |out| put_header(out, "x-request-id", b"r1"),
        )
        .unwrap();
        (head, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_heads_lose_hop_by_hop_headers_and_keep_their_framing() {
        let (head, text) = rewrite(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: upstream's\r\nContent-Type: text/plain\r\n\r\n",
            false,
        );
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.reusable);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 2\r\nx-request-id: r1\r\n\r\n"
        );

        let (head, text) = rewrite(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(head.framing, Framing::Chunked);
        assert!(text.contains("transfer-encoding: chunked\r\n"));

        let (head, text) = rewrite(b"HTTP/1.0 200 OK\r\n\r\n", false);
        assert_eq!(head.framing, Framing::UntilClose);
        assert!(!head.reusable);
        assert!(text.contains("connection: close\r\n"));

        let (head, text) = rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true);
        assert_eq!(head.framing, Framing::Empty);
        assert!(
            text.contains("content-length: 10\r\n"),
            "HEAD keeps the GET's length"
        );
        // `Connection` cannot name the length away from the client.
        let (head, text) = rewrite(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: content-length\r\n\r\n",
            false,
        );
        assert_eq!(head.framing, Framing::Length(3));
        assert!(text.contains("content-length: 3\r\n"));
        let (head, _) = rewrite(b"HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(head.framing, Framing::Empty);
        let (head, _) = rewrite(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(!head.reusable);
    }

    #[test]
    fn interim_responses_are_forwarded_before_the_final_head() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
        );
        let mut out = Vec::new();
        let mut extra = Some(|out: &mut Vec<u8>| put_header(out, "x-request-id", b"r1"));
        let head = take_head(&mut buf, false, false, &mut out, &[], &mut extra)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.framing, Framing::Length(2));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: r1\r\n\r\n"
        );
        assert_eq!(&buf[..], b"ok", "the body stays for the relay");

        let mut partial = BytesMut::from(&b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 20"[..]);
        let mut out = Vec::new();
        let mut extra = Some(|_: &mut Vec<u8>| {});
        assert!(
            take_head(&mut partial, false, false, &mut out, &[], &mut extra)
                .unwrap()
                .is_none()
        );
        let mut switch = BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..]);
        assert!(take_head(&mut switch, false, false, &mut Vec::new(), &[], &mut extra).is_err());
    }

    #[test]
    fn ambiguous_response_framing_is_refused() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            assert!(response.parse(raw).unwrap().is_complete());
            assert!(
                rewrite_response(&response, false, false, &mut Vec::new(), &[], |_| {}).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut out = Vec::new();
        for n in [0, 7, 42, 1_000_000, u64::MAX] {
            out.clear();
            put_number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
