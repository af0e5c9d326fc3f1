//! HTTP/1.1 message framing, strictly (RFC 9112 §2–7): where a request head ends, how long
//! its body is, and which heads are refused outright.
//!
//! Request smuggling lives in the gap between two parsers that frame the same bytes
//! differently. This module is the one framing decision of the platform: the gateway's fast
//! path calls it on every request it parses, and [`crate::guard`] calls it on every request
//! hyper is about to see (on every HTTP/1 server of the platform), so a message that two
//! reasonable parsers could frame differently never reaches either. Refused, with the status
//! and a reason:
//! - `Content-Length` together with `Transfer-Encoding`; a `Content-Length` that is not one
//!   plain number (signs, hex, lists), or repeated with another value;
//! - `Transfer-Encoding` other than exactly `chunked` (one coding: the platform decodes no
//!   other), or on HTTP/1.0;
//! - obs-fold, a bare CR or LF anywhere in the head, whitespace before a header's colon,
//!   control characters (httparse's strict grammar);
//! - no `Host` on HTTP/1.1, several `Host`s, or an invalid one;
//! - a request line over [`MAX_REQUEST_LINE`] (414) or a head over the limit (431);
//! - `CONNECT` (405: nothing here tunnels);
//! - in chunked bodies: sizes that are not 1–16 hex digits, bad extensions, a missing CRLF
//!   after data, bare LFs, oversized extensions or trailers ([`ChunkedScanner`]).

use std::fmt;

use bytes::BytesMut;
use http::StatusCode;

use crate::problem::{PROBLEM_JSON, Problem};

/// Longest request line accepted (nginx's default buffer for one line).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Most header fields in one head (hyper's own limit).
pub const MAX_HEADERS: usize = 100;

/// Size limits of a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// The whole head, request line included (431 beyond).
    pub max_head_bytes: usize,
    /// The request line (414 beyond).
    pub max_request_line: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_request_line: MAX_REQUEST_LINE,
        }
    }
}

/// Why a request was refused before anything acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// Says what was wrong, never echoing the input.
    pub reason: &'static str,
}

impl Refusal {
    pub const fn bad(reason: &'static str) -> Self {
        Self {
            status: 400,
            reason,
        }
    }

    /// The refusal as the platform's one error body.
    pub fn problem(&self) -> Problem {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let kind = match self.status {
            405 => "method-not-allowed",
            408 => "request-timeout",
            414 => "uri-too-long",
            431 => "headers-too-large",
            503 => "too-many-connections",
            _ => "malformed-request",
        };
        let problem = Problem::new(status)
            .with_type(kind)
            .with_detail(self.reason);
        if self.status == 503 {
            problem.with_retry_after(1)
        } else {
            problem
        }
    }

