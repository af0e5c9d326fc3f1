//! Edge policies: authentication, rate limits, CORS, size and concurrency limits, TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform_auth::Role;
use std::num::NonZeroU32;
use std::time::Duration;

use platform_testing::eventually;
use serde_json::Value;
use support::{Fake, TestGateway, config, token, user_token};

#[tokio::test]
async fn routes_enforce_their_auth_requirement_before_reaching_the_service() {
    let (users, events) = (Fake::start("users").await, Fake::start("events").await);
    let gateway = TestGateway::start(config(&[
        ("user-service", &users.url),
        ("event-store", &events.url),
    ]))
    .await;

    // User routes: no token, a bad token, another algorithm → 401, and the service never sees them.
    let response = gateway.get("/api/v1/users/me").await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = gateway.get("/api/v1/users/me").by("not-a-token").await;
    assert_eq!(response.status(), 401);
    let expired = {
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({"sub": uuid::Uuid::now_v7(), "role": "user", "iat": now - 100, "exp": now - 10, "jti": "x", "iss": "microservices-platform", "aud": "microservices-platform"});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(support::SECRET.as_bytes()),
        )
        .unwrap()
    };
    let response = gateway.get("/api/v1/users/me").by(expired).await;
    assert_eq!(response.status(), 401);
    assert_eq!(users.hits(), 0);

    // Admin routes: a user token → 403; an admin token passes.
    let response = gateway.get("/api/v1/admin/events").by(user_token()).await;
    assert_eq!(response.status(), 403);
    assert_eq!(events.hits(), 0);
    let admin = uuid::Uuid::now_v7();
    let echo: Value = gateway
        .get("/api/v1/admin/events")
        .by(token(Role::Admin, admin))
        .header("x-user-role", "superuser")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["x-user-id"], admin.to_string().as_str());
    assert_eq!(echo["headers"]["x-user-role"], "admin");

    // Public routes pass without a token (and a bad one is left to the service).
    assert_eq!(gateway.post("/api/v1/users").body("{}").await.status(), 200);
    let response = gateway.post("/api/v1/auth/login").by("junk").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn clients_over_the_limit_get_429_with_ratelimit_headers_per_ip_and_per_user() {
    let users = Fake::start("users").await;
    let mut cfg = config(&[("user-service", &users.url)]);
    cfg.rate_limit_per_minute = NonZeroU32::new(3);
    let gateway = TestGateway::start(cfg).await;

    for remaining in (0..3).rev() {
        let response = gateway.post("/api/v1/auth/login").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let response = gateway.post("/api/v1/auth/login").await;
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after));
    assert_eq!(response.headers()["ratelimit-remaining"], "0");
    assert_eq!(users.hits(), 3);
    for path in ["/health", "/metrics", "/ready"] {
        assert_ne!(
            gateway.get(path).await.status(),
            429,
            "{path} is never limited"
        );
    }
    let metrics = gateway.metrics().await;
    assert_eq!(
        metrics.sum(
            "rate_limited_total",
            &[("service", "api-gateway"), ("scope", "ip")]
        ),
        1.0,
        "{}",
        metrics.text()
    );
}

#[tokio::test]
async fn a_per_route_limit_overrides_the_default_and_users_have_their_own_bucket() {
    let users = Fake::start("users").await;
    let mut cfg = support::with_routes(
        config(&[]),
        &format!(
            "[services.users]\nupstreams = [\"{}\"]\n[[routes]]\nprefix = \"/api/v1/users\"\nservice = \"users\"\nauth = \"user\"\nrate_limit_per_minute = 2\n[[routes]]\nprefix = \"/api/v1/open\"\nservice = \"users\"\nauth = \"public\"\nrate_limit_per_minute = 0\n",
            users.url
        ),
    );
    cfg.rate_limit_per_minute = NonZeroU32::new(1000);
    let gateway = TestGateway::start(cfg).await;
    let alice = token(Role::User, uuid::Uuid::now_v7());
    let statuses: Vec<u16> = futures::future::join_all(
        (0..3).map(|_| gateway.get("/api/v1/users/me").by(&alice).send()),
    )
    .await
    .into_iter()
    .map(|r| r.status().as_u16())
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );
    // Unlimited route.
    for _ in 0..20 {
        assert_eq!(gateway.get("/api/v1/open").await.status(), 200);
    }
}

