//! Request heads: whether a request is plain enough for the fast path, and the upstream
//! request written from it, with a length that is always the engine's own.

use httparse::Header;

use platform_http::framing;

use super::headers::{is_hop_by_hop, put_header, put_number};
use crate::Upstream;

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

#[cfg(test)]
mod tests {
    use super::super::MAX_HEADERS;
    use super::*;

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
}
