//! The checkout saga, orchestrated here and persisted step by step in the order's row.
//!
//! Forward: reserve the stock (product `Reserve`) → charge (payment `Charge`, under the
//! order's own idempotency key) → commit the reservation (product `Commit`) → `confirmed`.
//! Backward (on a decline, a fraud block, an error, a deadline or a cancellation): release
//! the reservation (or restock a committed one) → refund what was charged → `failed` (with
//! the reason) or `cancelled`.
//!
//! Crash safety:
//! - the next step is written in the same transaction as the result of the last one (and the
//!   events it raises), so a restarted process resumes where the last stopped;
//! - one process drives a saga at a time: it holds a lease in the row, renewed at every step;
//!   a lease that runs out (its process died) lets the recovery task of any process take the
//!   saga over;
//! - every call is idempotent per order (the reservation is keyed by the order id, the charge
//!   and refund by keys derived from it), so repeating a step after a crash does nothing twice;
//! - from the moment a charge may have been sent, the row says so (`charge_unresolved`) until
//!   an answer settles it; compensation never concludes "nothing was charged" without that
//!   answer (it asks again under the same key, which replays the first charge if there was
//!   one, and refunds it).
//!
//! Layout: this module holds the saga's handle and what every step shares; `drive` runs
//! the step machine, `forward` the checkout's calls, `compensate` the way back,
//! `persist` the writes of each step's result, `recovery` the scan for unfinished sagas.

mod compensate;
mod drive;
mod forward;
mod persist;
mod recovery;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform_events::catalogue::OrderFacts;
use platform_metrics::{Counter, Histogram, Metrics, counter, histogram};
use platform_resilience::Backoff;
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::clients::Clients;
use crate::config::SagaConfig;
use crate::domain::{InvalidTransition, now};
use crate::repo::OrderRow;

/// What can stop a saga other than the calls it makes (those are handled as outcomes).
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("cannot encode an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("order {0} is corrupt: {1}")]
    Corrupt(Uuid, String),
}

impl From<(Uuid, InvalidTransition)> for SagaError {
    fn from((id, error): (Uuid, InvalidTransition)) -> Self {
        SagaError::Corrupt(id, error.to_string())
    }
}

/// Where a step left the saga.
enum Progress {
    /// Saved; go on with the next step. `Some`: the row exactly as the database now holds it
    /// (a forward step's write, guarded against a cancellation), so the next step needs not
    /// read it back; `None`: read it.
    Next(Option<Box<OrderRow>>),
    /// Cannot go on now: give the lease up; recovery tries again after `retry_at`.
    Later(DateTime<Utc>),
    /// Another process holds the saga now.
    Lost,
    /// The test hook stopped the saga dead.
    Halted,
}

/// `order_sagas_total` and `saga_duration_seconds` (order placed → final state) per outcome.
struct Counters {
    confirmed: (Counter, Histogram),
    failed: (Counter, Histogram),
    cancelled: (Counter, Histogram),
}

impl Counters {
    fn new(metrics: &Metrics) -> Self {
        let outcome = |outcome: &'static str| {
            (
                counter!("order_sagas_total", "outcome" => outcome),
                histogram!("saga_duration_seconds", "outcome" => outcome),
            )
        };
        metrics.record(|| Counters {
            confirmed: outcome("confirmed"),
            failed: outcome("failed"),
            cancelled: outcome("cancelled"),
        })
    }
}

/// Counts a saga that ended, and how long it took since the order was placed.
fn finished((count, duration): &(Counter, Histogram), created_at: DateTime<Utc>) {
    count.increment(1);
    duration.record(
        (now() - created_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64(),
    );
}

/// How far one call to [`Saga::drive`] took a saga.
#[derive(Debug)]
pub enum Driven {
    /// Another process holds it, or it had ended already: this call did nothing.
    Elsewhere,
    /// Driven as far as it could go now; read the row for where it stands.
    Stopped,
    /// Confirmed here, and this is the row as written.
    Confirmed(Box<OrderRow>),
}

/// Drives checkout sagas. Cheap to clone.
#[derive(Clone)]
pub struct Saga {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    clients: Clients,
    config: SagaConfig,
    /// This process's name in leases.
    owner: String,
    source: String,
    counters: Counters,
    metrics: Metrics,
}

impl std::fmt::Debug for Saga {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saga")
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

fn chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::seconds(30))
}

/// What every order event says about its order.
pub(crate) fn facts(row: &OrderRow) -> OrderFacts {
    OrderFacts {
        order_id: row.id,
        user_id: row.user_id,
        total: row.total,
        currency: row.currency.clone(),
    }
}

impl Saga {
    pub fn new(
        db: DatabaseConnection,
        clients: Clients,
        config: SagaConfig,
        metrics: &Metrics,
        source: &str,
    ) -> Self {
        let counters = Counters::new(metrics);
        Self {
            inner: Arc::new(Inner {
                db,
                clients,
                config,
                owner: format!("{source}/{}", Uuid::new_v4()),
                source: source.to_owned(),
                counters,
                metrics: metrics.clone(),
            }),
        }
    }

    pub fn clients(&self) -> &Clients {
        &self.inner.clients
    }

    pub fn config(&self) -> &SagaConfig {
        &self.inner.config
    }

    fn lease_until(&self) -> DateTime<Utc> {
        now() + chrono(self.inner.config.lease)
    }

    /// When a saga that could not go on is tried again: sooner first, then backing off
    /// (250 ms doubling to 16 s), jittered so the sagas an outage stopped do not all come back
    /// at once.
    fn retry_at(row: &OrderRow) -> DateTime<Utc> {
        const BACKOFF: Backoff = Backoff {
            base: Duration::from_millis(250),
            max: Duration::from_secs(16),
        };
        now() + chrono(BACKOFF.delay(u32::try_from(row.attempts).unwrap_or(1)))
    }

    /// Gives a new order's row this process's lease, so that it is inserted claimed: the
    /// request that placed it drives it ([`Self::drive_new`]) without claiming it first, and
    /// no recovery task elsewhere takes it meanwhile.
    pub fn lease_new(&self, row: &mut OrderRow) {
        row.lease_owner = Some(self.inner.owner.clone());
        row.lease_until = Some(self.lease_until());
        row.attempts = 1;
    }
}