    /// The whole response, written straight to a socket (no hyper behind it): the problem,
    /// and the connection closes after it (after a framing error nothing that follows on the
    /// connection can be trusted).
    pub fn response(&self) -> Vec<u8> {
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n",
            problem.status,
            problem.title,
            body.len()
        )
        .into_bytes();
        if let Some(seconds) = problem.retry_after {
            out.extend_from_slice(format!("retry-after: {seconds}\r\n").as_bytes());
        }
        if self.status == 405 {
            out.extend_from_slice(b"allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        out
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// What the head says about the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyFraming,
    /// The connection closes after this exchange (`Connection: close`, or HTTP/1.0 without
    /// `keep-alive`).
    pub close: bool,
}

/// Where the request head at the start of `buf` ends (the index after its blank line), or
/// `None` while it is incomplete; refuses bare CR/LF, obs-fold and oversized lines or heads as
/// soon as they show, without waiting for the rest.
pub fn find_head_end(buf: &[u8], limits: HeadLimits) -> Result<Option<usize>, Refusal> {
    let mut line_start = 0;
    let mut request_line_seen = false;
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'\r' => {
                match buf.get(i + 1) {
                    None => break,
                    Some(b'\n') => {}
                    Some(_) => return Err(Refusal::bad("A bare CR in the request head.")),
                }
                let line = &buf[line_start..i];
                if !request_line_seen {
                    if line.is_empty() {
                        // Empty lines before the request line are ignored (RFC 9112 §2.2),
                        // but not without end.
                        if i + 2 > 8 {
                            return Err(Refusal::bad("Too many empty lines before the request."));
                        }
                    } else {
                        if line.len() > limits.max_request_line {
                            return Err(too_long());
                        }
                        request_line_seen = true;
                    }
                } else if line.is_empty() {
                    if i + 2 > limits.max_head_bytes {
                        return Err(too_large());
                    }
                    return Ok(Some(i + 2));
                } else if matches!(line[0], b' ' | b'\t') {
                    return Err(Refusal::bad(
                        "Folded header lines (obs-fold) are not accepted.",
                    ));
                }
                i += 2;
                line_start = i;
                continue;
            }
            b'\n' => return Err(Refusal::bad("A bare LF in the request head.")),
            _ => {}
        }
        i += 1;
    }
    if !request_line_seen && buf.len() - line_start > limits.max_request_line {
        return Err(too_long());
    }
    if buf.len() > limits.max_head_bytes {
        return Err(too_large());
    }
    Ok(None)
}

fn too_long() -> Refusal {
    Refusal {
        status: 414,
        reason: "The request line is too long.",
    }
}

fn too_large() -> Refusal {
    Refusal {
        status: 431,
        reason: "The request head is too large.",
    }
}

/// The comma-separated elements of a field value, trimmed.
pub fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|t| t.trim_ascii())
}

/// The framing a parsed request head declares, or why it is refused.
pub fn check_request(request: &httparse::Request<'_, '_>) -> Result<Framing, Refusal> {
    let http11 = match request.version {
        Some(1) => true,
        Some(0) => false,
        _ => return Err(Refusal::bad("Only HTTP/1.0 and HTTP/1.1 are accepted.")),
    };
    if request.method == Some("CONNECT") {
        return Err(Refusal {
            status: 405,
            reason: "CONNECT is not supported.",
        });
    }
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut has_length = false;
    let mut codings = 0usize;
    let mut chunked = false;
    let mut close = !http11;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !valid_host(header.value) {
                return Err(Refusal::bad("The Host header is not a valid host[:port]."));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            // One number per field: a list (`5, 5`) is refused even when its values agree,
            // as hyper refuses it (RFC 9112 §6.3 allows either).
            let value = parse_length(header.value.trim_ascii())
                .ok_or(Refusal::bad("Content-Length must be one number of bytes."))?;
            if length.is_some_and(|previous| previous != value) {
                return Err(Refusal::bad("Conflicting Content-Length values."));
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(Refusal::bad(
                    "HTTP/1.0 requests cannot use Transfer-Encoding.",
                ));
            }
            for coding in tokens(header.value) {
                codings += 1;
                chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
            if header.value.trim_ascii().is_empty() {
                codings += 2;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(header.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    close = false;
                }
            }
        }
    }
    if hosts > 1 {
        return Err(Refusal::bad("More than one Host header."));
    }
    if hosts == 0 && http11 {
        return Err(Refusal::bad("HTTP/1.1 requests must carry a Host header."));
    }
    if codings > 0 && has_length {
        return Err(Refusal::bad(
            "Content-Length and Transfer-Encoding cannot be combined.",
        ));
    }
    let body = if codings > 0 {
        if codings != 1 || !chunked {
            return Err(Refusal::bad(
                "The only transfer coding accepted is a single `chunked`.",
            ));
        }
        BodyFraming::Chunked
    } else if has_length {
        match length {
            Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
            None => return Err(Refusal::bad("Content-Length must be a number of bytes.")),
        }
    } else {
        BodyFraming::None
    };
    Ok(Framing { body, close })
}

