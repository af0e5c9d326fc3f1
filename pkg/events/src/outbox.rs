//! The transactional outbox.
//!
//! Each producing service includes [`migration::CreateOutbox`] in its migrator and calls
//! [`enqueue`] inside the transaction that changes state. Rows are ordered by `seq` (a
//! database-assigned sequence), which is the publication order. [`claim`] and [`mark`] are the
//! relay's side; they hold the only backend-specific SQL of the outbox.

use chrono::{DateTime, Utc};
use sea_orm::ExprTrait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Set, Statement,
};

use crate::envelope::Envelope;

/// The `outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One event waiting in (or already relayed from) the outbox.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// Publication order.
        #[sea_orm(primary_key)]
        pub seq: i64,
        /// The event id (`Envelope::id`).
        #[sea_orm(unique)]
        pub event_id: Uuid,
        /// The CloudEvents `type`, e.g. `user.registered`.
        pub event_type: String,
        /// The aggregate's id: rows of one subject are published in `seq` order.
        pub subject: String,
        /// The whole envelope as JSON.
        pub envelope: Json,
        /// The envelope's `time`: when the change happened.
        pub created_at: DateTimeUtc,
        /// Set by the relay once the bus has the event.
        pub published_at: Option<DateTimeUtc>,
        /// Publication attempts so far (for backoff and alerting).
        pub attempts: i32,
        /// The error of the last failed publication attempt, if any.
        pub last_error: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Writes `envelope` to the outbox through `conn` (pass the open transaction).
pub async fn enqueue<C: ConnectionTrait>(conn: &C, envelope: &Envelope) -> Result<(), DbErr> {
    let json = serde_json::to_value(envelope).map_err(|e| DbErr::Json(e.to_string()))?;
    entity::ActiveModel {
        event_id: Set(envelope.id),
        event_type: Set(envelope.event_type.clone()),
        subject: Set(envelope.subject.clone()),
        envelope: Set(json),
        created_at: Set(envelope.time),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// A pending row, claimed for publication.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its publication order; what [`mark_published`] and [`mark_failed`] take.
    pub seq: i64,
    /// The CloudEvents `type`, for metrics.
    pub event_type: String,
    /// The stored envelope, as JSON.
    pub envelope: serde_json::Value,
}

/// Claims up to `limit` pending rows for publication, in publication order, inside `txn`
/// (the claim lasts until it commits).
///
/// PostgreSQL: only each subject's oldest pending row (its head) can be claimed, with
/// `FOR UPDATE SKIP LOCKED`, so concurrent relays split the subjects between them and never
/// take the same row; the rows behind a claimed head are then safe to take too (no other
/// relay can claim them while the head is unpublished), so a busy subject still moves a batch
/// per round. An aggregate's events are therefore published by one relay at a time, in order.
///
/// SQLite: one writer at a time. The claim starts with a write, which takes the database's
/// write lock, so a second relay waits for the first to commit, then sees its rows published.
pub async fn claim<C: ConnectionTrait>(txn: &C, limit: u64) -> Result<Vec<Claimed>, DbErr> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = match txn.get_database_backend() {
        DbBackend::Postgres => {
            let heads = txn
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT o.seq, o.subject FROM outbox o \
                     WHERE o.published_at IS NULL AND NOT EXISTS ( \
                       SELECT 1 FROM outbox p \
                       WHERE p.subject = o.subject AND p.published_at IS NULL AND p.seq < o.seq) \
                     ORDER BY o.seq LIMIT $1 FOR UPDATE OF o SKIP LOCKED",
                    [limit.into()],
                ))
                .await?;
            let mut subjects = Vec::with_capacity(heads.len());
            for head in &heads {
                subjects.push(head.try_get::<String>("", "subject")?);
            }
            if subjects.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders: Vec<String> =
                (2..subjects.len() + 2).map(|i| format!("${i}")).collect();
            let mut values: Vec<sea_orm::Value> = vec![limit.into()];
            values.extend(subjects.into_iter().map(sea_orm::Value::from));
            txn.query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "SELECT seq, event_type, envelope FROM outbox \
                     WHERE published_at IS NULL AND subject IN ({}) ORDER BY seq LIMIT $1 FOR UPDATE",
                    placeholders.join(", ")
                ),
                values,
            ))
            .await?
        }
        backend => {
            txn.execute_raw(Statement::from_string(
                backend,
                "UPDATE outbox SET attempts = attempts WHERE seq = (SELECT MIN(seq) FROM outbox WHERE published_at IS NULL)",
            ))
            .await?;
            txn.query_all_raw(Statement::from_sql_and_values(
                backend,
                "SELECT seq, event_type, envelope FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT ?",
                [limit.into()],
            ))
            .await?
        }
    };
    rows.into_iter()
        .map(|row| {
            Ok(Claimed {
                seq: row.try_get("", "seq")?,
                event_type: row.try_get("", "event_type")?,
                envelope: row.try_get("", "envelope")?,
            })
        })
        .collect()
}

