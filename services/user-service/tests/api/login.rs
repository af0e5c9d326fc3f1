//! `POST /api/v1/auth/login`.

use std::time::{Duration, Instant};

use base64::Engine;
use platform_testing::Backend;
use serde_json::Value;
use user_service::passwords::PasswordConfig;

use crate::helpers::{JWT_SECRET, PASSWORD, problem, spawn_app, spawn_with, unique_email};

async fn login_returns_a_bearer_pair_with_the_documented_claims(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    let user: Value = app
        .register(&email, PASSWORD, "Ada")
        .await
        .json()
        .await
        .unwrap();
    let response = app.login(&email.to_uppercase(), PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["expires_in"], 900,
        "JWT_EXPIRATION defaults to 15 minutes"
    );
    assert!(body["refresh_token"].as_str().unwrap().len() >= 43);

    let token = body["access_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["microservices-platform"]);
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["iss"], "microservices-platform");
    assert_eq!(claims["aud"], "microservices-platform");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

async fn wrong_password_and_unknown_email_get_the_same_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    app.register(&email, PASSWORD, "Ada").await;
    let wrong_password = problem(app.login(&email, "not the password").await, 401).await;
    let unknown_email = problem(app.login(&unique_email(), PASSWORD).await, 401).await;
    let malformed_email = problem(app.login("nobody", PASSWORD).await, 401).await;
    assert_eq!(wrong_password, unknown_email);
    assert_eq!(wrong_password, malformed_email);
    problem(app.login(&email, &"x".repeat(10_000)).await, 401).await;
}

async fn missing_login_fields_are_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post("/api/v1/auth/login")
        .json(&serde_json::json!({"email": "a@b.co"}))
        .await;
    let body = problem(response, 422).await;
    assert!(body["errors"]["password"].is_array());
}

platform_testing::backend_tests!(
    login_returns_a_bearer_pair_with_the_documented_claims,
    wrong_password_and_unknown_email_get_the_same_401,
    missing_login_fields_are_422,
);

async fn timed_401(app: &crate::helpers::TestApp, email: &str, password: &str) -> Duration {
    let started = Instant::now();
    assert_eq!(app.login(email, password).await.status(), 401);
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// No user enumeration by timing: an unknown email costs the same Argon2 work as a wrong
/// password, and so does a locked account (even with its right password). Without the dummy
/// verification an unknown email answers in about a millisecond, against tens of milliseconds
/// for a real verification (a ratio near 0.02); the bounds below leave room for noise, as a
/// wrong password also writes its failure to the database, which a loaded disk slows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_emails_and_locked_accounts_cost_as_much_as_a_wrong_password() {
    let app = spawn_with(Backend::Sqlite, |config| {
        config.passwords = PasswordConfig::default();
        config.throttle.max_failures = 3;
    })
    .await;
    let locked = unique_email();
    app.register(&locked, PASSWORD, "Locked").await;
    for _ in 0..3 {
        timed_401(&app, &locked, "not the password").await;
    }
    // Wrong passwords each on a fresh account, so none of them is locked.
    let mut fresh = Vec::new();
    for _ in 0..9 {
        let email = unique_email();
        app.register(&email, PASSWORD, "Timed").await;
        fresh.push(email);
    }
    // Interleaved, so every kind sees the same machine load.
    let (mut wrong, mut unknown, mut throttled) = (Vec::new(), Vec::new(), Vec::new());
    for email in &fresh {
        wrong.push(timed_401(&app, email, "not the password").await);
        unknown.push(timed_401(&app, &unique_email(), "not the password").await);
        throttled.push(timed_401(&app, &locked, PASSWORD).await);
    }
    let wrong_password = median(wrong);
    for (kind, samples) in [("unknown email", unknown), ("locked account", throttled)] {
        let other = median(samples);
        let ratio = other.as_secs_f64() / wrong_password.as_secs_f64();
        assert!(
            (0.3..3.0).contains(&ratio),
            "{kind} {other:?} vs wrong password {wrong_password:?} (ratio {ratio:.2})"
        );
    }
}
