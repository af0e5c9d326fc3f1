//! Password hashing never runs on the async workers.
//!
//! The service runs on a single-threaded runtime here. If Argon2 ran on that thread, a health
//! check sent while logins are hashing would wait for at least one whole hash; on the blocking
//! pool it is answered at once.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use platform_testing::Backend;
use user_service::passwords::PasswordConfig;

use crate::helpers::{PASSWORD, spawn_with, unique_email};

#[tokio::test(flavor = "current_thread")]
async fn hashing_leaves_the_async_runtime_free() {
    let app = spawn_with(Backend::Sqlite, |config| {
        // Expensive on purpose: each hash takes well over a hundred milliseconds.
        config.passwords = PasswordConfig {
            memory_kib: 64 * 1024,
            iterations: 4,
            parallelism: 1,
        };
    })
    .await;
    let email = unique_email();
    app.register(&email, PASSWORD, "Blocked").await;
    let started = Instant::now();
    app.login(&email, "wrong password").await;
    let one_hash = started.elapsed();

    let logins: Vec<_> = (0..3)
        .map(|_| tokio::spawn(app.login(&email, "wrong password").into_future()))
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.get("/health").await;
        assert_eq!(response.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    for login in logins {
        login.await.unwrap();
    }
    assert!(
        slowest < one_hash / 2,
        "a health check took {slowest:?} while logins hashed; one hash takes {one_hash:?}"
    );
}
