//! Writing a step's result into the order's row: a forward step's save is guarded against
//! a cancellation that arrived meanwhile, the others only against a lost lease.

use platform_events::{Envelope, Event, outbox};

use super::{Progress, Saga, SagaError};
use crate::domain::{OrderId, OrderStatus, Step, now};
use crate::repo::{self, Guard, OrderRow};

impl Saga {
    /// Saves `row` (and `events`) as the saga's new state, unless a cancellation arrived
    /// meanwhile: then the facts learnt are kept and the saga turns to compensation.
    pub(super) async fn advance(
        &self,
        mut row: OrderRow,
        events: Vec<Envelope>,
    ) -> Result<Progress, SagaError> {
        let inner = &self.inner;
        row.updated_at = now();
        if row.step == Step::Done {
            row.lease_owner = None;
            row.lease_until = None;
        } else {
            row.lease_until = Some(self.lease_until());
        }
        // The guard matches the lease owner as it is stored, before this write. A step with
        // no events is one statement: no transaction around it.
        let guard = Guard::LeaseAndNotCancelled;
        let saved = if events.is_empty() {
            repo::save(&inner.db, &row, &inner.owner, guard).await?
        } else {
            let txn = platform_db::begin_write(&inner.db).await?;
            let saved = repo::save(&txn, &row, &inner.owner, guard).await?;
            if saved {
                for event in &events {
                    outbox::enqueue(&txn, event).await?;
                }
                txn.commit().await?;
            }
            saved
        };
        if saved {
            // The guard held: the database has this row, cancellation flag (false) included.
            return Ok(Progress::Next(Some(Box::new(row))));
        }
        let Some(current) = repo::find(&inner.db, OrderId::from_uuid(row.id)).await? else {
            return Ok(Progress::Lost);
        };
        if current.lease_owner.as_deref() != Some(inner.owner.as_str()) {
            return Ok(Progress::Lost);
        }
        // Cancelled while the step ran: keep what the step learnt, then undo it all.
        if row.step == Step::Charge {
            // The step that ran was the reservation: no charge was ever sent.
            row.charge_unresolved = false;
        }
        row.step = Step::Compensate;
        row.lease_owner = Some(inner.owner.clone());
        row.lease_until = Some(self.lease_until());
        self.save(row).await
    }

    /// Saves `row` while this process holds the lease (compensation cannot be overtaken by
    /// a cancellation: it is where cancellations lead).
    pub(super) async fn save(&self, row: OrderRow) -> Result<Progress, SagaError> {
        Ok(
            // Read back before the next step: a cancellation may have arrived meanwhile.
            if repo::save(&self.inner.db, &row, &self.inner.owner, Guard::Lease).await? {
                Progress::Next(None)
            } else {
                Progress::Lost
            },
        )
    }

    /// Turns the saga to compensation (`reason`: why checkout failed; `None` for a
    /// cancellation).
    pub(super) async fn compensate_from_here(
        &self,
        mut row: OrderRow,
        reason: Option<String>,
    ) -> Result<Progress, SagaError> {
        if let Some(reason) = &reason {
            tracing::info!(order_id = %row.id, %reason, "checkout failed; compensating");
        }
        row.step = Step::Compensate;
        row.failure_reason = reason;
        row.updated_at = now();
        row.lease_until = Some(self.lease_until());
        self.save(row).await
    }

    pub(super) fn envelope<E: Event>(&self, event: &E) -> Result<Envelope, SagaError> {
        Ok(Envelope::new(&self.inner.source, event)?)
    }

    pub(super) fn move_to(
        row: &mut OrderRow,
        to: OrderStatus,
        step: Step,
    ) -> Result<(), SagaError> {
        row.status = row.status.transition(to).map_err(|e| (row.id, e))?;
        row.step = step;
        Ok(())
    }

    /// Saves `row` and gives the saga up until its next try, backing off with jitter.
    pub(super) async fn wait(&self, row: OrderRow) -> Result<Progress, SagaError> {
        let retry_at = Self::retry_at(&row);
        match self.save(row).await? {
            Progress::Next(_) => Ok(Progress::Later(retry_at)),
            other => Ok(other),
        }
    }
}
