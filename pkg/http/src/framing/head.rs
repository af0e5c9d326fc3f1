//! The request head as bytes: where it ends, its size limits, and the strict scan run beside
//! httparse so that what one finds is what the other finds.

use super::fields::check_request;
use super::{Framing, Refusal};

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

/// A request head at the start of a buffer, as the platform frames it.
#[derive(Debug)]
pub enum Head<'h, 'b> {
    /// Not all there yet, and nothing wrong with what has come.
    Incomplete,
    /// More header fields than the caller's array holds.
    TooManyHeaders,
    /// A whole head that passed every check.
    Complete {
        /// The head's length, blank line included.
        len: usize,
        /// The parsed request line and fields, borrowing `buf` and the caller's array.
        request: httparse::Request<'h, 'b>,
        /// What the fields declare about the body and the connection.
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

#[cfg(test)]
mod tests {
    use super::super::BodyFraming;
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
}
