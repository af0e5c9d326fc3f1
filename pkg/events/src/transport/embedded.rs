//! The embedded transport: Redis Streams' model in an SQLite file (`DATA_DIR/event-bus.db`).
//!
//! Embedded mode has no broker, but must still lose nothing on a restart and let
//! `platform events …` (another process) see and replay dead letters, hence a file rather than
//! memory. Tables: `bus_messages` (the streams, one global sequence), `bus_groups` (each group's
//! position per family), `bus_pending` (delivered, not yet acked), `bus_dead_letters`.
//!
//! Every write transaction starts with its write, so SQLite takes the write lock before
//! anything is read. Readers in this process are woken by a notifier shared by every transport
//! open on the same file; other processes fall back to the read's block timeout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;
use platform_db::DatabaseConfig;
use sea_orm::DbErr;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};
use tokio::sync::{Mutex, Notify};

use super::{BusError, DeadLetter, Delivery, Transport, decode, family_of, raw_json};
use crate::envelope::Envelope;

/// The bus in an SQLite file.
pub struct EmbeddedTransport {
    db: DatabaseConnection,
    max_len: usize,
    /// Wakes blocked readers when something is published or replayed.
    notify: Arc<Notify>,
    /// Serialises this instance's reads and claims (SQLite has one writer anyway).
    reading: Mutex<()>,
}

impl std::fmt::Debug for EmbeddedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTransport").finish_non_exhaustive()
    }
}

/// One notifier per bus file, so transports opened separately by services in one process
/// wake each other.
fn notifier(path: &Path) -> Arc<Notify> {
    static NOTIFIERS: OnceLock<StdMutex<HashMap<PathBuf, Arc<Notify>>>> = OnceLock::new();
    let map = NOTIFIERS.get_or_init(Default::default);
    let mut map = match map.lock() {
        Ok(map) => map,
        Err(poisoned) => poisoned.into_inner(),
    };
    Arc::clone(map.entry(path.to_path_buf()).or_default())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// `?, ?, ?` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl EmbeddedTransport {
    /// Opens (creating if needed) `<data_dir>/event-bus.db`.
    pub async fn open(data_dir: &Path, max_len: usize) -> Result<Self, BusError> {
        let mut config = DatabaseConfig::sqlite(data_dir);
        config.max_connections = 4;
        let db = platform_db::connect(&config, "event-bus")
            .await
            .map_err(|e| BusError::Protocol(e.to_string()))?;
        Migrator::up(&db, None).await?;
        let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Ok(Self {
            db,
            max_len: max_len.max(1),
            notify: notifier(&path.join("event-bus.db")),
            reading: Mutex::new(()),
        })
    }

    async fn deliver_new<C: ConnectionTrait>(
        &self,
        txn: &C,
        group: &str,
        consumer: &str,
        families: &[String],
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut deliveries = Vec::new();
        for family in families {
            let remaining = count.saturating_sub(deliveries.len());
            if remaining == 0 {
                break;
            }
            // The write first: it takes SQLite's write lock before anything is read.
            let moved = txn
                .execute_raw(stmt(
                    "UPDATE bus_groups SET last_seq = last_seq WHERE family = ? AND group_name = ?",
                    vec![family.clone().into(), group.into()],
                ))
                .await?;
            if moved.rows_affected() == 0 {
                continue; // not subscribed
            }
            let rows = txn
                .query_all_raw(stmt(
                    "SELECT seq, body FROM bus_messages WHERE family = ? AND seq > \
                     (SELECT last_seq FROM bus_groups WHERE family = ? AND group_name = ?) \
                     ORDER BY seq LIMIT ?",
                    vec![
                        family.clone().into(),
                        family.clone().into(),
                        group.into(),
                        (remaining as i64).into(),
                    ],
                ))
                .await?;
            let now = now_ms();
            let mut last = None;
            for row in rows {
                let seq: i64 = row.try_get("", "seq")?;
                let body: String = row.try_get("", "body")?;
                txn.execute_raw(stmt(
                    "INSERT INTO bus_pending (family, group_name, seq, consumer, delivered_at, deliveries) \
                     VALUES (?, ?, ?, ?, ?, 1)",
                    vec![family.clone().into(), group.into(), seq.into(), consumer.into(), now.into()],
                ))
                .await?;
                last = Some(seq);
                deliveries.push(Delivery {
                    id: seq.to_string(),
                    family: family.clone(),
                    envelope: decode(&body),
                    raw: body,
                    deliveries: 1,
                });
            }
            if let Some(last) = last {
                txn.execute_raw(stmt(
                    "UPDATE bus_groups SET last_seq = ? WHERE family = ? AND group_name = ?",
                    vec![last.into(), family.clone().into(), group.into()],
                ))
                .await?;
            }
        }
        Ok(deliveries)
    }

    async fn trim(&self, family: &str) -> Result<(), BusError> {
        self.db
            .execute_raw(stmt(
                "DELETE FROM bus_messages WHERE family = ? AND seq <= \
                 (SELECT seq FROM bus_messages WHERE family = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                vec![family.into(), family.into(), (self.max_len as i64).into()],
            ))
            .await?;
        Ok(())
    }
}

