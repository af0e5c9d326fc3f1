//! Who the client is, and what a client may hold: forwarding headers believed only from
//! `TRUSTED_PROXIES` (rightmost untrusted hop), IPv6 clients limited by their /64, and event
//! streams counted against the concurrency limit for as long as they last. Each on both of
//! the gateway's paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::num::NonZeroU32;
use std::time::Duration;

use serde_json::Value;
use support::{Fake, TestGateway, config};

async fn echo(gateway: &TestGateway, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut call = gateway.get("/api/v1/products/echo");
    if let Some(chain) = forwarded_for {
        call = call
            .header("x-forwarded-for", chain)
            .header("x-forwarded-proto", "https")
            .header("forwarded", "for=203.0.113.200");
    }
    call.await
}

async fn gateway(products: &Fake, trusted: &str, fast_path: bool) -> TestGateway {
    let mut cfg = config(&[("product-service", products.url.as_str())]);
    cfg.fast_path = fast_path;
    cfg.rate_limit_per_minute = NonZeroU32::new(2);
    cfg.server.trusted_proxies = platform_http::TrustedProxies::parse(trusted).unwrap();
    TestGateway::start(cfg).await
}

async fn spoofed_headers_from_an_untrusted_peer_change_nothing(fast_path: bool) {
    let products = Fake::start("products").await;
    let gateway = gateway(&products, "10.0.0.0/8", fast_path).await;
    let first = echo(&gateway, Some("198.51.100.1")).await;
    assert_eq!(first.status(), 200);
    let seen: Value = first.json().await.unwrap();
    assert_eq!(
        seen["headers"]["x-forwarded-for"], "127.0.0.1",
        "the peer, not the claim"
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert!(seen["headers"].get("forwarded").is_none());
    // A new claim per request does not buy a new bucket.
    assert_eq!(echo(&gateway, Some("198.51.100.2")).await.status(), 200);
    assert_eq!(echo(&gateway, Some("198.51.100.3")).await.status(), 429);
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_change_nothing_on_the_fast_path() {
    spoofed_headers_from_an_untrusted_peer_change_nothing(true).await;
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_change_nothing_through_hyper() {
    spoofed_headers_from_an_untrusted_peer_change_nothing(false).await;
}

async fn a_chain_through_a_trusted_proxy_names_the_client(fast_path: bool) {
    let products = Fake::start("products").await;
    let gateway = gateway(&products, "127.0.0.0/8, 10.0.0.0/8", fast_path).await;
    // The client claimed 1.2.3.4; the proxy at 10.1.1.1 saw 198.51.100.7.
    let response = echo(&gateway, Some("1.2.3.4, 198.51.100.7, 10.1.1.1")).await;
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["x-forwarded-for"], "198.51.100.7");
    assert_eq!(
        seen["headers"]["x-forwarded-proto"], "https",
        "a trusted proxy's word"
    );
    // Buckets are the clients', not the proxy's.
    assert_eq!(echo(&gateway, Some("198.51.100.7")).await.status(), 200);
    assert_eq!(echo(&gateway, Some("198.51.100.7")).await.status(), 429);
    assert_eq!(echo(&gateway, Some("198.51.100.8")).await.status(), 200);
    // IPv6 clients are limited by their /64.
    assert_eq!(echo(&gateway, Some("2001:db8:1:2::1")).await.status(), 200);
    assert_eq!(
        echo(&gateway, Some("2001:db8:1:2::ffff")).await.status(),
        200
    );
    assert_eq!(
        echo(&gateway, Some("2001:db8:1:2:aaaa::3")).await.status(),
        429,
        "the same /64"
    );
    assert_eq!(echo(&gateway, Some("2001:db8:1:3::1")).await.status(), 200);
}

#[tokio::test]
async fn a_chain_through_a_trusted_proxy_names_the_client_on_the_fast_path() {
    a_chain_through_a_trusted_proxy_names_the_client(true).await;
}

#[tokio::test]
async fn a_chain_through_a_trusted_proxy_names_the_client_through_hyper() {
    a_chain_through_a_trusted_proxy_names_the_client(false).await;
}

/// An upstream whose `/api/v1/notifications/stream` never ends (an event stream).
async fn streaming_upstream() -> String {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/api/v1/notifications/stream",
            get(|| async {
                let ticks = futures::stream::unfold(0u64, |n| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, std::io::Error>(format!("data: {n}\n\n")), n + 1))
                });
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(ticks),
                )
            }),
        )
        .route("/api/v1/notifications", get(|| async { "[]" }))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn event_streams_hold_a_slot_while_they_last(fast_path: bool) {
    let upstream = streaming_upstream().await;
    let mut cfg = config(&[("notification-service", upstream.as_str())]);
    cfg.fast_path = fast_path;
    cfg.max_concurrent_requests = 2;
    let gateway = TestGateway::start(cfg).await;
    let token = support::user_token();
    let get = |path: &str| gateway.get(path).by(&token);
    let open = || get("/api/v1/notifications/stream");
    let mut first = open().await;
    let mut second = open().await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    // Both are streaming...
    assert!(first.chunk().await.unwrap().is_some());
    assert!(second.chunk().await.unwrap().is_some());
    // ...so a third request of any kind is shed.
    let third = get("/api/v1/notifications").await;
    assert_eq!(third.status(), 503);
    // A stream that ends gives its slot back.
    drop(first);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = get("/api/v1/notifications").await;
        if next.status() == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "the closed stream's slot was not released");
    drop(second);
}

#[tokio::test]
async fn event_streams_hold_a_concurrency_slot_while_they_last_on_the_fast_path() {
    event_streams_hold_a_slot_while_they_last(true).await;
}

#[tokio::test]
async fn event_streams_hold_a_concurrency_slot_while_they_last_through_hyper() {
    event_streams_hold_a_slot_while_they_last(false).await;
}
