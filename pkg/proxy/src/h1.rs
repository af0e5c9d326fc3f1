//! A lean HTTP/1.1 forwarding engine: the gateway's fast path.
//!
//! Owns the wire format of plain HTTP/1.1 exchanges (heads parsed with `httparse`, rewritten
//! straight into an output buffer), the body framings a proxy must follow (RFC 9112 §6:
//! no body, `Content-Length`, `chunked` passed through verbatim, until close), and a per-thread
//! pool of keep-alive upstream connections that the request's own task drives — no connection
//! task, no channel, no `HeaderMap`. That is where hyper spends what this saves.
//!
//! It handles only the plain cases, and says so: [`plain_request`] answers `None` for anything
//! else (HTTP/1.0, `Transfer-Encoding` on a request, conflicting lengths, upgrades,
//! `Expect`, absolute-form targets), and the caller hands such a connection to hyper.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use httparse::Header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Whether `name` is hop-by-hop, or named as such by the message's `Connection` header.
pub fn is_hop_by_hop(name: &str, connection: &[Header<'_>]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection.iter().any(|header| {
            tokens(header.value).any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
        })
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|t| t.trim_ascii())
}

fn has_token(headers: &[Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
}

/// The single `Content-Length` of a head: `Ok(None)` when absent, `Err` when malformed or
/// repeated with different values (a request-smuggling vector).
fn content_length(headers: &[Header<'_>]) -> Result<Option<u64>, ()> {
    let mut length = None;
    for header in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let value = header.value.trim_ascii();
        if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let parsed = value
            .iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
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

/// What framing a request has, or `None` when it is not plain HTTP/1.1 with at most a
/// `Content-Length` body.
pub fn plain_request(request: &httparse::Request<'_, '_>) -> Option<PlainRequest> {
    let headers = &*request.headers;
    let plain = request.version == Some(1)
        && request.path.is_some_and(|p| p.starts_with('/'))
        && request.method.is_some_and(|m| m != "CONNECT")
        && !headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                || h.name.eq_ignore_ascii_case("upgrade")
                || h.name.eq_ignore_ascii_case("expect")
        });
    if !plain {
        return None;
    }
    let body_len = content_length(headers).ok()?.unwrap_or(0);
    Some(PlainRequest {
        body_len,
        close: has_token(headers, "connection", "close"),
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

/// A response head read from an upstream.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The upstream connection may carry another request afterwards.
    pub reusable: bool,
}

/// Where a [`ChunkedScanner`] is in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the size line's hex digits.
    Size {
        seen_digit: bool,
    },
    /// After the size: extensions until LF.
    SizeLineEnd,
    Data,
    /// CR LF after a chunk's data.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    TrailerLineStart,
    TrailerLine,
    Done,
}

/// Follows a chunked body as it passes through, to find where it ends. Bytes are forwarded
/// verbatim (chunk sizes, extensions, trailers); only the framing is checked.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: Chunk,
    size: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self {
            state: Chunk::Size { seen_digit: false },
            size: 0,
        }
    }
}

/// A chunked body that is not valid chunked framing.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunked framing")]
pub struct InvalidChunk;