/// Marks rows published.
pub async fn mark_published<C: ConnectionTrait>(txn: &C, seqs: &[i64]) -> Result<(), DbErr> {
    if seqs.is_empty() {
        return Ok(());
    }
    entity::Entity::update_many()
        .col_expr(entity::Column::PublishedAt, Expr::value(Utc::now()))
        .col_expr(
            entity::Column::Attempts,
            Expr::col(entity::Column::Attempts).add(1),
        )
        .filter(entity::Column::Seq.is_in(seqs.iter().copied()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Records a failed publication attempt of one row.
pub async fn mark_failed<C: ConnectionTrait>(txn: &C, seq: i64, error: &str) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .col_expr(
            entity::Column::Attempts,
            Expr::col(entity::Column::Attempts).add(1),
        )
        .col_expr(entity::Column::LastError, Expr::value(error))
        .filter(entity::Column::Seq.eq(seq))
        .exec(txn)
        .await?;
    Ok(())
}

/// Deletes the rows published before `before`; how many. Pending rows are never deleted.
pub async fn prune<C: ConnectionTrait>(conn: &C, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let deleted = entity::Entity::delete_many()
        .filter(entity::Column::PublishedAt.lt(before))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected)
}

/// Rows not yet published.
pub async fn pending<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::PublishedAt.is_null())
        .count(conn)
        .await
}

/// Every row in publication order (tests and audits).
pub async fn all<C: ConnectionTrait>(conn: &C) -> Result<Vec<entity::Model>, DbErr> {
    entity::Entity::find()
        .order_by_asc(entity::Column::Seq)
        .all(conn)
        .await
}

/// Migrations of the outbox table, to be listed in each producing service's migrator.
pub mod migration {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    /// Creates the `outbox` table with its pending-rows and per-subject indexes.
    pub struct CreateOutbox;

    impl MigrationName for CreateOutbox {
        fn name(&self) -> &str {
            "m20261126_000100_create_outbox"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateOutbox {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("outbox")
                        .if_not_exists()
                        .col(big_pk_auto("seq"))
                        .col(uuid_uniq("event_id"))
                        .col(string("event_type"))
                        .col(string("subject"))
                        .col(json_binary("envelope"))
                        .col(timestamp_with_time_zone("created_at"))
                        .col(timestamp_with_time_zone_null("published_at"))
                        .col(integer("attempts").default(0))
                        .col(text_null("last_error"))
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("outbox_pending")
                        .table("outbox")
                        .col("published_at")
                        .col("seq")
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
            // The relay's "oldest pending row of this subject" lookups.
            manager
                .create_index(
                    Index::create()
                        .name("outbox_subject")
                        .table("outbox")
                        .col("subject")
                        .col("seq")
                        .if_not_exists()
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("outbox").to_owned())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::UserRegistered;
    use sea_orm::{EntityTrait, QueryOrder, TransactionTrait};
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(migration::CreateOutbox)]
        }
    }

    fn event(n: u8) -> Envelope {
        Envelope::new(
            "test-service",
            &UserRegistered {
                user_id: uuid::Uuid::now_v7(),
                email: format!("u{n}@example.com"),
                name: "U".into(),
                role: "user".into(),
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn enqueued_events_keep_order_and_roll_back_with_their_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = platform_db::connect(&platform_db::DatabaseConfig::sqlite(dir.path()), "outbox")
            .await
            .unwrap();
        Migrator::up(&db, None).await.unwrap();

        let (a, b, c) = (event(1), event(2), event(3));
        let txn = db.begin().await.unwrap();
        enqueue(&txn, &a).await.unwrap();
        enqueue(&txn, &b).await.unwrap();
        txn.commit().await.unwrap();

        let txn = db.begin().await.unwrap();
        enqueue(&txn, &c).await.unwrap();
        txn.rollback().await.unwrap();

        let rows = entity::Entity::find()
            .order_by_asc(entity::Column::Seq)
            .all(&db)
            .await
            .unwrap();
        let ids: Vec<_> = rows.iter().map(|r| r.event_id).collect();
        assert_eq!(ids, [a.id, b.id]);
        let stored: Envelope = serde_json::from_value(rows[0].envelope.clone()).unwrap();
        assert_eq!(stored, a);
        assert_eq!(stored.event_type, "user.registered");
        assert!(rows.iter().all(|r| r.published_at.is_none()));
    }
}
