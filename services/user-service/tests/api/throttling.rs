//! Login abuse: failed logins are throttled per account (in-process or through Redis), with
//! answers that reveal nothing; password hashing is bounded, a flood is shed with 503s.

use std::future::IntoFuture;
use std::time::Duration;

use platform_redis::RedisConfig;
use platform_testing::{Backend, RedisNamespace};
use serde_json::Value;
use user_service::UserServiceConfig;
use user_service::passwords::{HashingLimits, PasswordConfig};

use crate::helpers::{PASSWORD, TestApp, problem, spawn_with, unique_email};

const LOCKOUT: Duration = Duration::from_secs(2);

/// Three failures lock an account for two seconds.
fn throttled(config: &mut UserServiceConfig) {
    config.throttle.max_failures = 3;
    config.throttle.lockout = LOCKOUT;
}

async fn refused(app: &TestApp, email: &str, password: &str) -> Value {
    problem(app.login(email, password).await, 401).await
}

async fn locks_an_account_until_the_lock_ends(app: &TestApp) {
    let email = unique_email();
    app.register(&email, PASSWORD, "Locked").await;
    let wrong_password = refused(app, &email, "not the password").await;
    refused(app, &email, "not the password").await;
    refused(app, &email, "not the password").await;
    // Locked: the right password is refused too, with the very same answer.
    let locked = refused(app, &email.to_uppercase(), PASSWORD).await;
    assert_eq!(locked, wrong_password);

    // An unknown email is locked the same way: a lock says nothing about existence.
    let nobody = unique_email();
    for _ in 0..3 {
        assert_eq!(refused(app, &nobody, "guess").await, wrong_password);
    }
    assert_eq!(refused(app, &nobody, "guess").await, wrong_password);

    tokio::time::sleep(LOCKOUT + Duration::from_millis(200)).await;
    app.login_ok(&email, PASSWORD).await;
}

async fn a_locked_account_refuses_even_the_right_password_until_the_lock_ends(backend: Backend) {
    let app = spawn_with(backend, throttled).await;
    locks_an_account_until_the_lock_ends(&app).await;
}

async fn a_successful_login_resets_the_failure_count(backend: Backend) {
    let app = spawn_with(backend, throttled).await;
    let email = unique_email();
    app.register(&email, PASSWORD, "Forgetful").await;
    for _ in 0..2 {
        refused(&app, &email, "not the password").await;
    }
    app.login_ok(&email, PASSWORD).await;
    for _ in 0..2 {
        refused(&app, &email, "not the password").await;
    }
    app.login_ok(&email, PASSWORD).await;
}

platform_testing::backend_tests!(
    a_locked_account_refuses_even_the_right_password_until_the_lock_ends,
    a_successful_login_resets_the_failure_count,
);

async fn replicas_sharing_redis_share_the_failure_counts() {
    let namespace = RedisNamespace::create();
    let shared = |config: &mut UserServiceConfig| {
        throttled(config);
        config.redis = Some(RedisConfig::new(&namespace.url));
        config.throttle.key_prefix = format!("{}.login", namespace.namespace);
    };
    let one = spawn_with(Backend::Sqlite, shared).await;
    locks_an_account_until_the_lock_ends(&one).await;

    // A second replica (its own database: the throttle only needs the email) sees the
    // failures counted by the first.
    let two = spawn_with(Backend::Sqlite, shared).await;
    let email = unique_email();
    one.register(&email, PASSWORD, "Shared").await;
    two.register(&email, PASSWORD, "Shared").await;
    refused(&one, &email, "wrong").await;
    refused(&two, &email, "wrong").await;
    refused(&one, &email, "wrong").await;
    refused(&two, &email, PASSWORD).await;
}

platform_testing::redis_tests!(replicas_sharing_redis_share_the_failure_counts);

/// Argon2 bounded: one hash at a time, two waiting, so a burst of logins gets 401s for those
/// that were hashed and 503s (with `Retry-After`) for the rest; never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_shed_with_503_and_never_fails() {
    let app = spawn_with(Backend::Sqlite, |config| {
        config.passwords = PasswordConfig {
            memory_kib: 8 * 1024,
            iterations: 2,
            parallelism: 1,
        };
        config.hashing = HashingLimits {
            max_concurrent: 1,
            max_queue: 2,
            queue_timeout: Duration::from_secs(5),
        };
        config.throttle.max_failures = 0;
    })
    .await;
    let email = unique_email();
    app.register(&email, PASSWORD, "Flooded").await;
    let logins = (0..24).map(|_| tokio::spawn(app.login(&email, "wrong password").into_future()));
    let mut shed = 0;
    let mut refused = 0;
    for login in futures::future::join_all(logins).await {
        let response = login.unwrap();
        match response.status().as_u16() {
            401 => refused += 1,
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                problem(response, 503).await;
                shed += 1;
            }
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert!(refused >= 1 && shed >= 1, "401: {refused}, 503: {shed}");
    // Once the burst is over, logins are hashed again.
    app.login_ok(&email, PASSWORD).await;
}
