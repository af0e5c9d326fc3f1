//! Database set-up for every service: one code path over PostgreSQL and SQLite.
//!
//! Owns [`DatabaseConfig`] (`DATABASE_URL`, `DATA_DIR`, `DB_MAX_CONNECTIONS`,
//! `DB_QUERY_TIMEOUT`, `DB_CONNECT_TIMEOUT`), [`connect`] (PostgreSQL when `DATABASE_URL` is set,
//! else an SQLite file `<DATA_DIR>/<service>.db`, so a fresh machine needs no server),
//! [`migrate`] (versioned migrations, applied at start-up and by `platform migrate`), the
//! classification of constraint violations, and the readiness check of a pool.
//!
//! Architecture invariant: no service's tables are known here; services bring their entities
//! and migrations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use platform_config::ExposeSecret;
use platform_metrics::Metrics;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqlErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use sea_orm;
pub use sea_orm_migration;

pub use platform_config::database::{DatabaseConfig, SQLITE_POOL, redact};

/// The database could not be reached, set up or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The directory for the SQLite file (`DATA_DIR`) could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The file system's error.
        source: std::io::Error,
    },
    /// No connection after the retries, or the `DB_SCHEMA` schema could not be created.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The database, as [`DatabaseConfig::describe`] names it: password masked.
        target: String,
        /// The driver's last error.
        source: DbErr,
    },
    /// Applying the pending migrations failed.
    #[error("migrations failed on {target}: {source}")]
    Migrate {
        /// The backend, as [`backend_name`] names it.
        target: String,
        /// The failing migration's error.
        source: DbErr,
    },
}

/// Times every statement on `db` (transactions included) into
/// `db_query_duration_seconds{operation}` of `metrics`, and records each as a client span
/// (`db.system.name`, `db.operation.name`, `db.collection.name`; never the parameters)
/// under the span that ran it, when spans are exported. At each scrape, the pool's use:
/// `db_pool_connections{state="in_use"|"idle"}` and `db_pool_max_connections`.
pub fn observe(db: &mut DatabaseConnection, metrics: &Metrics) {
    let pool = db.clone();
    metrics.on_render(move || {
        let (size, idle, max) = match pool.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                let p = pool.get_postgres_connection_pool();
                (p.size(), p.num_idle(), p.options().get_max_connections())
            }
            sea_orm::DatabaseBackend::Sqlite => {
                let p = pool.get_sqlite_connection_pool();
                (p.size(), p.num_idle(), p.options().get_max_connections())
            }
            _ => return,
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        platform_metrics::gauge!("db_pool_connections", "state" => "in_use")
            .set(f64::from(size - idle));
        platform_metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(idle));
        platform_metrics::gauge!("db_pool_max_connections").set(f64::from(max));
    });
    let metrics = metrics.clone();
    db.set_metric_callback(move |info| {
        let sql = info.statement.sql.as_str();
        let operation = operation_of(sql);
        let elapsed = info.elapsed;
        metrics.record(|| {
            platform_metrics::histogram!("db_query_duration_seconds", "operation" => operation)
                .record(elapsed.as_secs_f64())
        });
        let collection = collection_of(sql);
        let name = match collection {
            Some(table) => format!("{operation} {table}"),
            None => operation.to_owned(),
        };
        platform_telemetry::record_finished(name, elapsed, info.failed, || {
            use platform_telemetry::KeyValue;
            let system = match info.statement.db_backend {
                sea_orm::DatabaseBackend::Postgres => "postgresql",
                sea_orm::DatabaseBackend::Sqlite => "sqlite",
                _ => "other_sql",
            };
            let mut attributes = vec![
                KeyValue::new(
                    platform_telemetry::SERVICE_FIELD,
                    metrics.service().to_owned(),
                ),
                KeyValue::new("db.system.name", system),
                KeyValue::new("db.operation.name", operation),
            ];
            if let Some(table) = collection {
                attributes.push(KeyValue::new("db.collection.name", table.to_owned()));
            }
            attributes
        });
    });
}

/// The statement's operation as a low-cardinality label: its first keyword.
fn operation_of(sql: &str) -> &'static str {
    let first = sql
        .trim_start()
        .split_ascii_whitespace()
        .next()
        .unwrap_or("");
    for op in [
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK",
    ] {
        if first.eq_ignore_ascii_case(op) {
            return match op {
                "SELECT" | "WITH" => "select",
                "INSERT" => "insert",
                "UPDATE" => "update",
                "DELETE" => "delete",
                _ => "transaction",
            };
        }
    }
    "other"
}

/// The table a statement works on, when it names one plainly (`FROM "t"`, `INTO "t"`,
/// `UPDATE "t"`): the first one, unquoted.
fn collection_of(sql: &str) -> Option<&str> {
    let mut words = sql.split_ascii_whitespace();
    while let Some(word) = words.next() {
        if ["FROM", "INTO", "UPDATE"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k))
        {
            let table = words.next()?;
            if table.starts_with('(') {
                // A subquery: no one table.
                return None;
            }
            let table = table.trim_matches(|c| c == '"' || c == '`');
            let table = table.rsplit('.').next().unwrap_or(table).trim_matches('"');
            return (!table.is_empty()
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .then_some(table);
        }
    }
    None
}