/// `1*DIGIT`, at most 18 digits (so it fits a u64 with room to spare).
pub fn parse_length(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 18 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        raw.iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0')),
    )
}

/// `uri-host [":" port]`: reg-name, IPv4 or a bracketed IP literal; empty is allowed (RFC 9112
/// §3.2: a target without an authority has an empty Host).
fn valid_host(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    value.len() <= 255
        && value.iter().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'['
                        | b']'
                        | b'%'
                )
        })
}

/// A request head at the start of a buffer, as the platform frames it.
#[derive(Debug)]
pub enum Head<'h, 'b> {
    /// Not all there yet, and nothing wrong with what has come.
    Incomplete,
    /// More header fields than the caller's array holds.
    TooManyHeaders,
    Complete {
        /// The head's length, blank line included.
        len: usize,
        request: httparse::Request<'h, 'b>,
        framing: Framing,
    },
}

/// The one framing decision of the platform: parses the request head at the start of `buf`
/// into `headers` (httparse's strict grammar), checks its bytes (bare CR/LF, obs-fold, sizes)
/// and what it declares ([`check_request`]). The gateway's fast path calls it with the
/// fields it keeps; [`check_head`] (the guard) with [`MAX_HEADERS`].
pub fn parse_head<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    limits: HeadLimits,
) -> Result<Head<'h, 'b>, Refusal> {
    let mut request = httparse::Request::new(headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        // Still arriving: refused as soon as what has come is already wrong.
        Ok(httparse::Status::Partial) => {
            find_head_end(buf, limits)?;
            return Ok(Head::Incomplete);
        }
        Err(httparse::Error::TooManyHeaders) => return Ok(Head::TooManyHeaders),
        Err(error) => {
            find_head_end(buf, limits)?;
            return Err(Refusal::bad(parse_error(error)));
        }
    };
    // httparse is lenient where the platform is not (bare LF line ends): the head it found
    // must also be the head the strict scan finds.
    match find_head_end(&buf[..len], limits)? {
        Some(end) if end == len => {}
        _ => return Err(Refusal::bad("The request head is malformed.")),
    }
    let framing = check_request(&request)?;
    Ok(Head::Complete {
        len,
        request,
        framing,
    })
}

/// The whole check of the request head at the start of `buf`: its length and framing once it
/// is complete, `None` before.
pub fn check_head(buf: &[u8], limits: HeadLimits) -> Result<Option<(usize, Framing)>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse_head(buf, &mut headers, limits)? {
        Head::Incomplete => Ok(None),
        Head::TooManyHeaders => Err(too_large()),
        Head::Complete { len, framing, .. } => Ok(Some((len, framing))),
    }
}

/// What httparse found wrong, in words that quote nothing of the input.
pub fn parse_error(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => {
            "A header name is invalid (no whitespace is allowed before the colon)."
        }
        httparse::Error::HeaderValue => "A header value contains invalid characters.",
        httparse::Error::NewLine | httparse::Error::Status => "The request head is malformed.",
        httparse::Error::Token => "The request method is invalid.",
        httparse::Error::Version => "Only HTTP/1.0 and HTTP/1.1 are accepted.",
        httparse::Error::TooManyHeaders => "The request head has too many header fields.",
    }
}

/// Where a [`ChunkedScanner`] is in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the size's hex digits (how many so far).
    Size(u8),
    /// Whitespace after the size, before `;` or CR.
    SizeSpace,
    /// Chunk extensions, until CR.
    Extension,
    /// The LF ending a size line.
    SizeLf,
    Data,
    /// CR LF after a chunk's data.
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line starts (or the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        last: bool,
    },
    Done,
}

/// Follows a chunked body as it passes through, to find exactly where it ends, refusing
/// anything but strict framing (RFC 9112 §7.1). Bytes pass through verbatim.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: Chunk,
    size: u64,
    /// Bytes of extensions on the current size line, or of the trailer section.
    extra: usize,
}