fn seq_of(id: &str) -> Result<i64, BusError> {
    id.parse()
        .map_err(|_| BusError::Protocol(format!("not an embedded message id: {id}")))
}

/// The statement that settles `delivery` for `group`: it leaves the pending list.
fn settled(group: &str, delivery: &Delivery) -> Result<Statement, BusError> {
    Ok(stmt(
        "DELETE FROM bus_pending WHERE family = ? AND group_name = ? AND seq = ?",
        vec![
            delivery.family.clone().into(),
            group.into(),
            seq_of(&delivery.id)?.into(),
        ],
    ))
}

impl Transport for EmbeddedTransport {
    fn system(&self) -> &'static str {
        "embedded"
    }

    fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<String, BusError>> {
        Box::pin(async move {
            let family = family_of(&envelope.event_type);
            let row = self
                .db
                .query_one_raw(stmt(
                    "INSERT INTO bus_messages (family, body, created_at) VALUES (?, ?, ?) RETURNING seq",
                    vec![family.into(), serde_json::to_string(envelope)?.into(), now_ms().into()],
                ))
                .await?
                .ok_or_else(|| BusError::Protocol("insert returned no sequence".to_owned()))?;
            let seq: i64 = row.try_get("", "seq")?;
            // Trimming is amortised: it runs once every thousand messages.
            if seq % 1000 == 0 {
                self.trim(family).await?;
            }
            self.notify.notify_waiters();
            Ok(seq.to_string())
        })
    }

    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        families: &'a [String],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            for family in families {
                // A new group starts before the oldest retained message.
                self.db
                    .execute_raw(stmt(
                        "INSERT INTO bus_groups (family, group_name, last_seq) VALUES (?, ?, 0) \
                         ON CONFLICT (family, group_name) DO NOTHING",
                        vec![family.clone().into(), group.into()],
                    ))
                    .await?;
            }
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        group: &'a str,
        consumer: &'a str,
        families: &'a [String],
        count: usize,
        block: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BusError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + block;
            loop {
                // Registered before looking, so a publish in between is not missed.
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let deliveries = {
                    let _reading = self.reading.lock().await;
                    let txn = self.db.begin().await?;
                    let deliveries = self
                        .deliver_new(&txn, group, consumer, families, count)
                        .await?;
                    txn.commit().await?;
                    deliveries
                };
                if !deliveries.is_empty() || tokio::time::Instant::now() >= deadline {
                    return Ok(deliveries);
                }
                // Woken by a publish in this process, or polling for other processes.
                let _ = tokio::time::timeout_at(
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(250)),
                    notified,
                )
                .await;
            }
        })
    }

    fn claim_stale<'a>(
        &'a self,
        group: &'a str,
        consumer: &'a str,
        families: &'a [String],
        min_idle: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BusError>> {
        Box::pin(async move {
            if families.is_empty() {
                return Ok(Vec::new());
            }
            let _reading = self.reading.lock().await;
            let now = now_ms();
            let mut values: Vec<Value> = vec![
                consumer.into(),
                now.into(),
                group.into(),
                (now - millis(min_idle)).into(),
            ];
            values.extend(families.iter().map(|f| Value::from(f.clone())));
            values.push((count as i64).into());
            let sql = format!(
                "UPDATE bus_pending SET consumer = ?, delivered_at = ?, deliveries = deliveries + 1 \
                 WHERE rowid IN (SELECT rowid FROM bus_pending WHERE group_name = ? AND delivered_at <= ? \
                 AND family IN ({}) ORDER BY seq LIMIT ?) \
                 RETURNING family, seq, deliveries",
                placeholders(families.len())
            );
            let txn = self.db.begin().await?;
            let claimed = txn.query_all_raw(stmt(&sql, values)).await?;
            let mut deliveries = Vec::new();
            for row in claimed {
                let family: String = row.try_get("", "family")?;
                let seq: i64 = row.try_get("", "seq")?;
                let times: i64 = row.try_get("", "deliveries")?;
                let body = txn
                    .query_one_raw(stmt(
                        "SELECT body FROM bus_messages WHERE seq = ?",
                        vec![seq.into()],
                    ))
                    .await?;
                match body {
                    Some(body) => {
                        let body: String = body.try_get("", "body")?;
                        deliveries.push(Delivery {
                            id: seq.to_string(),
                            family,
                            envelope: decode(&body),
                            raw: body,
                            deliveries: u32::try_from(times).unwrap_or(u32::MAX),
                        });
                    }
                    // Trimmed while pending (as XAUTOCLAIM reports deleted ids): drop it.
                    None => {
                        txn.execute_raw(stmt(
                            "DELETE FROM bus_pending WHERE family = ? AND group_name = ? AND seq = ?",
                            vec![family.into(), group.into(), seq.into()],
                        ))
                        .await?;
                    }
                }
            }
            deliveries.sort_by_key(|d| d.id.parse::<i64>().unwrap_or_default());
            txn.commit().await?;
            Ok(deliveries)
        })
    }

    fn ack<'a>(
        &'a self,
        group: &'a str,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            self.db.execute_raw(settled(group, delivery)?).await?;
            Ok(())
        })
    }

    fn ack_many<'a>(
        &'a self,
        group: &'a str,
        deliveries: &'a [&'a Delivery],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            if deliveries.is_empty() {
                return Ok(());
            }
            // One transaction: one write lock and one commit for the whole read, where acking
            // one by one paid for each (the bus's busiest writes under load).
            let txn = self.db.begin().await?;
            for delivery in deliveries {
                txn.execute_raw(settled(group, delivery)?).await?;
            }
            txn.commit().await?;
            Ok(())
        })
    }

    fn dead_letter<'a>(
        &'a self,
        group: &'a str,
        delivery: &'a Delivery,
        error: &'a str,
        attempts: u32,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let txn = self.db.begin().await?;
            txn.execute_raw(stmt(
                "INSERT INTO bus_dead_letters (family, group_name, body, error, attempts, dead_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                vec![
                    delivery.family.clone().into(),
                    group.into(),
                    delivery.raw.clone().into(),
                    error.into(),
                    i64::from(attempts).into(),
                    now_ms().into(),
                ],
            ))
            .await?;
            txn.execute_raw(settled(group, delivery)?).await?;
            txn.commit().await?;
            Ok(())
        })
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, BusError>> {
        Box::pin(async move {
            let rows = self
                .db
                .query_all_raw(stmt(
                    "SELECT id, family, group_name, body, error, attempts, dead_at \
                     FROM bus_dead_letters ORDER BY id LIMIT ?",
                    vec![(limit as i64).into()],
                ))
                .await?;
            rows.into_iter()
                .map(|row| {
                    let id: i64 = row.try_get("", "id")?;
                    let body: String = row.try_get("", "body")?;
                    let attempts: i64 = row.try_get("", "attempts")?;
                    let dead_at: i64 = row.try_get("", "dead_at")?;
                    Ok(DeadLetter {
                        id: id.to_string(),
                        family: row.try_get("", "family")?,
                        group: row.try_get("", "group_name")?,
                        event: raw_json(&body),
                        error: row.try_get("", "error")?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        dead_at: Utc
                            .timestamp_millis_opt(dead_at)
                            .single()
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })
    }

    fn replay<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, BusError>> {
        Box::pin(async move {
            let Ok(id) = id.parse::<i64>() else {
                return Ok(false);
            };
            let txn = self.db.begin().await?;
            let removed = txn
                .query_one_raw(stmt(
                    "DELETE FROM bus_dead_letters WHERE id = ? RETURNING family, body",
                    vec![id.into()],
                ))
                .await?;
            let Some(removed) = removed else {
                txn.rollback().await?;
                return Ok(false);
            };
            let family: String = removed.try_get("", "family")?;
            let body: String = removed.try_get("", "body")?;
            txn.execute_raw(stmt(
                "INSERT INTO bus_messages (family, body, created_at) VALUES (?, ?, ?)",
                vec![family.into(), body.into(), now_ms().into()],
            ))
            .await?;
            txn.commit().await?;
            self.notify.notify_waiters();
            Ok(true)
        })
    }

    fn lag<'a>(
        &'a self,
        group: &'a str,
        families: &'a [String],
    ) -> BoxFuture<'a, Result<u64, BusError>> {
        Box::pin(async move {
            if families.is_empty() {
                return Ok(0);
            }
            let mut values: Vec<Value> = vec![group.into()];
            values.extend(families.iter().map(|f| Value::from(f.clone())));
            let sql = format!(
                "SELECT COUNT(*) AS lag FROM bus_messages m JOIN bus_groups g \
                 ON g.family = m.family AND g.group_name = ? WHERE m.seq > g.last_seq AND m.family IN ({})",
                placeholders(families.len())
            );
            let row = self.db.query_one_raw(stmt(&sql, values)).await?;
            let lag: i64 = match row {
                Some(row) => row.try_get("", "lag")?,
                None => 0,
            };
            Ok(u64::try_from(lag).unwrap_or(0))
        })
    }

    fn history<'a>(
        &'a self,
        family: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Envelope>, BusError>> {
        Box::pin(async move {
            let rows = self
                .db
                .query_all_raw(stmt(
                    "SELECT body FROM bus_messages WHERE family = ? ORDER BY seq LIMIT ?",
                    vec![family.into(), (limit as i64).into()],
                ))
                .await?;
            rows.into_iter()
                .map(|row| {
                    let body: String = row.try_get("", "body")?;
                    decode(&body).map_err(BusError::Protocol)
                })
                .collect()
        })
    }
}

/// The bus schema.
struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateBus)]
    }
}