impl ChunkedScanner {
    /// Consumes `bytes`; returns how many belong to the body and whether it ended there.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<(usize, bool), InvalidChunk> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                Chunk::Size { seen_digit } => {
                    if let Some(digit) = (b as char).to_digit(16) {
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(digit)))
                            .ok_or(InvalidChunk)?;
                        self.state = Chunk::Size { seen_digit: true };
                    } else if seen_digit && matches!(b, b';' | b'\r' | b' ' | b'\t') {
                        self.state = Chunk::SizeLineEnd;
                    } else if seen_digit && b == b'\n' {
                        self.end_size_line();
                    } else {
                        return Err(InvalidChunk);
                    }
                }
                Chunk::SizeLineEnd => {
                    if b == b'\n' {
                        self.end_size_line();
                    }
                }
                Chunk::Data => {
                    let take =
                        (bytes.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    i += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr => {
                    self.state = match b {
                        b'\r' => Chunk::DataLf,
                        b'\n' => Chunk::Size { seen_digit: false },
                        _ => return Err(InvalidChunk),
                    };
                }
                Chunk::DataLf => {
                    if b != b'\n' {
                        return Err(InvalidChunk);
                    }
                    self.state = Chunk::Size { seen_digit: false };
                }
                Chunk::TrailerLineStart => match b {
                    b'\r' => {}
                    b'\n' => {
                        self.state = Chunk::Done;
                        return Ok((i + 1, true));
                    }
                    _ => self.state = Chunk::TrailerLine,
                },
                Chunk::TrailerLine => {
                    if b == b'\n' {
                        self.state = Chunk::TrailerLineStart;
                    }
                }
                Chunk::Done => return Ok((i, true)),
            }
            i += 1;
        }
        Ok((i, self.state == Chunk::Done))
    }

    fn end_size_line(&mut self) {
        if self.size == 0 {
            self.state = Chunk::TrailerLineStart;
        } else {
            self.state = Chunk::Data;
        }
    }
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

