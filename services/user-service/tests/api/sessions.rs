//! Refresh-token rotation, reuse detection and logout.

use std::time::Duration;

use platform_testing::Backend;
use serde_json::Value;

use crate::helpers::{problem, spawn_app, spawn_with};

async fn refresh_returns_a_new_pair_and_the_old_token_stops_working(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, tokens) = app.new_user().await;
    let response = app.refresh(&tokens.refresh).await;
    assert_eq!(response.status(), 200);
    let pair: Value = response.json().await.unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    let new_refresh = pair["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, tokens.refresh);
    let new_access = pair["access_token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/v1/users/me").by(new_access).await.status(),
        200
    );
    // The new refresh token works once more.
    assert_eq!(app.refresh(new_refresh).await.status(), 200);
}

async fn reusing_a_rotated_token_revokes_the_whole_family(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, first) = app.new_user().await;
    let second: Value = app.refresh(&first.refresh).await.json().await.unwrap();
    let second = second["refresh_token"].as_str().unwrap().to_owned();

    // The stolen first token is replayed: refused, and the family dies.
    problem(app.refresh(&first.refresh).await, 401).await;
    problem(app.refresh(&second).await, 401).await;

    // Other sessions of the same user are other families and survive.
    let email = user["email"].as_str().unwrap();
    let other = app.login_ok(email, crate::helpers::PASSWORD).await;
    assert_eq!(app.refresh(&other.refresh).await.status(), 200);
}

async fn concurrent_refreshes_of_one_token_succeed_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, tokens) = app.new_user().await;
    let attempts = (0..8).map(|_| {
        let app = &app;
        let token = tokens.refresh.clone();
        async move { app.refresh(&token).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(attempts).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}

async fn logout_ends_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, tokens) = app.new_user().await;
    let response = app.logout(&tokens.refresh).await;
    assert_eq!(response.status(), 204);
    problem(app.refresh(&tokens.refresh).await, 401).await;
    // Logging out again, or with a token that never existed, is harmless.
    let response = app.logout(&tokens.refresh).await;
    assert_eq!(response.status(), 204);
    let response = app.logout("nonsense").await;
    assert_eq!(response.status(), 204);
    problem(
        app.post("/api/v1/auth/logout")
            .json(&serde_json::json!({}))
            .await,
        422,
    )
    .await;
}

async fn unknown_and_expired_refresh_tokens_are_401(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.refresh_token_ttl = Duration::from_secs(1);
    })
    .await;
    problem(app.refresh("made-up-token").await, 401).await;
    let (_, tokens) = app.new_user().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    problem(app.refresh(&tokens.refresh).await, 401).await;
}

platform_testing::backend_tests!(
    refresh_returns_a_new_pair_and_the_old_token_stops_working,
    reusing_a_rotated_token_revokes_the_whole_family,
    concurrent_refreshes_of_one_token_succeed_exactly_once,
    logout_ends_the_session,
    unknown_and_expired_refresh_tokens_are_401,
);
