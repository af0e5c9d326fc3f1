//! Access tokens stop working at once when their user logs out, changes password, is deleted
//! or changes role, not only when they expire; on one replica or across replicas sharing Redis.

use std::time::Duration;

use platform_auth::{AuthError, Jwt, JwtConfig};
use platform_redis::RedisConfig;
use platform_testing::{Backend, RedisNamespace, eventually};
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, PASSWORD, TestApp, Tokens, problem, spawn_app, spawn_with};

const ME: &str = "/api/v1/users/me";

/// A fresh user whose access token works now: (id, email, tokens).
async fn signed_in(app: &TestApp) -> (String, String, Tokens) {
    let (user, tokens) = app.new_user().await;
    assert_eq!(app.get(ME).by(&tokens.access).await.status(), 200);
    let id = user["id"].as_str().unwrap().to_owned();
    let email = user["email"].as_str().unwrap().to_owned();
    (id, email, tokens)
}

async fn logout_makes_the_users_access_tokens_fail_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, email, tokens) = signed_in(&app).await;
    let other_session = app.login_ok(&email, PASSWORD).await;
    let response = app.logout(&tokens.refresh).await;
    assert_eq!(response.status(), 204);
    problem(app.get(ME).by(&tokens.access).await, 401).await;
    // Every access token of the user went; the other session renews its own and goes on.
    problem(app.get(ME).by(&other_session.access).await, 401).await;
    let renewed: Value = app
        .refresh(&other_session.refresh)
        .await
        .json()
        .await
        .unwrap();
    let renewed = renewed["access_token"].as_str().unwrap();
    assert_eq!(app.get(ME).by(renewed).await.status(), 200);
    // And a new login works at once.
    let again = app.login_ok(&email, PASSWORD).await;
    assert_eq!(app.get(ME).by(&again.access).await.status(), 200);
}

async fn a_password_change_makes_older_access_tokens_fail(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, email, tokens) = signed_in(&app).await;
    let response = app
        .put(&format!("/api/v1/users/{id}"))
        .by(&tokens.access)
        .json(&json!({"password": "a brand new password", "current_password": PASSWORD}))
        .await;
    assert_eq!(response.status(), 200);
    problem(app.get(ME).by(&tokens.access).await, 401).await;
    let again = app.login_ok(&email, "a brand new password").await;
    assert_eq!(app.get(ME).by(&again.access).await.status(), 200);
}

async fn deleting_an_account_makes_its_access_tokens_fail(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, _, tokens) = signed_in(&app).await;
    let response = app
        .delete(&format!("/api/v1/users/{id}"))
        .by(&tokens.access)
        .await;
    assert_eq!(response.status(), 204);
    // A 401, not the 404 of a valid token for a missing account.
    problem(app.get(ME).by(&tokens.access).await, 401).await;
}

async fn a_role_change_makes_the_users_access_tokens_fail(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, email, tokens) = signed_in(&app).await;
    // Only administrators change roles.
    let response = app
        .put(&format!("/api/v1/users/{id}"))
        .by(&tokens.access)
        .json(&json!({"role": "admin"}))
        .await;
    problem(response, 403).await;
    assert_eq!(app.get(ME).by(&tokens.access).await.status(), 200);

    let admin = app.admin().await;
    let response = app
        .put(&format!("/api/v1/users/{id}"))
        .by(&admin.access)
        .json(&json!({"role": "admin"}))
        .await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["role"], "admin");
    problem(app.get(ME).by(&tokens.access).await, 401).await;
    // The next token carries the new role.
    let promoted = app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        app.get("/api/v1/users").by(&promoted.access).await.status(),
        200
    );
    // Setting the role it already has changes nothing and revokes nothing.
    let response = app
        .put(&format!("/api/v1/users/{id}"))
        .by(&admin.access)
        .json(&json!({"role": "admin"}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.get("/api/v1/users").by(&promoted.access).await.status(),
        200
    );
}

platform_testing::backend_tests!(
    logout_makes_the_users_access_tokens_fail_at_once,
    a_password_change_makes_older_access_tokens_fail,
    deleting_an_account_makes_its_access_tokens_fail,
    a_role_change_makes_the_users_access_tokens_fail,
);

/// A verifier of its own (as another service or the gateway has), sharing Redis with the
/// user service; its listener started.
fn verifier(redis: &RedisConfig) -> Jwt {
    let jwt = Jwt::connect(JwtConfig::with_secret(JWT_SECRET), Some(redis)).unwrap();
    jwt.revocations().start(std::future::pending());
    jwt
}

async fn subscribed(jwt: &Jwt) {
    eventually(
        "the revocation listener",
        Duration::from_secs(5),
        || async { jwt.revocations().listening() },
    )
    .await;
}

async fn a_revocation_on_one_store_is_seen_by_another_sharing_redis() {
    let namespace = RedisNamespace::create();
    let redis = RedisConfig::new(&namespace.url);
    let app = spawn_with(Backend::Sqlite, |config| config.redis = Some(redis.clone())).await;
    let elsewhere = verifier(&redis);
    subscribed(&elsewhere).await;
    let (_, _, tokens) = signed_in(&app).await;
    assert!(elsewhere.verify(&tokens.access).is_ok());
    app.logout(&tokens.refresh).await;
    eventually(
        "the revocation to arrive",
        Duration::from_millis(500),
        || async { matches!(elsewhere.verify(&tokens.access), Err(AuthError::Revoked(_))) },
    )
    .await;

    // A store that starts (or reconnects) afterwards loads what it missed.
    let late = verifier(&redis);
    subscribed(&late).await;
    assert!(matches!(
        late.verify(&tokens.access),
        Err(AuthError::Revoked(_))
    ));
}

platform_testing::redis_tests!(a_revocation_on_one_store_is_seen_by_another_sharing_redis);
