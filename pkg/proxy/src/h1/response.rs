//! Response heads: parsed from the upstream, checked for a framing that can be relayed
//! safely, and rewritten for the client (interim 1xx ones forwarded as they come).

use bytes::{Buf, BytesMut};
use httparse::Header;

use platform_http::framing::{self, tokens};

use super::Framing;
use super::headers::{MAX_HEADERS, has_token, is_hop_by_hop, put_header, put_number};

/// A response head read from an upstream.
#[derive(Debug)]
pub struct ResponseHead {
    /// The final (non-1xx) status code.
    pub status: u16,
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// The upstream connection may carry another request afterwards.
    pub reusable: bool,
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
pub(super) fn take_head(
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
}
