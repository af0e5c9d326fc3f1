//! What a request head's fields declare: its body framing and whether the connection
//! closes, with every field that could make two parsers disagree (lengths, codings, `Host`)
//! held to one reading.

use super::Refusal;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: no framing field, or `Content-Length: 0`.
    None,
    /// Exactly this many bytes (`Content-Length`, never 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`, to be read with a [`super::ChunkedScanner`].
    Chunked,
}

/// What the head says about the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Where the body ends.
    pub body: BodyFraming,
    /// The connection closes after this exchange (`Connection: close`, or HTTP/1.0 without
    /// `keep-alive`).
    pub close: bool,
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