/// Opens the pool for `service`: PostgreSQL when a URL is configured, else the service's
/// SQLite file (created on first use, in WAL mode so readers never wait for the writer).
/// Retries for a few seconds so that a service started together with its database comes up.
/// On PostgreSQL with a `DB_SCHEMA`, creates that schema first and searches it.
///
/// Fails with [`DbError::DataDir`] when the SQLite directory cannot be created, and with
/// [`DbError::Connect`] after five failed attempts or when the schema cannot be created.
pub async fn connect(
    config: &DatabaseConfig,
    service: &str,
) -> Result<DatabaseConnection, DbError> {
    let target = config.describe(service);
    let url = match &config.url {
        Some(url) => url.expose_secret().to_owned(),
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| DbError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
            format!(
                "sqlite://{}?mode=rwc",
                config.sqlite_path(service).display()
            )
        }
    };

    let is_postgres = url.starts_with("postgres");
    if let (true, Some(schema)) = (is_postgres, &config.schema) {
        create_schema(&url, schema, config.connect_timeout)
            .await
            .map_err(|source| DbError::Connect {
                target: target.clone(),
                source,
            })?;
    }
    let mut options = ConnectOptions::new(url);
    if let (true, Some(schema)) = (is_postgres, &config.schema) {
        options.set_schema_search_path(schema.clone());
    }
    let busy_timeout = config.query_timeout;
    options
        .max_connections(config.max_connections)
        .min_connections(1)
        .connect_timeout(config.connect_timeout)
        .acquire_timeout(config.connect_timeout)
        .idle_timeout(Duration::from_secs(300))
        // Statements are traced by our spans; sqlx's own per-statement logging is noise.
        .sqlx_logging(false)
        .statement_timeout(config.query_timeout)
        .map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy_timeout)
                .foreign_keys(true)
                .create_if_missing(true)
        });

    let mut attempt = 0;
    loop {
        attempt += 1;
        match Database::connect(options.clone()).await {
            Ok(db) => {
                tracing::info!(service, database = %target, "database connected");
                return Ok(db);
            }
            Err(source) if attempt >= 5 => return Err(DbError::Connect { target, source }),
            Err(error) => {
                tracing::warn!(service, database = %target, attempt, %error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
            }
        }
    }
}

/// `CREATE SCHEMA IF NOT EXISTS`, over a short-lived connection of its own.
async fn create_schema(url: &str, schema: &str, timeout: Duration) -> Result<(), DbErr> {
    use sea_orm::ConnectionTrait;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .connect_timeout(timeout)
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    // The name was validated (lower-case letters, digits, underscores): safe to quote.
    let created = db
        .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await;
    let _ = db.close().await;
    match created {
        Ok(_) => Ok(()),
        // Two services racing to create the same schema: the loser's error is harmless.
        Err(error) if is_unique_violation(&error) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Applies every pending migration of `M`.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), DbError> {
    M::up(db, None).await.map_err(|source| DbError::Migrate {
        target: backend_name(db).to_owned(),
        source,
    })
}

/// Creates each `(name, columns, unique)` index on `table` unless it exists: the index list
/// of a migration, in one place.
pub async fn create_indexes(
    manager: &sea_orm_migration::SchemaManager<'_>,
    table: &str,
    indexes: &[(&str, &[&str], bool)],
) -> Result<(), DbErr> {
    for (name, columns, unique) in indexes {
        let mut index = sea_orm_migration::prelude::Index::create();
        index.name(*name).table(table.to_owned()).if_not_exists();
        if *unique {
            index.unique();
        }
        for column in *columns {
            index.col(column.to_string());
        }
        manager.create_index(index.to_owned()).await?;
    }
    Ok(())
}

/// Adds `columns` to the existing `table`, one statement each (SQLite alters one column at a
/// time): a migration that extends a schema.
pub async fn add_columns(
    manager: &sea_orm_migration::SchemaManager<'_>,
    table: &str,
    columns: impl IntoIterator<Item = sea_orm_migration::prelude::ColumnDef>,
) -> Result<(), DbErr> {
    for mut column in columns {
        let alter = sea_orm_migration::prelude::Table::alter()
            .table(table.to_owned())
            .add_column(&mut column)
            .to_owned();
        manager.alter_table(alter).await?;
    }
    Ok(())
}

/// Drops `columns` of `table`, one statement each: [`add_columns`] undone.
pub async fn drop_columns(
    manager: &sea_orm_migration::SchemaManager<'_>,
    table: &str,
    columns: &[&str],
) -> Result<(), DbErr> {
    for column in columns {
        let alter = sea_orm_migration::prelude::Table::alter()
            .table(table.to_owned())
            .drop_column(column.to_string())
            .to_owned();
        manager.alter_table(alter).await?;
    }
    Ok(())
}

/// Closes the pool at shutdown; a failure is logged (there is nothing left to do about it).
pub async fn close(db: DatabaseConnection) {
    if let Err(error) = db.close().await {
        tracing::warn!(%error, "closing the database pool failed");
    }
}

/// `migrate` for a service's `migrate` command: opens its database, applies `M`, closes it.
pub async fn migrate_only<M: MigratorTrait>(
    config: &DatabaseConfig,
    service: &str,
) -> Result<(), DbError> {
    let db = connect(config, service).await?;
    let migrated = migrate::<M>(&db).await;
    let _ = db.close().await;
    migrated
}

/// The pool's backend, for logs and errors: `postgres`, `sqlite`, `mysql` or `unknown`.
pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        DbBackend::MySql => "mysql",
        _ => "unknown",
    }
}

