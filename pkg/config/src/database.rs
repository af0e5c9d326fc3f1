//! The database section every service reads: where and how to connect.
//!
//! Here rather than in `platform-db` so that what only needs the settings (test support,
//! the service kit's configuration) does not link the database driver.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Env, ExposeSecret, SecretString};

/// Connections to an embedded SQLite file, unless configured otherwise.
pub const SQLITE_POOL: u32 = 4;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`: a `postgres://` URL (a secret: it may hold a password), or unset for
    /// SQLite. An explicit `sqlite:` URL is accepted too.
    pub url: Option<SecretString>,
    /// `DATA_DIR`: where embedded SQLite files live.
    pub data_dir: PathBuf,
    /// `DB_MAX_CONNECTIONS`: pool size (default 25 for PostgreSQL, 4 for SQLite).
    pub max_connections: u32,
    /// `DB_QUERY_TIMEOUT`: PostgreSQL `statement_timeout`; SQLite's wait for a write lock.
    pub query_timeout: Duration,
    /// `DB_CONNECT_TIMEOUT`: how long to wait for a connection (at start-up and from the pool).
    pub connect_timeout: Duration,
    /// `DB_SCHEMA`: PostgreSQL schema the service's tables live in (created if missing), so
    /// several services can share one database without sharing tables. `platform up` sets it
    /// per service. Ignored by SQLite, where each service has its own file anyway.
    pub schema: Option<String>,
}

impl DatabaseConfig {
    /// Reads the section, with the defaults given on each field (`DATA_DIR` `./data`,
    /// `DB_QUERY_TIMEOUT` 30s, `DB_CONNECT_TIMEOUT` 10s); problems are recorded in `env`.
    pub fn from_env(env: &mut Env) -> Self {
        let url = env.secret("DATABASE_URL");
        if let Some(url) = &url {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                env.report(
                    "DATABASE_URL",
                    "a postgres://user:password@host:5432/db URL (or sqlite:path), or unset for an embedded SQLite file",
                );
            }
        }
        // SQLite has one writer at a time; more connections only invalidate each other's page
        // caches after every write and add a worker thread each. Measured with
        // scripts/bench-orders.sh (checkout through the whole platform): 4 connections per
        // service give the throughput of 25 with half the p99.
        let postgres = url
            .as_ref()
            .is_some_and(|url| !url.expose_secret().starts_with("sqlite:"));
        let default_pool = if postgres { 25 } else { SQLITE_POOL };
        Self {
            max_connections: env.in_range("DB_MAX_CONNECTIONS", default_pool, 1..=10_000),
            url,
            data_dir: env.or("DATA_DIR", PathBuf::from("./data")),
            query_timeout: env.or("DB_QUERY_TIMEOUT", Duration::from_secs(30)),
            connect_timeout: env.or("DB_CONNECT_TIMEOUT", Duration::from_secs(10)),
            schema: env.optional_with(
                "DB_SCHEMA",
                "a schema name of lower-case letters, digits and underscores",
                |raw| {
                    let valid = !raw.is_empty()
                        && raw.len() <= 63
                        && raw.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                        && raw
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    valid.then(|| raw.to_owned())
                },
            ),
        }
    }

    /// Embedded SQLite under `data_dir`, for tests and `platform up`.
    pub fn sqlite(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            url: None,
            data_dir: data_dir.into(),
            max_connections: SQLITE_POOL,
            query_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            schema: None,
        }
    }

    /// A PostgreSQL (or explicit SQLite) URL.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: Some(SecretString::from(url.into())),
            ..Self::sqlite("./data")
        }
    }

    /// The URL actually used for `service`, with any password masked: safe to log.
    pub fn describe(&self, service: &str) -> String {
        match &self.url {
            Some(url) => redact(url.expose_secret()),
            None => format!("sqlite:{}", self.sqlite_path(service).display()),
        }
    }

    /// The embedded SQLite file of `service` (used when no URL is set).
    pub fn sqlite_path(&self, service: &str) -> PathBuf {
        self.data_dir.join(format!("{service}.db"))
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            // Query parameters may carry a password too (`?password=`); drop them.
            let path = path.split('?').next().unwrap_or_default();
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => format!(
            "{scheme}://{authority}{}",
            path.split('?').next().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_defaults_to_the_backend_and_can_be_set() {
        let pool = |pairs: &[(&str, &str)]| {
            let mut env = Env::from_pairs(pairs.iter().copied());
            DatabaseConfig::from_env(&mut env).max_connections
        };
        assert_eq!(pool(&[]), SQLITE_POOL);
        assert_eq!(pool(&[("DATABASE_URL", "sqlite:/tmp/x.db")]), SQLITE_POOL);
        assert_eq!(pool(&[("DATABASE_URL", "postgres://db/app")]), 25);
        assert_eq!(pool(&[("DB_MAX_CONNECTIONS", "12")]), 12);
    }

    #[test]
    fn passwords_never_appear_in_descriptions() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/users?sslmode=require&password=x"),
            "postgres://app:***@db:5432/users"
        );
        assert_eq!(
            redact("postgres://db:5432/users"),
            "postgres://db:5432/users"
        );
        assert_eq!(redact("postgres://app@db/users"), "postgres://app@db/users");
        let config = DatabaseConfig::url("postgresql://u:p@h/d");
        assert!(!config.describe("x").contains(":p@"));
    }

    #[test]
    fn schema_names_are_validated() {
        let mut env = Env::from_pairs([("DB_SCHEMA", "user_service")]);
        assert_eq!(
            DatabaseConfig::from_env(&mut env).schema.as_deref(),
            Some("user_service")
        );
        let mut env = Env::from_pairs([("DB_SCHEMA", "x\"; DROP TABLE users")]);
        assert!(DatabaseConfig::from_env(&mut env).schema.is_none());
        assert_eq!(env.issues()[0].variable, "DB_SCHEMA");
    }

    #[test]
    fn unknown_schemes_and_bad_numbers_are_reported() {
        let mut env = Env::from_pairs([
            ("DATABASE_URL", "mysql://root@db/x"),
            ("DB_MAX_CONNECTIONS", "many"),
            ("DB_QUERY_TIMEOUT", "30"),
        ]);
        let _ = DatabaseConfig::from_env(&mut env);
        let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        assert_eq!(
            vars,
            ["DATABASE_URL", "DB_MAX_CONNECTIONS", "DB_QUERY_TIMEOUT"]
        );
        // The URL may hold a password: it is never echoed.
        assert!(env.issues()[0].found.is_none());
    }
}
