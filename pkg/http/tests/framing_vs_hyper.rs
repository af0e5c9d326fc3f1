//! The platform's framing decision against hyper's, on generated requests.
//!
//! Request smuggling is two parsers framing the same bytes differently. The gateway frames
//! every request twice over (its fast path's engine, and hyper behind the kit's guard), both
//! through `platform_http::framing::parse_head`. This property checks that decision against a
//! real hyper server fed the same bytes, over request heads built from valid, odd and hostile
//! parts (lengths with signs, lists and spaces; transfer codings in every case and order;
//! folded lines; bare LFs; repeated or missing `Host`; `Connection` naming framing headers;
//! chunked bodies with bad sizes and extensions):
//! - whatever the platform accepts, hyper accepts too, with a body of the same length;
//! - whatever hyper refuses, the platform refuses.
//!
//! The platform refuses more than hyper does (both lengths at once, codings other than
//! `chunked`, bare LFs, …): that is the point, and allowed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use platform_http::framing::{self, BodyFraming, ChunkedScanner, Head, HeadLimits};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a server made of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Refused (a 4xx/5xx before any handler, or an error reading the body).
    Refused,
    /// A request with a complete body of this many bytes reached the handler.
    Accepted(usize),
    /// Neither: the bytes ran out first.
    Incomplete,
}

/// The platform's verdict: the fast path's head decision (64 fields, as it keeps), then the
/// body by the framing it found.
fn ours(bytes: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let (len, framing) = match framing::parse_head(bytes, &mut headers, HeadLimits::default()) {
        Err(_) => return Verdict::Refused,
        Ok(Head::Incomplete) => return Verdict::Incomplete,
        // The fast path hands these to the guard, which allows 100 fields.
        Ok(Head::TooManyHeaders) => match framing::check_head(bytes, HeadLimits::default()) {
            Err(_) => return Verdict::Refused,
            Ok(None) => return Verdict::Incomplete,
            Ok(Some(found)) => found,
        },
        Ok(Head::Complete { len, framing, .. }) => (len, framing),
    };
    let body = &bytes[len..];
    match framing.body {
        BodyFraming::None => Verdict::Accepted(0),
        BodyFraming::Length(n) => {
            if body.len() as u64 >= n {
                Verdict::Accepted(n as usize)
            } else {
                Verdict::Incomplete
            }
        }
        BodyFraming::Chunked => {
            let mut scanner = ChunkedScanner::default();
            match scanner.advance(body) {
                Err(_) => Verdict::Refused,
                Ok((used, true)) => Verdict::Accepted(decoded_len(&body[..used])),
                Ok((_, false)) => Verdict::Incomplete,
            }
        }
    }
}

/// The payload length of a chunked body already known to be valid.
fn decoded_len(mut body: &[u8]) -> usize {
    let mut total = 0;
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap();
        let size_text = size_text.split([';', ' ', '\t']).next().unwrap();
        let size = usize::from_str_radix(size_text, 16).unwrap();
        if size == 0 {
            return total;
        }
        total += size;
        body = &body[line_end + 2 + size + 2..];
    }
}

/// Hyper's verdict: a real HTTP/1 server connection fed `bytes`, then the client's EOF.
async fn hypers(bytes: Vec<u8>) -> Verdict {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let (tell, mut told) = tokio::sync::mpsc::unbounded_channel::<Result<usize, ()>>();
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let tell = tell.clone();
            async move {
                let body = request.into_body().collect().await;
                let _ = tell.send(body.map(|b| b.to_bytes().len()).map_err(|_| ()));
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
    let connection = tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    client.write_all(&bytes).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
    connection.abort();
    match told.try_recv() {
        Ok(Ok(len)) => Verdict::Accepted(len),
        Ok(Err(())) => {
            // The body ended early or broke: refused if hyper said so, else incomplete.
            if answer.starts_with(b"HTTP/1.1 4") {
                Verdict::Refused
            } else {
                Verdict::Incomplete
            }
        }
        Err(_) if answer.starts_with(b"HTTP/1.1 4") || answer.starts_with(b"HTTP/1.1 5") => {
            Verdict::Refused
        }
        Err(_) => Verdict::Incomplete,
    }
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "CONNECT", "G@T",
    ])
}

fn target() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/api/v1/products",
        "/a?b=c",
        "*",
        "http://shop/a",
        "/a b",
        "/%00",
    ])
}

fn version() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "HTTP/1.1",
        "HTTP/1.1",
        "HTTP/1.1",
        "HTTP/1.0",
        "HTTP/2.0",
        "http/1.1",
        "HTTP/1.1 ",
    ])
}

/// One header line (without its line end), valid, odd or hostile.
fn header() -> impl Strategy<Value = String> {
    let length = prop::sample::select(vec![
        "0",
        "3",
        "5",
        "10",
        " 5",
        "5 ",
        "+5",
        "-1",
        "5, 5",
        "5,6",
        "0x5",
        "",
        "05",
        "99999999999999999999",
        "1 0",
    ]);
    let coding = prop::sample::select(vec![
        "chunked",
        "Chunked",
        "CHUNKED",
        " chunked",
        "chunked ",
        "gzip, chunked",
        "chunked, gzip",
        "chunked, chunked",
        "identity",
        "xchunked",
        "chunked;q=1",
        "",
    ]);
    let connection = prop::sample::select(vec![
        "close",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "close, content-length",
        "upgrade",
    ]);
    let host = prop::sample::select(vec!["shop", "shop:8080", "", "a b", "[::1]:80", "x@y"]);
    prop_oneof![
        3 => length.prop_map(|v| format!("Content-Length: {v}")),
        3 => coding.prop_map(|v| format!("Transfer-Encoding: {v}")),
        2 => connection.prop_map(|v| format!("Connection: {v}")),
        1 => host.prop_map(|v| format!("Host: {v}")),
        1 => Just("Content-Length : 5".to_owned()),
        1 => Just("Transfer-Encoding : chunked".to_owned()),
        1 => Just("Transfer-Encoding\t: chunked".to_owned()),
        1 => Just(" Transfer-Encoding: chunked".to_owned()),
        1 => Just("X-Pad: a\tb".to_owned()),
        1 => Just("X-Pad: a\u{1}b".to_owned()),
        1 => Just("Expect: 100-continue".to_owned()),
        2 => "[a-z]{1,8}".prop_map(|name| format!("X-{name}: value")),
    ]
}

