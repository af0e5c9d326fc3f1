//! The step machine: claims a saga, runs its steps one after another until it ends, must
//! wait, or is lost to another process, and traces and times each step.

use platform_metrics::histogram;
use tracing::Instrument;

use super::{Driven, Progress, Saga, SagaError};
use crate::domain::{OrderId, Step, now};
use crate::repo::{self, ItemRow, OrderRow};

impl Saga {
    /// Drives the saga of `id` as far as it can go now.
    pub async fn drive(&self, id: OrderId) -> Result<Driven, SagaError> {
        let inner = &self.inner;
        let at = now();
        // The claim answers with the row, and every forward step with the row it wrote: a
        // checkout that runs straight through reads its order once.
        let Some(claimed) =
            repo::claim(&inner.db, id, &inner.owner, self.lease_until(), at).await?
        else {
            return Ok(Driven::Elsewhere);
        };
        self.run(claimed, None).await
    }

    /// Drives the saga of an order just placed as [`Self::lease_new`] left it, with its
    /// lines, as far as it can go now.
    pub async fn drive_new(&self, row: OrderRow, items: Vec<ItemRow>) -> Result<Driven, SagaError> {
        self.run(row, Some(items)).await
    }

    /// Drives the saga from `row`, as this process holds it; `items`: its lines, if known.
    async fn run(
        &self,
        row: OrderRow,
        mut items: Option<Vec<ItemRow>>,
    ) -> Result<Driven, SagaError> {
        let inner = &self.inner;
        let id = OrderId::from_uuid(row.id);
        let mut known = Some(Box::new(row));
        // Whether this run moved the saga into its charge step: then a charge that was not
        // sent now was never sent at all.
        let mut fresh_charge = false;
        loop {
            let mut row = match known.take() {
                Some(row) => *row,
                None => match repo::find(&inner.db, id).await? {
                    Some(row) => row,
                    None => return Ok(Driven::Stopped),
                },
            };
            if row.lease_owner.as_deref() != Some(inner.owner.as_str()) {
                return Ok(Driven::Stopped);
            }
            let step = row.step;
            let forward = matches!(
                step,
                Step::Reserve | Step::Charge | Step::Review | Step::Commit
            );
            // A review waits for a person, under its own TTL, not the checkout's deadline.
            let late = now() > row.deadline && step != Step::Review;
            if forward && (row.cancel_requested || late) && step == Step::Charge && fresh_charge {
                // This run moved the saga to its charge and turns back before sending it:
                // no charge was ever sent.
                row.charge_unresolved = false;
            }
            let progress = if forward && row.cancel_requested {
                self.compensate_from_here(row, None).await?
            } else if forward && late {
                // Customers are told nothing was charged only when that is known.
                let reason = if step == Step::Commit || row.charge_unresolved {
                    "checkout did not complete in time".to_owned()
                } else {
                    "checkout did not complete in time; nothing was charged".to_owned()
                };
                self.compensate_from_here(row, Some(reason)).await?
            } else {
                match step {
                    Step::Reserve => {
                        let items = match items.take() {
                            Some(items) => items,
                            None => repo::items(&inner.db, &[row.id]).await?,
                        };
                        let progress = self.traced(step, id, self.reserve(row, &items)).await?;
                        fresh_charge = matches!(progress, Progress::Next(_));
                        progress
                    }
                    Step::Charge => {
                        self.traced(step, id, self.charge(row, fresh_charge))
                            .await?
                    }
                    Step::Review => self.traced(step, id, self.review(row)).await?,
                    Step::Commit => self.traced(step, id, self.commit(row)).await?,
                    Step::Compensate => self.traced(step, id, self.compensate(row)).await?,
                    Step::Done => {
                        repo::release(&inner.db, id, &inner.owner, None).await?;
                        return Ok(Driven::Stopped);
                    }
                }
            };
            match progress {
                Progress::Next(Some(row)) if row.step == Step::Done => {
                    return Ok(Driven::Confirmed(row));
                }
                Progress::Next(next) => known = next,
                Progress::Later(retry_at) => {
                    repo::release(&inner.db, id, &inner.owner, Some(retry_at)).await?;
                    return Ok(Driven::Stopped);
                }
                Progress::Lost | Progress::Halted => return Ok(Driven::Stopped),
            }
        }
    }

    /// Runs one step of the saga of `id` in a span of its own (`saga reserve`, `saga charge`,
    /// `saga commit`, `saga compensate`) that records how the step ended, and times it into
    /// `saga_step_duration_seconds{step, outcome}`.
    async fn traced(
        &self,
        step: Step,
        id: OrderId,
        work: impl Future<Output = Result<Progress, SagaError>>,
    ) -> Result<Progress, SagaError> {
        let span = tracing::info_span!(
            "saga step",
            otel.name = %format_args!("saga {}", step.as_str()),
            otel.status_code = tracing::field::Empty,
            service = crate::config::DEFAULTS.name,
            saga.step = step.as_str(),
            saga.outcome = tracing::field::Empty,
            order_id = %id,
        );
        let started = std::time::Instant::now();
        let result = work.instrument(span.clone()).await;
        let outcome = match &result {
            Ok(Progress::Next(_)) => "advanced",
            Ok(Progress::Later(_)) => "retry_later",
            Ok(Progress::Lost) => "lost",
            Ok(Progress::Halted) => "halted",
            Err(_) => "error",
        };
        span.record("saga.outcome", outcome);
        if let Err(error) = &result {
            platform_telemetry::record_error(&span, "SagaError", &error.to_string());
            span.in_scope(|| tracing::error!(%error, "saga step failed"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        self.inner.metrics.record(|| {
            histogram!("saga_step_duration_seconds", "step" => step.as_str(), "outcome" => outcome)
                .record(elapsed)
        });
        result
    }
}