async fn two_gateways_on_one_redis_share_the_limit_and_survive_its_loss() {
    let redis = platform_testing::RedisNamespace::create();
    let users = Fake::start("users").await;
    let make = |url: &str| {
        let mut cfg = config(&[("user-service", &users.url)]);
        cfg.rate_limit_per_minute = NonZeroU32::new(4);
        cfg.redis = Some(platform_redis::RedisConfig::new(url));
        // The buckets' keys (per user and per IP) live in the test's namespace.
        cfg.rate_limit_prefix = format!("{}.ratelimit", redis.namespace);
        cfg
    };
    let alice = token(Role::User, uuid::Uuid::now_v7());
    let first = TestGateway::start(make(&redis.url)).await;
    let second = TestGateway::start(make(&redis.url)).await;
    let mut allowed = 0;
    for i in 0..8 {
        let gateway = if i % 2 == 0 { &first } else { &second };
        let status = gateway.get("/api/v1/users/me").by(&alice).await.status();
        if status == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4, "one bucket for both replicas");

    // Redis unreachable: the gateway keeps serving with its own limits.
    let lost = TestGateway::start(make("redis://127.0.0.1:1")).await;
    let bob = token(Role::User, uuid::Uuid::now_v7());
    let started = std::time::Instant::now();
    let mut served = 0;
    for _ in 0..6 {
        if lost.get("/api/v1/users/me").by(&bob).await.status() == 200 {
            served += 1;
        }
    }
    assert_eq!(served, 4, "in-process limits apply");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "Redis failures do not slow requests down"
    );
    drop(redis);
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let users = Fake::start("users").await;
    let mut cfg = config(&[("user-service", &users.url)]);
    let mut env = platform_config::Env::from_pairs([
        ("CORS_ALLOWED_ORIGINS", "https://shop.example.com"),
        ("CORS_MAX_AGE", "1h"),
    ]);
    cfg.cors = platform_middleware::CorsConfig::from_env(&mut env);
    let gateway = TestGateway::start(cfg).await;
    let preflight = |origin: &'static str| {
        gateway
            .request(reqwest::Method::OPTIONS, "/api/v1/users/me")
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
    };
    let response = preflight("https://shop.example.com").await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert!(
        response.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert_eq!(response.headers()["access-control-max-age"], "3600");
    assert_eq!(users.hits(), 0, "preflights are answered at the edge");
    let response = preflight("https://evil.example.com").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let response = gateway
        .get("/api/v1/users/me")
        .header("origin", "https://shop.example.com")
        .by(user_token())
        .await;
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
}

#[tokio::test]
async fn oversized_bodies_and_headers_are_refused_and_overload_is_shed() {
    let users = Fake::start("users").await;
    users.set(|b| b.delay = Duration::from_millis(300));
    let mut cfg = config(&[("user-service", &users.url)]);
    cfg.server.max_body_bytes = 1024;
    cfg.server.connections.max_header_bytes = 2048;
    cfg.max_concurrent_requests = 2;
    let gateway = TestGateway::start(cfg).await;

    let response = gateway
        .post("/api/v1/auth/login")
        .body(vec![b'x'; 4096])
        .await;
    assert_eq!(response.status(), 413);
    // A streamed body without a length is cut at the limit too.
    let chunks = futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let response = gateway
        .post("/api/v1/auth/login")
        .body(reqwest::Body::wrap_stream(chunks))
        .await;
    assert_eq!(
        response.status(),
        413,
        "the client's excess, not the upstream's failure"
    );

    let response = gateway
        .get("/api/v1/auth/x")
        .header("x-big", "z".repeat(3000))
        .await;
    assert_eq!(response.status(), 431);

    let burst =
        futures::future::join_all((0..6).map(|_| gateway.post("/api/v1/auth/login").send())).await;
    let statuses: Vec<u16> = burst.into_iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.contains(&503),
        "beyond two in flight, requests are shed: {statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
}

/// The certificate the server presents.
async fn served_certificate(addr: &str) -> Vec<u8> {
    let tls = support::tls_connect(addr).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn tls_serves_http2_and_http1_and_reloads_a_changed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let users = Fake::start("users").await;
    let mut cfg = config(&[("user-service", &users.url)]);
    let first = support::serve_tls(&mut cfg, dir.path());
    let gateway = TestGateway::start(cfg).await;
    let https = gateway.https();
    let root = reqwest::Certificate::from_der(&first).unwrap();

    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .build()
        .unwrap();
    let response = h2.get(format!("{https}/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains",
        "HTTPS answers carry HSTS"
    );
    // HTTP/2 is served by hyper: it tells the upstream the client's scheme as well.
    let response = h2
        .post(format!("{https}/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .http1_only()
        .build()
        .unwrap();
    let response = h1
        .post(format!("{https}/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(
        echo["headers"]["x-forwarded-proto"], "https",
        "the scheme the client used, though the upstream hop is plain HTTP"
    );

    // A new certificate on disk is picked up without a restart.
    let addr = gateway.address();
    assert_eq!(served_certificate(&addr).await, first);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = support::certificate(dir.path());
    eventually(
        "the changed certificate to be served",
        Duration::from_secs(6),
        async || served_certificate(&addr).await == second,
    )
    .await;
}

async fn answers_carry_the_security_headers(fast_path: bool) {
    let users = Fake::start("users").await;
    let mut cfg = config(&[("user-service", &users.url)]);
    cfg.fast_path = fast_path;
    let gateway = TestGateway::start(cfg).await;
    // A proxied answer, one the gateway makes itself (401), and its own page.
    let proxied = gateway.get("/api/v1/users/me").by(user_token()).await;
    let refused = gateway.get("/api/v1/users/me").await;
    let own = gateway.get("/health").await;
    for (what, response) in [("proxied", proxied), ("refused", refused), ("own", own)] {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
        assert!(
            headers.get("strict-transport-security").is_none(),
            "{what}: no HSTS over plain HTTP"
        );
        if what != "proxied" {
            assert_eq!(headers["cache-control"], "no-store", "{what}");
        }
    }
}

#[tokio::test]
async fn answers_carry_the_security_headers_on_the_fast_path() {
    answers_carry_the_security_headers(true).await;
}

#[tokio::test]
async fn answers_carry_the_security_headers_through_hyper() {
    answers_carry_the_security_headers(false).await;
}

platform_testing::redis_tests!(two_gateways_on_one_redis_share_the_limit_and_survive_its_loss);
