//! Balancing, health checks, circuit breakers, retries, budgets and timeouts, against real
//! upstream servers that fail, hang or recover on command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform_auth::Role;
use std::collections::HashMap;
use std::time::Duration;

use platform_testing::eventually;
use serde_json::{Value, json};
use support::{Fake, TestGateway, config, user_token, with_routes};

fn two_endpoints(a: &Fake, b: &Fake, balancer: &str, extra_route: &str) -> String {
    format!(
        "[services.users]\nupstreams = [{{url = \"{}\", weight = 3}}, {{url = \"{}\", weight = 1}}]\nbalancer = \"{balancer}\"\n\n[[routes]]\nprefix = \"/api/v1/users\"\nservice = \"users\"\nauth = \"public\"\n{extra_route}\n",
        a.url, b.url
    )
}

async fn who_answers(gateway: &TestGateway, requests: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..requests {
        let response = gateway.get("/api/v1/users/me").by(user_token()).await;
        let echo: Value = response.json().await.unwrap();
        *counts
            .entry(echo["server"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_and_weighted_round_robin_spread_load_as_configured() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let gateway = TestGateway::start(with_routes(
        config(&[]),
        &two_endpoints(&a, &b, "round_robin", ""),
    ))
    .await;
    let counts = who_answers(&gateway, 40).await;
    assert_eq!((counts["a"], counts["b"]), (20, 20), "{counts:?}");

    let gateway = TestGateway::start(with_routes(
        config(&[]),
        &two_endpoints(&a, &b, "weighted_round_robin", ""),
    ))
    .await;
    let counts = who_answers(&gateway, 40).await;
    assert_eq!(
        (counts["a"], counts["b"]),
        (30, 10),
        "weights 3:1: {counts:?}"
    );
}

#[tokio::test]
async fn power_of_two_choices_steers_away_from_a_slow_endpoint() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    b.set(|behaviour| behaviour.delay = Duration::from_millis(300));
    let gateway =
        TestGateway::start(with_routes(config(&[]), &two_endpoints(&a, &b, "p2c", ""))).await;
    // A request every 10 ms: b's answers take 300 ms, so requests pile up in flight there while
    // a's finish at once, and new requests go to a.
    let mut requests = Vec::new();
    for _ in 0..40 {
        let call = gateway.get("/api/v1/users/me").by(user_token());
        requests.push(tokio::spawn(async move {
            let echo: Value = call.await.json().await.unwrap();
            echo["server"].as_str().unwrap().to_owned()
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for request in requests {
        *counts.entry(request.await.unwrap()).or_insert(0) += 1;
    }
    assert!(counts.get("a").copied().unwrap_or(0) >= 34, "{counts:?}");
}

#[tokio::test]
async fn failing_health_checks_take_an_endpoint_out_and_recovery_brings_it_back() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let gateway = TestGateway::start(with_routes(
        config(&[]),
        &two_endpoints(&a, &b, "round_robin", ""),
    ))
    .await;
    b.set(|behaviour| behaviour.healthy = false);
    eventually("b to be unhealthy", Duration::from_secs(3), || async {
        gateway.health().await["services"]["users"]["endpoints"][1]["healthy"] == false
    })
    .await;
    let before = b.hits();
    let counts = who_answers(&gateway, 10).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(b.hits(), before, "no traffic to the unhealthy endpoint");

    b.set(|behaviour| behaviour.healthy = true);
    eventually("b to be healthy again", Duration::from_secs(3), || async {
        gateway.health().await["services"]["users"]["endpoints"][1]["healthy"] == true
    })
    .await;
    let counts = who_answers(&gateway, 10).await;
    assert_eq!(counts.get("b"), Some(&5), "back in rotation: {counts:?}");
}

#[tokio::test]
async fn a_failing_endpoint_opens_its_breaker_and_it_closes_after_recovery() {
    let broken = Fake::start("broken").await;
    broken.set(|behaviour| behaviour.status = 500);
    let mut cfg = with_routes(
        config(&[]),
        &format!(
            "[services.users]\nupstreams = [\"{}\"]\n[[routes]]\nprefix = \"/api/v1/users\"\nservice = \"users\"\nauth = \"public\"\nretries = 0\n",
            broken.url
        ),
    );
    cfg.health_check_interval = Duration::from_secs(3600);
    let gateway = TestGateway::start(cfg).await;

    for _ in 0..5 {
        let response = gateway.get("/api/v1/users/me").by(user_token()).await;
        assert_eq!(response.status(), 500);
    }
    // Open: answered at once, without reaching the upstream.
    let hits = broken.hits();
    let started = std::time::Instant::now();
    let response = gateway.get("/api/v1/users/me").by(user_token()).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(broken.hits(), hits, "the open breaker spared the upstream");
    let health = gateway.health().await;
    assert_eq!(health["services"]["users"]["circuit_breaker"], "open");
    let metrics = gateway.metrics().await;
    assert_eq!(
        metrics.sum(
            "circuit_breaker_state",
            &[("upstream", "users"), ("endpoint", broken.url.as_str())]
        ),
        1.0,
        "{}",
        metrics.text()
    );

    // The upstream recovers; within the open time plus one round of probes, traffic flows.
    broken.set(|behaviour| behaviour.status = 200);
    let recovered = std::time::Instant::now();
    eventually("traffic to flow again", Duration::from_secs(3), || async {
        gateway
            .get("/api/v1/users/me")
            .by(user_token())
            .await
            .status()
            == 200
    })
    .await;
    assert!(
        recovered.elapsed() < Duration::from_secs(1),
        "closed {:?} after recovery",
        recovered.elapsed()
    );
    for _ in 0..3 {
        let response = gateway.get("/api/v1/users/me").by(user_token()).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        gateway.health().await["services"]["users"]["circuit_breaker"],
        "closed"
    );
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_another_endpoint() {
    let (bad, good) = (Fake::start("bad").await, Fake::start("good").await);
    bad.set(|behaviour| behaviour.status = 503);
    let gateway = TestGateway::start(with_routes(
        config(&[]),
        &two_endpoints(&bad, &good, "round_robin", ""),
    ))
    .await;
    for _ in 0..6 {
        let response = gateway.get("/api/v1/users/me").by(user_token()).await;
        assert_eq!(response.status(), 200, "a 503 is retried elsewhere");
    }
    // A PUT whose body may have reached the upstream is not sent again without a key...
    bad.set(|behaviour| behaviour.status = 502);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = gateway.put("/api/v1/users/me").body("the same body").await;
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.contains(&502), "{statuses:?}");
    // ...and with one it is, the body sent again whole.
    for _ in 0..4 {
        let response = gateway
            .put("/api/v1/users/me")
            .header("idempotency-key", "k-1")
            .body("the same body twice")
            .await;
        assert_eq!(response.status(), 200);
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["body"], "the same body twice");
    }
}

/// A PUT that changes state by an amount (an inventory delta) on a route not declared
/// idempotent: when the upstream applies it and then answers too late, it is not sent again.
async fn a_delta_that_timed_out_is_applied_once(fast_path: bool) {
    let products = Fake::start("products").await;
    products.set(|behaviour| behaviour.delay = Duration::from_millis(400));
    let mut cfg = with_routes(
        config(&[]),
        &format!(
            "[services.products]\nupstreams = [\"{}\"]\n[[routes]]\nprefix = \"/api/v1/admin/products\"\nservice = \"products\"\nauth = \"admin\"\ntimeout = \"3s\"\ntry_timeout = \"150ms\"\nretries = 2\n",
            products.url
        ),
    );
    cfg.fast_path = fast_path;
    let gateway = TestGateway::start(cfg).await;
    let admin = support::token(Role::Admin, uuid::Uuid::now_v7());
    let response = gateway
        .put("/api/v1/admin/products/7/inventory")
        .by(&admin)
        .json(&json!({"delta": 5}))
        .await;
    assert_eq!(response.status(), 504);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(products.hits(), 1, "the delta reached the upstream once");

    // The same failure on a GET is retried: what the count above shows is the policy.
    let response = gateway.get("/api/v1/admin/products/7").by(&admin).await;
    assert_eq!(response.status(), 504);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(products.hits(), 1 + 3, "a GET is tried three times");
}

#[tokio::test]
async fn a_delta_that_timed_out_is_applied_once_on_the_fast_path() {
    a_delta_that_timed_out_is_applied_once(true).await;
}

#[tokio::test]
async fn a_delta_that_timed_out_is_applied_once_through_hyper() {
    a_delta_that_timed_out_is_applied_once(false).await;
}

#[tokio::test]
async fn a_post_is_retried_only_with_an_idempotency_key() {
    let only = Fake::start("only").await;
    only.set(|behaviour| behaviour.status = 503);
    let gateway = TestGateway::start(with_routes(
        config(&[]),
        &format!("[services.users]\nupstreams = [\"{}\"]\n[[routes]]\nprefix = \"/api/v1/users\"\nservice = \"users\"\nauth = \"public\"\nretries = 2\n", only.url),
    ))
    .await;
    let response = gateway.post("/api/v1/users").body("{}").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        only.hits(),
        1,
        "a POST without Idempotency-Key is never repeated"
    );

    let response = gateway
        .post("/api/v1/users")
        .header("idempotency-key", "k-1")
        .body("{}")
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(only.hits(), 4, "with a key: the attempt and two retries");
}

#[tokio::test]
async fn the_retry_budget_caps_amplification_during_an_outage() {
    let down = Fake::start("down").await;
    down.set(|behaviour| behaviour.status = 503);
    let mut cfg = with_routes(
        config(&[]),
        &format!(
            "[services.users]\nupstreams = [\"{}\"]\n[[routes]]\nprefix = \"/api/v1/users\"\nservice = \"users\"\nauth = \"public\"\nretries = 3\n",
            down.url
        ),
    );
    // Breakers off, so that only the budget limits retries.
    cfg.breaker.min_requests = 100_000;
    cfg.retry.budget_ratio = 0.1;
    let gateway = TestGateway::start(cfg).await;
    for _ in 0..300 {
        gateway.get("/api/v1/users/me").by(user_token()).await;
    }
    let hits = down.hits();
    // Without a budget: 4 attempts each = 1200. With it: 300 + 10 % + the floor (5/s over 10 s).
    assert!(
        hits <= 300 + 30 + 50 + 5,
        "{hits} upstream hits for 300 requests"
    );
    assert!(hits > 300, "some retries still happen");
}

#[tokio::test]
async fn slow_upstreams_get_504_at_the_route_timeout() {
    let slow = Fake::start("slow").await;
    slow.set(|behaviour| behaviour.delay = Duration::from_secs(3));
    let gateway = TestGateway::start(with_routes(
        config(&[]),
        &format!("[services.users]\nupstreams = [\"{}\"]\n[[routes]]\nprefix = \"/api/v1/users\"\nservice = \"users\"\nauth = \"public\"\ntimeout = \"1s\"\ntry_timeout = \"300ms\"\nretries = 1\n", slow.url),
    ))
    .await;
    let started = std::time::Instant::now();
    let response = gateway.get("/api/v1/users/me").by(user_token()).await;
    assert_eq!(response.status(), 504);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow.hits(), 2, "per-try timeout, then one retry");
}
