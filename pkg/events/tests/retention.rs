//! Pruning: published outbox rows and processed-event records go after the retention; pending
//! rows and recent records stay. On both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use platform_events::retention::{Table, prune};
use platform_events::{idempotency, outbox};
use platform_test_backends::{Backend, TestDatabase};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use support::happened;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(outbox::migration::CreateOutbox),
            Box::new(idempotency::migration::CreateProcessedEvents),
        ]
    }
}

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

async fn database(backend: Backend) -> (TestDatabase, DatabaseConnection) {
    let db = TestDatabase::create(backend).await;
    let conn = platform_db::connect(&db.config, "retention").await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    (db, conn)
}

fn eight_days_ago() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::days(8)
}

/// Moves the outbox row `seq`'s `column` eight days back.
async fn age_row(conn: &DatabaseConnection, seq: i64, column: outbox::entity::Column) {
    outbox::entity::Entity::update_many()
        .col_expr(column, Expr::value(eight_days_ago()))
        .filter(outbox::entity::Column::Seq.eq(seq))
        .exec(conn)
        .await
        .unwrap();
}

async fn published_outbox_rows_past_the_retention_go_and_pending_ones_stay(backend: Backend) {
    let (_db, conn) = database(backend).await;
    for n in 0..4 {
        outbox::enqueue(&conn, &happened("s", n)).await.unwrap();
    }
    let seqs: Vec<i64> = outbox::all(&conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    // Rows 0 and 1 published long ago, row 2 just now, row 3 still pending (and old).
    outbox::mark_published(&conn, &seqs[..3]).await.unwrap();
    age_row(&conn, seqs[0], outbox::entity::Column::PublishedAt).await;
    age_row(&conn, seqs[1], outbox::entity::Column::PublishedAt).await;
    age_row(&conn, seqs[3], outbox::entity::Column::CreatedAt).await;

    assert_eq!(prune(&conn, Table::Outbox, WEEK).await.unwrap(), 2);
    let left: Vec<i64> = outbox::all(&conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(left, seqs[2..]);
    assert_eq!(outbox::pending(&conn).await.unwrap(), 1);
    assert_eq!(
        prune(&conn, Table::Outbox, WEEK).await.unwrap(),
        0,
        "idempotent"
    );
}

async fn processed_event_records_past_the_retention_go_and_recent_ones_stay(backend: Backend) {
    let (_db, conn) = database(backend).await;
    let (old, recent) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    assert!(idempotency::first_time(&conn, "c", old).await.unwrap());
    assert!(idempotency::first_time(&conn, "c", recent).await.unwrap());
    idempotency::entity::Entity::update_many()
        .col_expr(
            idempotency::entity::Column::ProcessedAt,
            Expr::value(eight_days_ago()),
        )
        .filter(idempotency::entity::Column::EventId.eq(old))
        .exec(&conn)
        .await
        .unwrap();

    assert_eq!(prune(&conn, Table::ProcessedEvents, WEEK).await.unwrap(), 1);
    // The recent one is still a duplicate; the pruned one would be handled again.
    assert!(!idempotency::first_time(&conn, "c", recent).await.unwrap());
    assert!(idempotency::first_time(&conn, "c", old).await.unwrap());
}

async fn a_retention_longer_than_the_calendar_keeps_everything(backend: Backend) {
    let (_db, conn) = database(backend).await;
    outbox::enqueue(&conn, &happened("s", 0)).await.unwrap();
    let seqs: Vec<i64> = outbox::all(&conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    outbox::mark_published(&conn, &seqs).await.unwrap();
    age_row(&conn, seqs[0], outbox::entity::Column::PublishedAt).await;
    let forever = Duration::from_secs(u64::MAX / 2);
    assert_eq!(prune(&conn, Table::Outbox, forever).await.unwrap(), 0);
    assert_eq!(
        prune(&conn, Table::ProcessedEvents, forever).await.unwrap(),
        0
    );
    assert_eq!(outbox::all(&conn).await.unwrap().len(), 1);
}

platform_test_backends::backend_tests!(
    a_retention_longer_than_the_calendar_keeps_everything,
    published_outbox_rows_past_the_retention_go_and_pending_ones_stay,
    processed_event_records_past_the_retention_go_and_recent_ones_stay,
);