/// A body: raw bytes, a valid chunked body, or a chunked body with a flaw.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop::collection::vec(b'a'..=b'z', 0..24);
    prop_oneof![
        payload.clone(),
        payload.clone().prop_map(|p| chunked(&p, "")),
        payload.clone().prop_map(|p| chunked(&p, ";ext=1")),
        payload.clone().prop_map(|p| {
            let mut body = chunked(&p, "");
            body.insert(0, b' ');
            body
        }),
        payload.prop_map(|p| {
            let mut body = chunked(&p, "");
            if let Some(i) = body.iter().position(|b| *b == b'\r') {
                body.remove(i);
            }
            body
        }),
        Just(b"zz\r\nhello\r\n0\r\n\r\n".to_vec()),
        Just(b"5\r\nhelloXX0\r\n\r\n".to_vec()),
        Just(b"00000000000000005\r\nhello\r\n0\r\n\r\n".to_vec()),
        Just(b"5;a\nb\r\nhello\r\n0\r\n\r\n".to_vec()),
    ]
}

/// `payload` as chunks of up to 7 bytes, each size line carrying `extension`.
fn chunked(payload: &[u8], extension: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for chunk in payload.chunks(7) {
        body.extend_from_slice(format!("{:x}{extension}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

/// The framing a request means to have, before anything odd is added.
#[derive(Debug, Clone, Copy)]
enum Intent {
    Nothing,
    Length,
    Chunked,
}

prop_compose! {
    fn request()(
        method in method(),
        target in target(),
        version in version(),
        host in prop::bool::weighted(0.85),
        intent in prop_oneof![
            Just(Intent::Nothing),
            Just(Intent::Length),
            Just(Intent::Chunked),
        ],
        headers in prop::collection::vec(header(), 0..4),
        bare_lf in prop::collection::vec(prop::bool::weighted(0.05), 8),
        leading_empty_line in prop::bool::weighted(0.05),
        body in body(),
    ) -> Vec<u8> {
        let mut lines = vec![format!("{method} {target} {version}")];
        if host {
            lines.push("Host: shop".to_owned());
        }
        match intent {
            Intent::Nothing => {}
            Intent::Length => lines.push(format!("Content-Length: {}", body.len())),
            Intent::Chunked => lines.push("Transfer-Encoding: chunked".to_owned()),
        }
        lines.extend(headers);
        let mut raw = Vec::new();
        if leading_empty_line {
            raw.extend_from_slice(b"\r\n");
        }
        for (i, line) in lines.iter().enumerate() {
            raw.extend_from_slice(line.as_bytes());
            let lf_only = bare_lf.get(i).copied().unwrap_or(false);
            raw.extend_from_slice(if lf_only { b"\n" } else { b"\r\n" });
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&body);
        raw
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_platform_never_frames_a_request_differently_from_hyper(raw in request()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ours = ours(&raw);
        let hypers = runtime.block_on(hypers(raw.clone()));
        let shown = String::from_utf8_lossy(&raw).into_owned();
        match (&ours, &hypers) {
            (Verdict::Accepted(mine), theirs) => prop_assert_eq!(
                &Verdict::Accepted(*mine), theirs,
                "accepted here, not the same in hyper: {:?}", shown
            ),
            (mine, Verdict::Refused) => prop_assert_eq!(
                mine, &Verdict::Refused,
                "hyper refuses what passes here: {:?}", shown
            ),
            _ => {}
        }
    }
}

/// The generator reaches every outcome (a property over one kind of request proves little).
#[test]
fn the_generated_requests_cover_acceptance_refusal_and_each_framing() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = request();
    let (mut accepted, mut refused, mut chunked, mut length) = (0, 0, 0, 0);
    for _ in 0..2000 {
        let raw = strategy.new_tree(&mut runner).unwrap().current();
        match ours(&raw) {
            Verdict::Accepted(_) => accepted += 1,
            Verdict::Refused => refused += 1,
            Verdict::Incomplete => {}
        }
        let mut headers = [httparse::EMPTY_HEADER; 100];
        if let Ok(Head::Complete { framing, .. }) =
            framing::parse_head(&raw, &mut headers, HeadLimits::default())
        {
            match framing.body {
                BodyFraming::Chunked => chunked += 1,
                BodyFraming::Length(_) => length += 1,
                BodyFraming::None => {}
            }
        }
    }
    let counts =
        format!("accepted {accepted}, refused {refused}, chunked {chunked}, length {length}");
    assert!(accepted > 120, "{counts}");
    assert!(refused > 400, "{counts}");
    assert!(chunked > 60, "{counts}");
    assert!(length > 60, "{counts}");
}
