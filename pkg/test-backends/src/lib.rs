//! The databases and Redis namespaces tests run against; the bottom of the test support.
//!
//! - [`Backend`] and [`TestDatabase`]: a fresh, private database per test, on SQLite (a file in
//!   a temporary directory) or on PostgreSQL (a new database on the server named by
//!   `TEST_DATABASE_URL`, dropped when the test ends, even when it panics). Tests are therefore
//!   independent and safe to run in parallel.
//! - [`backend_tests!`]: runs each listed test once per backend, as `sqlite::name` and
//!   `postgres::name`, so the output shows which backend ran.
//! - [`RedisNamespace`]: a private key namespace on the test Redis, cleaned up afterwards.
//! - [`eventually`]: waiting, bounded, for what a service does in the background.
//! - [`TestApp`]: the one HTTP client of every test that calls an HTTP API:
//!   `app.post(path).by(token).json(&body).await`, `app.metrics().await.sum(name, labels)`.
//! - [`variant_tests!`] / [`redis_tests!`]: the one place a test skips. A variant names what it
//!   [`Need`]s; without that server it skips (and says so) before the test body runs, so test
//!   bodies and spawn helpers never handle a missing backend.
//! - [`postgres_url`] / [`redis_url`]: the servers to use, when configured. Without them the
//!   PostgreSQL and Redis variants skip; with `TEST_REQUIRE_BACKENDS=1` (set by CI) a missing
//!   server fails the test instead, so CI can never silently skip them.
//!
//! A crate of its own, depending on no other platform crate but `platform-config`, so the
//! crates below the services (`platform-db`, `platform-redis`, `platform-cache`,
//! `platform-events`, `platform-http`) can test against real backends and call their test
//! servers without a dependency loop through the service-level helpers of `platform-testing`,
//! which re-exports everything here.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Test support: failing loudly on a broken test environment is the point.
#![allow(clippy::expect_used)]

mod app;

pub use app::{Call, Credential, Metrics, TestApp, assert_documented};
use platform_config::database::DatabaseConfig;
use sea_orm::{ConnectionTrait, Database};

/// The database backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file in a temporary directory; always available.
    Sqlite,
    /// A new database on the `TEST_DATABASE_URL` server; skipped when that is unset (unless
    /// `TEST_REQUIRE_BACKENDS=1`, which makes it a failure).
    Postgres,
}

/// A server a test variant cannot run without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `TEST_DATABASE_URL`.
    Postgres,
    /// `TEST_REDIS_URL`.
    Redis,
}

impl Need {
    fn var(self) -> &'static str {
        match self {
            Self::Postgres => "TEST_DATABASE_URL",
            Self::Redis => "TEST_REDIS_URL",
        }
    }
}

/// Whether a test needing `needs` must skip here: true (after saying which server is missing)
/// when one is not configured. With `TEST_REQUIRE_BACKENDS=1` a missing server panics instead.
/// The macros call it before a test's body; nothing else needs to.
pub fn skip(needs: &[Need]) -> bool {
    for need in needs {
        if server_url(need.var()).is_none() {
            eprintln!("skipped: {} is not set", need.var());
            return true;
        }
    }
    false
}

fn required() -> bool {
    std::env::var("TEST_REQUIRE_BACKENDS").is_ok_and(|v| v == "1" || v == "true")
}

fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if required() => panic!("{var} must be set when TEST_REQUIRE_BACKENDS=1"),
        _ => None,
    }
}

/// `TEST_DATABASE_URL`: a PostgreSQL server where tests may create databases.
pub fn postgres_url() -> Option<String> {
    server_url("TEST_DATABASE_URL")
}

/// `TEST_REDIS_URL`: a Redis server tests may use.
pub fn redis_url() -> Option<String> {
    server_url("TEST_REDIS_URL")
}

/// A private database for one test; dropped (PostgreSQL) or deleted (SQLite) with this value.
#[derive(Debug)]
pub struct TestDatabase {
    /// What it runs on.
    pub backend: Backend,
    /// How to reach it, as a service would read it: the SQLite data directory, or the
    /// PostgreSQL URL of the test's own database (pool of 10).
    pub config: DatabaseConfig,
    /// Holds the SQLite file's directory alive.
    dir: tempfile::TempDir,
    /// The PostgreSQL database to drop, and the server URL to drop it from.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh database on `backend`.
    ///
    /// # Panics
    /// On PostgreSQL when `TEST_DATABASE_URL` is not set: a test reaches here through
    /// [`backend_tests!`] (or [`variant_tests!`] needing [`Need::Postgres`]), which skips first.
    pub async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        match backend {
            Backend::Sqlite => Self {
                backend,
                config: DatabaseConfig::sqlite(dir.path()),
                dir,
                postgres: None,
            },
            Backend::Postgres => {
                let server = postgres_url().expect(
                    "TEST_DATABASE_URL is not set: run PostgreSQL tests through backend_tests!, \
                     which skips them",
                );
                let name = format!("test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(server.as_str())
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                // template0 is never connected to, so concurrent CREATE DATABASE cannot fail
                // with "source database is being accessed by other users".
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                let mut config = DatabaseConfig::url(with_database(&server, &name));
                config.data_dir = dir.path().to_path_buf();
                config.max_connections = 10;
                Self {
                    backend,
                    config,
                    dir,
                    postgres: Some((server, name)),
                }
            }
        }
    }

