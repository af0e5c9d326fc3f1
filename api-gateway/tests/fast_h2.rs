//! HTTP/2 through the gateway, on both paths: the fast path (hyper's framing, the gateway's
//! own HTTP/1 upstream client) and the router. The same requests must get the same answers
//! from both; only the order of the fields the upstream receives tells the paths apart (the
//! fast path appends the caller's identity after the forwarding fields, the router's proxy
//! sets the forwarding fields last).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use reqwest::Version;
use support::raw::RawUpstream;
use support::{TestGateway, config, user_token};

struct Setup {
    upstream: RawUpstream,
    _gateway: TestGateway,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
    https: String,
}

async fn setup(fast_path: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let upstream = RawUpstream::start().await;
    let mut cfg = config(&[("user-service", &upstream.url)]);
    cfg.fast_path = fast_path;
    let der = support::serve_tls(&mut cfg, dir.path());
    let gateway = TestGateway::start(cfg).await;
    let https = gateway.https();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(&der).unwrap())
        .build()
        .unwrap();
    Setup {
        upstream,
        _gateway: gateway,
        _dir: dir,
        client,
        https,
    }
}

/// What both paths must do with the same HTTP/2 requests; returns the bytes the upstream got.
async fn exercise(fast_path: bool) -> Vec<String> {
    // Bound whole: the gateway and its certificate live until the end.
    let setup = setup(fast_path).await;
    let (upstream, client, https) = (&setup.upstream, &setup.client, &setup.https);
    let token = user_token();

    let response = client
        .get(format!("{https}/api/v1/users/me?n=1"))
        .bearer_auth(&token)
        .header("x-user-role", "admin")
        .header("x-request-id", "req-h2")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2, "h2 by ALPN");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-request-id"], "req-h2");
    assert_eq!(headers["x-custom-case"], "yes");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("strict-transport-security"));
    assert!(!headers.contains_key("x-hop"), "{headers:?}");
    assert_eq!(response.text().await.unwrap(), "ok");

    let response = client
        .post(format!("{https}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{\"a\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");

    // Bodies lose their HTTP/1 framing: chunks, trailers, interim heads, close-delimited.
    for (path, body) in [
        ("chunked", "abcdefg"),
        ("old", "until the end"),
        ("hints", "ok"),
    ] {
        let response = client
            .get(format!("{https}/api/v1/users/{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), body, "{path}");
    }

    // Streamed, not buffered: the first chunk comes while the upstream still holds the rest.
    let mut response = client
        .get(format!("{https}/api/v1/users/paused"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(1), response.chunk())
        .await
        .expect("the first chunk before the upstream's pause ends")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first");
    let rest = response.chunk().await.unwrap().unwrap();
    assert_eq!(&rest[..], b"last");

    // Refused at the edge: the gateway's own problem, with its fields.
    let response = client
        .get(format!("{https}/api/v1/users/me"))
        .header("x-request-id", "req-refused")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-request-id"], "req-refused");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("strict-transport-security"));

    // Outside the route table: the router's page.
    let response = client.get(format!("{https}/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);

    // HEAD: the upstream's head, no body.
    let response = client
        .head(format!("{https}/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");

    // Over `MAX_BODY_BYTES` (64 KiB here): the fast path leaves it to the router, which
    // refuses it before any upstream sees it.
    let before = upstream.requests().len();
    let response = client
        .post(format!("{https}/api/v1/auth/login"))
        .body("x".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    let seen = upstream.requests();
    assert_eq!(
        seen.len(),
        before,
        "nothing of the refused body went upstream"
    );
    let me = &seen[0];
    let lower = me.to_ascii_lowercase();
    assert!(
        me.starts_with("GET /api/v1/users/me?n=1 HTTP/1.1\r\n"),
        "{me}"
    );
    assert!(lower.contains("x-user-role: user\r\n"), "{me}");
    assert!(!lower.contains("admin"), "{me}");
    assert!(lower.contains("x-request-id: req-h2\r\n"), "{me}");
    assert!(lower.contains("x-forwarded-proto: https\r\n"), "{me}");
    assert!(lower.contains("x-forwarded-for: 127.0.0.1\r\n"), "{me}");
    // HTTP/2's split cookie fields reach an HTTP/1.1 upstream as one.
    assert!(lower.contains("\r\ncookie: a=1; b=2\r\n"), "{me}");
    let login = &seen[1];
    assert!(login.starts_with("POST /api/v1/auth/login HTTP/1.1\r\n"));
    assert!(
        login.to_ascii_lowercase().contains("content-length: 7\r\n"),
        "{login}"
    );
    assert!(login.ends_with("\r\n\r\n{\"a\":1}"), "{login}");
    seen
}

/// Whether the caller's identity comes after `X-Forwarded-For` (the fast path's order).
fn identity_last(request: &str) -> bool {
    let lower = request.to_ascii_lowercase();
    let at = |field: &str| lower.find(&format!("\r\n{field}: ")).unwrap();
    at("x-user-id") > at("x-forwarded-for")
}

#[tokio::test]
async fn http2_api_requests_take_the_fast_path_with_the_routers_answers() {
    let seen = exercise(true).await;
    let get = &seen[0];
    assert!(identity_last(get), "served by the fast path: {get}");
}

#[tokio::test]
async fn http2_on_the_router_answers_the_same() {
    let seen = exercise(false).await;
    let get = &seen[0];
    assert!(!identity_last(get), "served by the router: {get}");
}
