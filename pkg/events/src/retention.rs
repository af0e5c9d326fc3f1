//! Housekeeping: published outbox rows and processed-event records are kept for
//! `EVENTS_RETENTION` (a week by default), then deleted, so neither table grows without bound.
//!
//! A service that writes events prunes its outbox; one that consumes them prunes its
//! processed-event records. Pending outbox rows are never touched.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{idempotency, outbox};

/// Which of a service's tables to prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `outbox`: rows published longer ago than the retention.
    Outbox,
    /// `processed_events`: records of events handled longer ago than the retention.
    ProcessedEvents,
}

/// Deletes what `table` no longer needs: what is older than `retention`. How many rows went.
pub async fn prune(
    db: &DatabaseConnection,
    table: Table,
    retention: Duration,
) -> Result<u64, sea_orm::DbErr> {
    // A retention reaching before the calendar's start (EVENTS_RETENTION=1000000000d) keeps
    // everything; subtracting it would panic the task.
    let Some(before) = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|retention| chrono::Utc::now().checked_sub_signed(retention))
    else {
        return Ok(0);
    };
    match table {
        Table::Outbox => outbox::prune(db, before).await,
        Table::ProcessedEvents => idempotency::prune(db, before).await,
    }
}

/// How often [`run`] prunes: often enough that each pass deletes little.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Prunes `table` now and then every [`EVERY`], until `stop` fires. A failure is logged and
/// retried next time: nothing is lost by pruning late.
pub async fn run(
    db: DatabaseConnection,
    table: Table,
    retention: Duration,
    stop: CancellationToken,
) {
    loop {
        match prune(&db, table, retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(?table, deleted, "pruned rows past their retention"),
            Err(error) => tracing::warn!(%error, ?table, "pruning failed; retrying later"),
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