    /// The directory tests may use for files (SQLite lives here too).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        // Drop may run inside (or outside) a runtime, and during a panic: use a thread with a
        // runtime of its own. WITH (FORCE) ends the pool's connections still open.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(server.as_str()).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A key namespace of its own on the test Redis (`test-<uuid>`); its keys are deleted when the
/// value is dropped, so parallel tests never see each other's streams.
#[derive(Debug)]
pub struct RedisNamespace {
    /// The server, from `TEST_REDIS_URL`.
    pub url: String,
    /// `test-<uuid>`: the test's keys start with it and a `.`; those are deleted on drop.
    pub namespace: String,
}

impl RedisNamespace {
    /// A fresh namespace on the `TEST_REDIS_URL` server.
    ///
    /// # Panics
    /// When `TEST_REDIS_URL` is not set: a test reaches here through [`redis_tests!`] (or a
    /// [`variant_tests!`] variant needing [`Need::Redis`]), which skips first.
    pub fn create() -> Self {
        let url = redis_url().expect(
            "TEST_REDIS_URL is not set: run Redis tests through redis_tests! or variant_tests!, \
             which skip them",
        );
        Self {
            url,
            namespace: format!("test-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}.*", self.namespace))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// Polls `condition` every 20 ms until it holds, failing after `limit`: how a test waits for
/// something a service does in the background (a relay, a consumer, a cache invalidation).
pub async fn eventually(
    what: &str,
    limit: std::time::Duration,
    mut condition: impl AsyncFnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `postgres://u@h:5432/postgres?x=y` with the database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// Runs each named `async fn(Backend)` once on SQLite and once on PostgreSQL, as
/// `sqlite::name` and `postgres::name`:
///
/// ```ignore
/// async fn registers_a_user(backend: Backend) { let app = spawn_app(backend).await; … }
/// platform_testing::backend_tests!(registers_a_user, rejects_duplicates);
/// ```
///
/// The PostgreSQL variant skips when `TEST_DATABASE_URL` is not set (see [`skip`]), so a test
/// body and its spawn helper always get a database.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $crate::variant_tests!(sqlite, [], ($crate::Backend::Sqlite), $($name),*);
        $crate::variant_tests!(
            postgres, [$crate::Need::Postgres], ($crate::Backend::Postgres), $($name),*
        );
    };
}

/// Runs each named `async fn()` when Redis is configured, as `redis::name`; skips otherwise.
#[macro_export]
macro_rules! redis_tests {
    ($($name:ident),* $(,)?) => {
        $crate::variant_tests!(redis, [$crate::Need::Redis], (), $($name),*);
    };
}

/// The general form: a module `variant` with one test per `name`, each calling
/// `super::name(args…)` unless a server in `needs` is missing (then it skips, see [`skip`]).
/// A leading `threads = N,` sets the runtime's worker threads (2 otherwise).
///
/// ```ignore
/// platform_testing::variant_tests!(
///     postgres_redis, [Need::Postgres, Need::Redis], (Backend::Postgres, Bus::Redis),
///     delivers_an_order_event, retries_a_failed_send,
/// );
/// ```
#[macro_export]
macro_rules! variant_tests {
    ($variant:ident, $needs:tt, $args:tt, $($name:ident),* $(,)?) => {
        $crate::variant_tests!(threads = 2, $variant, $needs, $args, $($name),*);
    };
    (threads = $threads:literal, $variant:ident, $needs:tt, $args:tt, $($name:ident),* $(,)?) => {
        mod $variant {
            // The arguments are written as in the calling module: resolve them there.
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                async fn $name() {
                    if $crate::skip(&$needs) {
                        return;
                    }
                    super::$name $args .await
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t3"),
            "postgres://h:5432/t3"
        );
    }

    #[test]
    fn nothing_needed_never_skips() {
        assert!(!skip(&[]));
    }
}