struct CreateBus;

impl MigrationName for CreateBus {
    fn name(&self) -> &str {
        "m20261126_000001_create_event_bus"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateBus {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "CREATE TABLE IF NOT EXISTS bus_messages (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                family TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS bus_messages_family ON bus_messages (family, seq)",
            "CREATE TABLE IF NOT EXISTS bus_groups (
                family TEXT NOT NULL,
                group_name TEXT NOT NULL,
                last_seq INTEGER NOT NULL,
                PRIMARY KEY (family, group_name))",
            "CREATE TABLE IF NOT EXISTS bus_pending (
                family TEXT NOT NULL,
                group_name TEXT NOT NULL,
                seq INTEGER NOT NULL,
                consumer TEXT NOT NULL,
                delivered_at INTEGER NOT NULL,
                deliveries INTEGER NOT NULL,
                PRIMARY KEY (family, group_name, seq))",
            "CREATE INDEX IF NOT EXISTS bus_pending_idle ON bus_pending (group_name, delivered_at)",
            "CREATE TABLE IF NOT EXISTS bus_dead_letters (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                family TEXT NOT NULL,
                group_name TEXT NOT NULL,
                body TEXT NOT NULL,
                error TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                dead_at INTEGER NOT NULL)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_match_the_count() {
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(placeholders(1), "?");
    }
}