/// Opens a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`), so a concurrent writer waits for it (up to the busy timeout) instead of
/// failing with "database is locked" when a read-then-write transaction tries to upgrade its
/// lock; PostgreSQL ignores the option.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Whether `err` is a unique-constraint violation (duplicate key), on either backend.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Whether `err` says the database could not be reached or the connection was lost (no
/// connection to be had, reset, closed, the server shutting down or not accepting
/// connections yet) rather than that the statement itself failed: worth a 503 and a retry,
/// never a 500.
pub fn is_unavailable(err: &DbErr) -> bool {
    let runtime = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let sea_orm::RuntimeErr::SqlxError(error) = runtime else {
        // A message-only error from the driver layer: only a lost connection says so.
        return runtime.to_string().contains("communicating with database");
    };
    match error.as_ref() {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P01–57P03 (the server is shutting
        // down, crashed, or cannot accept connections yet).
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// A stored value that is none of its type's: a state column holding a word this version
/// does not know (a newer version wrote it, or someone edited the row). Reading such a row
/// fails with this rather than guessing; the typed state columns (`DeriveValueType` with a
/// `from_str` returning it) use it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found:?} is not a known {what}")]
pub struct UnknownValue {
    /// What the column holds (`order status`, `saga step`).
    pub what: &'static str,
    /// The stored text.
    pub found: String,
}

/// Readiness check of a pool: a round trip to the database.
#[derive(Clone)]
pub struct DatabaseCheck(pub DatabaseConnection);

impl platform_health::HealthCheck for DatabaseCheck {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .ping()
                .await
                .map_err(|e| format!("{} unreachable: {e}", backend_name(&self.0)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_are_unavailable_and_failed_statements_are_not() {
        use std::sync::Arc;
        let sqlx_error = |e: sqlx::Error| sea_orm::RuntimeErr::SqlxError(Arc::new(e));
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_unavailable(&DbErr::Query(sqlx_error(sqlx::Error::Io(
            reset()
        )))));
        assert!(is_unavailable(&DbErr::Exec(sqlx_error(sqlx::Error::Io(
            reset()
        )))));
        assert!(is_unavailable(&DbErr::Conn(sqlx_error(
            sqlx::Error::PoolTimedOut
        ))));
        assert!(is_unavailable(&DbErr::Query(sqlx_error(
            sqlx::Error::PoolClosed
        ))));
        assert!(is_unavailable(&DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout
        )));
        assert!(!is_unavailable(&DbErr::Query(sqlx_error(
            sqlx::Error::RowNotFound
        ))));
        assert!(!is_unavailable(&DbErr::RecordNotFound("x".into())));
        assert!(!is_unavailable(&DbErr::Custom("x".into())));
    }

    #[tokio::test]
    async fn a_statement_that_fails_is_not_unavailable() {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        let error = db
            .execute_unprepared("SELECT * FROM no_such_table")
            .await
            .unwrap_err();
        assert!(!is_unavailable(&error), "{error:?}");
    }

    #[test]
    fn statements_are_named_by_operation_and_table_only() {
        let cases = [
            (
                r#"SELECT "orders"."id" FROM "orders" WHERE "id" = $1"#,
                "select",
                Some("orders"),
            ),
            (
                r#"INSERT INTO "outbox" ("seq") VALUES ($1)"#,
                "insert",
                Some("outbox"),
            ),
            (
                r#"UPDATE "s"."products" SET "stock" = $1"#,
                "update",
                Some("products"),
            ),
            (
                "DELETE FROM idempotency WHERE key = ?",
                "delete",
                Some("idempotency"),
            ),
            ("BEGIN", "transaction", None),
            ("SELECT 1", "select", None),
            ("SELECT COUNT(*) FROM (SELECT 1) AS x", "select", None),
            ("VACUUM", "other", None),
        ];
        for (sql, operation, table) in cases {
            assert_eq!(operation_of(sql), operation, "{sql}");
            assert_eq!(collection_of(sql), table, "{sql}");
        }
    }

    #[tokio::test]
    async fn embedded_sqlite_file_is_created_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig::sqlite(dir.path().join("nested"));
        let db = connect(&config, "probe-service").await.unwrap();
        db.ping().await.unwrap();
        assert!(dir.path().join("nested/probe-service.db").exists());
        db.close().await.unwrap();
    }
}