/// Extensions on one size line beyond this are refused (hyper allows 16 KiB per body).
const MAX_EXTENSION: usize = 4 * 1024;
/// The trailer section beyond this is refused.
const MAX_TRAILERS: usize = 16 * 1024;

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self {
            state: Chunk::Size(0),
            size: 0,
            extra: 0,
        }
    }
}

/// A chunked body that is not strictly valid chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked framing: {0}")]
pub struct InvalidChunk(pub &'static str);

impl ChunkedScanner {
    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Consumes `bytes`; returns how many belong to the body and whether it ended there.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<(usize, bool), InvalidChunk> {
        self.scan(bytes, |_| {})
    }

    /// [`ChunkedScanner::advance`], appending the chunks' data (without their framing) to
    /// `data`: for a peer that frames bodies its own way (HTTP/2).
    pub fn decode(
        &mut self,
        bytes: &[u8],
        data: &mut BytesMut,
    ) -> Result<(usize, bool), InvalidChunk> {
        self.scan(bytes, |range| data.extend_from_slice(&bytes[range]))
    }

    fn scan(
        &mut self,
        bytes: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, bool), InvalidChunk> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                Chunk::Size(digits) => match (b as char).to_digit(16) {
                    Some(digit) if digits < 16 => {
                        self.size = (self.size << 4) | u64::from(digit);
                        self.state = Chunk::Size(digits + 1);
                    }
                    Some(_) => return Err(InvalidChunk("chunk size over 16 hex digits")),
                    None if digits == 0 => return Err(InvalidChunk("chunk size missing")),
                    None => match b {
                        b'\r' => self.state = Chunk::SizeLf,
                        b';' => self.state = Chunk::Extension,
                        b' ' | b'\t' => self.state = Chunk::SizeSpace,
                        _ => return Err(InvalidChunk("invalid character after chunk size")),
                    },
                },
                Chunk::SizeSpace => match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = Chunk::Extension,
                    _ => return Err(InvalidChunk("whitespace after chunk size not before `;`")),
                },
                Chunk::Extension => {
                    self.extra += 1;
                    if self.extra > MAX_EXTENSION {
                        return Err(InvalidChunk("chunk extensions too long"));
                    }
                    match b {
                        b'\r' => self.state = Chunk::SizeLf,
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
                        _ => return Err(InvalidChunk("control character in chunk extension")),
                    }
                }
                Chunk::SizeLf => {
                    if b != b'\n' {
                        return Err(InvalidChunk("chunk size line not ended by CRLF"));
                    }
                    self.extra = 0;
                    self.state = if self.size == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data
                    };
                }
                Chunk::Data => {
                    let take =
                        (bytes.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    data(i..i + take);
                    i += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr => {
                    if b != b'\r' {
                        return Err(InvalidChunk("chunk data not followed by CRLF"));
                    }
                    self.state = Chunk::DataLf;
                }
                Chunk::DataLf => {
                    if b != b'\n' {
                        return Err(InvalidChunk("chunk data not followed by CRLF"));
                    }
                    self.state = Chunk::Size(0);
                }
                Chunk::TrailerStart => match b {
                    b'\r' => self.state = Chunk::TrailerLf { last: true },
                    b' ' | b'\t' => return Err(InvalidChunk("folded trailer line")),
                    b'\n' => return Err(InvalidChunk("bare LF in trailers")),
                    _ => {
                        self.state = Chunk::TrailerLine;
                        self.trailer_byte()?;
                    }
                },
                Chunk::TrailerLine => {
                    self.trailer_byte()?;
                    match b {
                        b'\r' => self.state = Chunk::TrailerLf { last: false },
                        b'\n' => return Err(InvalidChunk("bare LF in trailers")),
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
                        _ => return Err(InvalidChunk("control character in trailers")),
                    }
                }
                Chunk::TrailerLf { last } => {
                    if b != b'\n' {
                        return Err(InvalidChunk("bare CR in trailers"));
                    }
                    if last {
                        self.state = Chunk::Done;
                        return Ok((i + 1, true));
                    }
                    self.state = Chunk::TrailerStart;
                }
                Chunk::Done => return Ok((i, true)),
            }
            i += 1;
        }
        Ok((i, self.state == Chunk::Done))
    }

    fn trailer_byte(&mut self) -> Result<(), InvalidChunk> {
        self.extra += 1;
        if self.extra > MAX_TRAILERS {
            return Err(InvalidChunk("trailers too long"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[u8]) -> Result<Option<(usize, Framing)>, Refusal> {
        check_head(raw, HeadLimits::default())
    }

    fn framing(raw: &[u8]) -> Framing {
        check(raw).unwrap().unwrap().1
    }

    fn status(raw: &[u8]) -> u16 {
        check(raw).unwrap_err().status
    }

    #[test]
    fn plain_heads_give_their_framing() {
        assert_eq!(
            framing(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Framing {
                body: BodyFraming::None,
                close: false
            }
        );
        assert_eq!(
            framing(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
            ),
            Framing {
                body: BodyFraming::Length(5),
                close: true
            }
        );
        assert_eq!(
            framing(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
            )
            .body,
            BodyFraming::Length(5)
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").body,
            BodyFraming::Chunked
        );
        assert!(
            framing(b"GET / HTTP/1.0\r\n\r\n").close,
            "1.0 closes by default"
        );
        assert!(!framing(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").close);
        assert_eq!(
            check(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT")
                .unwrap()
                .unwrap()
                .0,
            29,
            "a leading empty line is skipped; the head ends before NEXT"
        );
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nX: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        ] {
            let refused = check(raw);
            assert!(
                matches!(refused, Err(Refusal { status: 400, .. })),
                "{:?}: {refused:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn oversized_lines_and_heads_are_refused_without_waiting_for_the_end() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_REQUEST_LINE + 10, b'a');
        assert_eq!(status(&long), 414, "refused while still partial");
        let mut huge = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        while huge.len() < 17 * 1024 {
            huge.extend_from_slice(b"X-Padding: 0123456789012345678901234567890123456789\r\n");
        }
        assert_eq!(status(&huge), 431);
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), 431);
        assert_eq!(
            status(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            405
        );
    }

    #[test]
    fn refusals_are_complete_problem_responses_that_close() {
        let response = Refusal::bad("Conflicting Content-Length values.").response();
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["detail"], "Conflicting Content-Length values.");
    }

    #[test]
    fn chunked_scanner_finds_the_end_across_any_split() {
        let body = b"5;ext=1;q=\"a b\"\r\nhello\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
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
        assert_eq!(
            ChunkedScanner::default()
                .advance(b"A \t;x\r\n0123456789\r\n0\r\n\r\n")
                .unwrap(),
            (24, true)
        );
    }

    #[test]
    fn chunked_decoding_keeps_only_the_data_across_any_split() {
        let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut scanner = ChunkedScanner::default();
            let mut data = BytesMut::new();
            let (used, done) = scanner.decode(&body[..split], &mut data).unwrap();
            if !done {
                let (_, done) = scanner.decode(&body[used..], &mut data).unwrap();
                assert!(done, "split at {split}");
            }
            assert_eq!(&data[..], b"hello, world", "split at {split}");
        }
    }

    #[test]
    fn chunked_scanner_refuses_lenient_framing() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"0x5\r\nhello\r\n",
            b"-5\r\n",
            b" 5\r\nhello\r\n",
            b"5 x\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n",
            b"5;a\x00\r\nhello\r\n",
            b"11111111111111111\r\n",
            b"0\r\nx: 1\n\r\n",
            b"0\r\n x: 1\r\n\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                ChunkedScanner::default().advance(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long_extension = b"1;".to_vec();
        long_extension.resize(MAX_EXTENSION + 10, b'a');
        assert!(ChunkedScanner::default().advance(&long_extension).is_err());
    }
}