/// Connections idle longer than this are checked before reuse (the upstream may have closed
/// them meanwhile).
const CHECK_IDLE_AFTER: Duration = Duration::from_millis(250);
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
            if age > MAX_IDLE || (age > CHECK_IDLE_AFTER && !alive(&idle.stream)) {
                continue;
            }
            return Ok(UpstreamConnection {
                stream: idle.stream,
                buf: BytesMut::with_capacity(4096),
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
            buf: BytesMut::with_capacity(4096),
            reused: false,
            key,
        })
    }

    /// Returns a connection whose exchange ended cleanly to this thread's pool.
    pub fn release(&self, connection: UpstreamConnection) {
        if !connection.buf.is_empty() {
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
    /// dropped, `extra` called to
    /// append the caller's own headers.
    pub async fn exchange(
        &mut self,
        service: &str,
        request: &[u8],
        head_only: bool,
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
            match take_head(&mut self.buf, head_only, out, replaced, &mut extra) {
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
    /// (neither connection can be used again).
    pub async fn relay<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        framing: Framing,
        out: &mut Vec<u8>,
        client: &mut W,
    ) -> std::io::Result<()> {
        match framing {
            Framing::Empty => {
                client.write_all(out).await?;
            }
            Framing::Length(mut left) => loop {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                out.extend_from_slice(&self.buf[..take]);
                self.buf.advance(take);
                left -= take as u64;
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
                    client.write_all(out).await?;
                    out.clear();
                    if done {
                        break;
                    }
                    self.fill().await?;
                }
            }
            Framing::UntilClose => {
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

    async fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(16 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Starts the upstream request head in `out`: the request line and the client's headers
/// except `Host`, hop-by-hop ones and those `skip` names. The caller appends its own headers;
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
            || is_hop_by_hop(header.name, &connection)
            || skip(header.name)
        {
            continue;
        }
        put_header(out, header.name, header.value);
    }
}

/// The whole request for `upstream`: `start` (from [`write_request_start`] plus the caller's
/// headers), `Host`, the blank line and the body.
pub fn finish_request(start: &[u8], upstream: &Upstream, body: &[u8]) -> Vec<u8> {
    let authority = upstream.authority.as_str().as_bytes();
    let mut request = Vec::with_capacity(start.len() + authority.len() + body.len() + 12);
    request.extend_from_slice(start);
    put_header(&mut request, "host", authority);
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

/// Writes the client's response head for `response`; says how its body is framed.
fn rewrite_response(
    response: &httparse::Response<'_, '_>,
    head_only: bool,
    out: &mut Vec<u8>,
    replaced: &[&str],
    extra: impl FnOnce(&mut Vec<u8>),
) -> Result<ResponseHead, &'static str> {
    let status = response.code.unwrap_or(0);
    let headers = &*response.headers;
    let chunked = headers
        .iter()
        .rfind(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        .map(|h| {
            tokens(h.value)
                .next_back()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
        });
    let length = content_length(headers).map_err(|()| "invalid content-length")?;
    let framing = if head_only || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            // Another transfer coding, or none at all: the body ends when the upstream closes.
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    let keep_alive = response.version == Some(1) && !has_token(headers, "connection", "close");
    write_status_and_headers(response, out, replaced);
    match framing {
        Framing::Chunked if !head_only => put_header(out, "transfer-encoding", b"chunked"),
        Framing::UntilClose => put_header(out, "connection", b"close"),
        _ => {}
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
        let head = rewrite_response(&response, head_only, out, replaced, write_extra)?;
        buf.advance(len);
        return Ok(Some(head));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_request(raw: &[u8]) -> Option<PlainRequest> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(raw).unwrap().is_complete());
        plain_request(&request)
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
            parse_request(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"),
            Some(PlainRequest {
                body_len: 5,
                close: true
            })
        );
        // Repeated identical lengths are one length.
        assert!(
            parse_request(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                .is_some()
        );
        for raw in [
            &b"GET /a HTTP/1.0\r\n\r\n"[..],
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"GET http://x/a HTTP/1.1\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_request(raw), None, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn hop_by_hop_includes_what_connection_names() {
        let connection = [Header {
            name: "Connection",
            value: b"keep-alive, X-Secret-Hop",
        }];
        assert!(is_hop_by_hop("Keep-Alive", &connection));
        assert!(is_hop_by_hop("x-secret-hop", &connection));
        assert!(is_hop_by_hop("Transfer-Encoding", &[]));
        assert!(!is_hop_by_hop("x-request-id", &connection));
    }

    fn rewrite(raw: &[u8], head_only: bool) -> (ResponseHead, String) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        assert!(response.parse(raw).unwrap().is_complete());
        let mut out = Vec::new();
        let head = rewrite_response(&response, head_only, &mut out, &["x-request-id"], |out| {
            put_header(out, "x-request-id", b"r1")
        })
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
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nx-request-id: r1\r\n\r\n"
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

        let (head, _) = rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true);
        assert_eq!(head.framing, Framing::Empty);
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
        let head = take_head(&mut buf, false, &mut out, &[], &mut extra)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.framing, Framing::Length(2));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-request-id: r1\r\n\r\n"
        );
        assert_eq!(&buf[..], b"ok", "the body stays for the relay");

        let mut partial = BytesMut::from(&b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 20"[..]);
        let mut out = Vec::new();
        let mut extra = Some(|_: &mut Vec<u8>| {});
        assert!(
            take_head(&mut partial, false, &mut out, &[], &mut extra)
                .unwrap()
                .is_none()
        );
        let mut switch = BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..]);
        assert!(take_head(&mut switch, false, &mut Vec::new(), &[], &mut extra).is_err());
    }

    #[test]
    fn conflicting_response_lengths_are_refused() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(response.parse(raw).unwrap().is_complete());
        assert!(rewrite_response(&response, false, &mut Vec::new(), &[], |_| {}).is_err());
    }

    #[test]
    fn chunked_scanner_finds_the_end_across_any_split() {
        let body = b"5;ext=1\r\nhello\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut scanner = ChunkedScanner::default();
            let (used, done) = scanner.advance(&body[..split]).unwrap();
            if done {
                assert_eq!(used, end);
                continue;
            }
            assert_eq!(used, split);
            let (rest, done) = scanner.advance(&body[split..]).unwrap();
            assert!(done);
            assert_eq!(split + rest, end);
        }
        let mut scanner = ChunkedScanner::default();
        assert_eq!(scanner.advance(b"0\r\n\r\n").unwrap(), (5, true));
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"fffffffffffffffffff\r\n",
        ] {
            assert!(ChunkedScanner::default().advance(bad).is_err(), "{bad:?}");
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
