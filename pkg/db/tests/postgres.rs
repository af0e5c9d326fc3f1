//! Pool settings reach PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use platform_test_backends::{Backend, TestDatabase};
use sea_orm::ConnectionTrait;

async fn statements_are_cut_at_the_query_timeout_and_the_pool_has_the_configured_size() {
    let mut db = TestDatabase::create(Backend::Postgres).await;
    db.config.query_timeout = Duration::from_millis(300);
    db.config.max_connections = 3;
    let pool = platform_db::connect(&db.config, "timeout-probe")
        .await
        .unwrap();
    pool.execute_unprepared("SELECT pg_sleep(0.05)")
        .await
        .unwrap();
    let started = Instant::now();
    let error = pool
        .execute_unprepared("SELECT pg_sleep(5)")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{error}");
    assert!(error.to_string().contains("statement timeout"), "{error}");
    let size = pool
        .get_postgres_connection_pool()
        .options()
        .get_max_connections();
    assert_eq!(size, 3, "DB_MAX_CONNECTIONS sizes the pool");
    pool.close().await.unwrap();
}

platform_test_backends::variant_tests!(
    postgres,
    [platform_test_backends::Need::Postgres],
    (),
    statements_are_cut_at_the_query_timeout_and_the_pool_has_the_configured_size,
);
