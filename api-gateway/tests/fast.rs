//! The HTTP/1 fast path on the wire: raw clients and a raw upstream, so the tests see exactly
//! which bytes pass. Header-name case tells the paths apart: the fast path forwards an
//! upstream's `X-Custom-Case` as written, hyper would lower-case it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::raw::RawUpstream;
use support::{TestGateway, config, user_token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(upstream: &RawUpstream) -> TestGateway {
    TestGateway::start(config(&[("user-service", &upstream.url)])).await
}

/// A new connection to the gateway that has sent `raw`.
async fn send_raw(gateway: &TestGateway, raw: &[u8]) -> TcpStream {
    let mut client = TcpStream::connect(gateway.address()).await.unwrap();
    client.write_all(raw).await.unwrap();
    client
}

/// Reads one response whose body is `Content-Length` delimited; returns it whole.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
) -> String {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = response.parse(pending) {
            let body_len: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| {
                    std::str::from_utf8(h.value).unwrap().parse().unwrap()
                });
            if pending.len() >= len + body_len {
                let whole: Vec<u8> = pending.drain(..len + body_len).collect();
                return String::from_utf8(whole).unwrap();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed; had {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&chunk[..n]);
    }
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    String::from_utf8(all).unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_over_one_upstream_connection() {
    let upstream = RawUpstream::start().await;
    let gateway = gateway(&upstream).await;
    let token = user_token();
    let mut client = TcpStream::connect(gateway.address()).await.unwrap();
    let mut requests = String::new();
    for i in 0..3 {
        requests.push_str(&format!(
            "GET /api/v1/users/me?n={i} HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer {token}\r\nX-User-Id: forged\r\nX-User-Role: admin\r\nX-Forwarded-For: 203.0.113.9\r\nX-Request-Id: req-{i}\r\n\r\n"
        ));
    }
    requests.push_str("POST /api/v1/auth/login HTTP/1.1\r\nHost: edge.example\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
    client.write_all(requests.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..3 {
        let response = read_response(&mut client, &mut pending).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        // As the upstream wrote it: the fast path served this.
        assert!(response.contains("X-Custom-Case: yes\r\n"), "{response}");
        assert!(response.contains(&format!("x-request-id: req-{i}\r\n")));
        assert!(
            !response.contains("from-upstream"),
            "the gateway's request id replaces the upstream's: {response}"
        );
        assert!(
            !response.contains("X-Hop") && !response.contains("keep-alive"),
            "hop-by-hop headers and those Connection names are dropped: {response}"
        );
        assert!(response.ends_with("\r\n\r\nok"));
    }
    let response = read_response(&mut client, &mut pending).await;
    assert!(response.contains("X-Custom-Case: yes\r\n"), "{response}");

    let seen = upstream.requests();
    assert_eq!(seen.len(), 4);
    for (i, request) in seen.iter().take(3).enumerate() {
        let lower = request.to_ascii_lowercase();
        assert!(request.starts_with(&format!("GET /api/v1/users/me?n={i} HTTP/1.1\r\n")));
        assert!(!lower.contains("forged") && !lower.contains("x-user-role: admin"));
        assert!(lower.contains("x-user-role: user\r\n"), "{request}");
        // The client's own claim is not passed on: it is not a trusted proxy.
        assert!(
            lower.contains("x-forwarded-for: 127.0.0.1\r\n"),
            "{request}"
        );
        assert!(!lower.contains("203.0.113.9"), "{request}");
        assert!(lower.contains("x-forwarded-host: edge.example\r\n"));
        assert!(lower.contains(&format!(
            "host: {}\r\n",
            upstream.url.trim_start_matches("http://")
        )));
        assert!(lower.contains(&format!("x-request-id: req-{i}\r\n")));
    }
    assert!(seen[3].ends_with("\r\n\r\n{\"a\":1}"), "{}", seen[3]);
    assert!(!seen[3].to_ascii_lowercase().contains("x-user-id"));
    assert_eq!(
        upstream.api_connections(),
        1,
        "one kept-alive upstream connection carried all four"
    );
}

/// HTTPS takes the fast path too once the handshake is done (with HTTP/1.1 by ALPN): the
/// upstream's header case survives, the upstream is told the client's scheme, and answers,
/// proxied or the gateway's own, carry HSTS.
#[tokio::test]
async fn https_requests_take_the_fast_path_after_the_handshake() {
    let upstream = RawUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&[("user-service", &upstream.url)]);
    support::serve_tls(&mut cfg, dir.path());
    // Thread per core, as the gateway runs by default: each handshake on its own thread.
    cfg.server.http_threads = 2;
    let gateway = TestGateway::start(cfg).await;
    let token = user_token();
    let mut client = support::tls_connect(&gateway.address()).await;
    let requests = format!(
        "GET /api/v1/users/me HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer {token}\r\n\r\n\
         GET /api/v1/users/me HTTP/1.1\r\nHost: edge.example\r\n\r\n"
    );
    client.write_all(requests.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let proxied = read_response(&mut client, &mut pending).await;
    assert!(proxied.starts_with("HTTP/1.1 200 OK\r\n"), "{proxied}");
    assert!(proxied.contains("X-Custom-Case: yes\r\n"), "{proxied}");
    let hsts = format!(
        "strict-transport-security: {}\r\n",
        platform_http::middleware::HSTS
    );
    assert!(proxied.contains(&hsts), "{proxied}");
    // Refused at the edge without a token: written by the fast path, HSTS included.
    let refused = read_response(&mut client, &mut pending).await;
    assert!(refused.starts_with("HTTP/1.1 401 "), "{refused}");
    assert!(refused.contains(&hsts), "{refused}");

    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let lower = seen[0].to_ascii_lowercase();
    assert!(lower.contains("x-forwarded-proto: https\r\n"), "{lower}");
    assert!(lower.contains("x-user-role: user\r\n"), "{lower}");
}

#[tokio::test]
async fn chunked_and_close_delimited_responses_pass_through_intact() {
    let upstream = RawUpstream::start().await;
    let gateway = gateway(&upstream).await;
    let token = user_token();
    let mut client = send_raw(&gateway, format!("GET /api/v1/users/chunked HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\nGET /api/v1/users/old HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes()).await;
    let all = read_to_close(&mut client).await;
    let (first, second) = all.split_at(all.rfind("HTTP/1.1 200 OK").unwrap());
    assert!(first.contains("X-Custom-Case: yes\r\n"), "{first}");
    assert!(first.contains("transfer-encoding: chunked\r\n"), "{first}");
    assert!(
        first.ends_with("\r\n\r\n3;x=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-trailer: t\r\n\r\n"),
        "chunks, extensions and trailers pass verbatim: {first:?}"
    );
    assert!(second.contains("connection: close\r\n"), "{second}");
    assert!(
        second.ends_with("\r\n\r\nuntil the end"),
        "a body delimited by close ends with the connection: {second:?}"
    );
}

#[tokio::test]
async fn interim_responses_reach_the_client_before_the_final_one() {
    let upstream = RawUpstream::start().await;
    let gateway = gateway(&upstream).await;
    let token = user_token();
    let mut client = send_raw(
        &gateway,
        format!(
            "GET /api/v1/users/hints HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let mut pending = Vec::new();
    let interim = read_response(&mut client, &mut pending).await;
    assert_eq!(
        interim,
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    );
    let last = read_response(&mut client, &mut pending).await;
    assert!(last.starts_with("HTTP/1.1 200 OK\r\n"), "{last}");
    assert!(last.ends_with("\r\n\r\nok"), "{last}");
}

#[tokio::test]
async fn what_the_fast_path_does_not_take_goes_to_hyper_with_nothing_lost() {
    let upstream = RawUpstream::start().await;
    let gateway = gateway(&upstream).await;
    let token = user_token();

    // A chunked request body, then a plain request on the same connection: hyper serves both
    // (it lower-cases header names) and the body arrives whole.
    let mut client = send_raw(&gateway, format!("POST /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\nGET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes()).await;
    let mut pending = Vec::new();
    for _ in 0..2 {
        let response = read_response(&mut client, &mut pending).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("x-custom-case: yes\r\n"), "{response}");
    }
    assert!(upstream.requests()[0].ends_with("\r\n4\r\nbody\r\n0\r\n\r\n"));

    // Request smuggling shapes (conflicting lengths, both framings at once) are refused and
    // reach no upstream (tests/smuggling.rs has the whole table).
    let before = upstream.requests().len();
    for hostile in [
        &b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"[..],
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ] {
        let mut client = send_raw(&gateway, hostile).await;
        let answer = read_to_close(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    assert_eq!(upstream.requests().len(), before);

    // The gateway's own pages are hyper's too.
    let mut client = send_raw(&gateway, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let response = read_response(&mut client, &mut Vec::new()).await;
    assert!(response.contains("\"status\""), "{response}");
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_not_reused() {
    let upstream = RawUpstream::start().await;
    let gateway = gateway(&upstream).await;
    let token = user_token();
    let mut client = TcpStream::connect(gateway.address()).await.unwrap();
    let mut pending = Vec::new();
    for _ in 0..3 {
        // Not idempotent, no Idempotency-Key: the gateway may not send it twice, so it must
        // not pick the connection the upstream closed meanwhile.
        client
            .write_all(format!("POST /api/v1/users/close-after HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 2\r\n\r\nhi").as_bytes())
            .await
            .unwrap();
        let response = read_response(&mut client, &mut pending).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(upstream.requests().len(), 3, "each POST sent once");
    assert_eq!(upstream.api_connections(), 3);
}

#[tokio::test]
async fn refusals_from_the_edge_are_written_by_the_fast_path() {
    let upstream = RawUpstream::start().await;
    let gateway = gateway(&upstream).await;
    let mut client = send_raw(&gateway, b"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\n\r\nHEAD /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n").await;
    let mut pending = Vec::new();
    let response = read_response(&mut client, &mut pending).await;
    assert!(
        response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{response}"
    );
    assert!(response.contains("content-type: application/problem+json\r\n"));
    assert!(response.contains("www-authenticate: Bearer\r\n"));
    assert!(response.contains("x-request-id: "));
    assert!(response.contains("\"status\":401"));
    // HEAD: the same head, no body.
    while !pending.ends_with(b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        pending.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8(pending).unwrap();
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    assert!(head.contains("content-length: "), "{head}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = [0u8; 16];
    assert!(
        matches!(client.try_read(&mut extra), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no body after a HEAD answer"
    );

    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_stop_closes_idle_connections_at_once_and_lets_the_request_in_flight_finish() {
    let upstream = support::Fake::start("users").await;
    let gateway = TestGateway::start(config(&[("user-service", &upstream.url)])).await;
    let token = user_token();
    let request = format!(
        "GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );

    // One connection served a request and is idle; the next request will be slow.
    let mut idle = send_raw(&gateway, request.as_bytes()).await;
    let response = read_response(&mut idle, &mut Vec::new()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    upstream.set(|b| b.delay = Duration::from_millis(500));
    let mut busy = send_raw(&gateway, request.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    drop(gateway);
    let closed = tokio::time::timeout(Duration::from_millis(300), idle.read(&mut [0u8; 64]))
        .await
        .expect("an idle connection is closed at once");
    assert_eq!(closed.unwrap(), 0);
    let all = read_to_close(&mut busy).await;
    assert!(
        all.starts_with("HTTP/1.1 200"),
        "the request in flight is answered before its connection closes: {all}"
    );
}
