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

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use platform_events::catalogue::{OrderCancelled, OrderConfirmed, OrderFacts, OrderFailed};
use platform_events::{Envelope, Event, outbox};
use platform_http::CancellationToken;
use platform_metrics::{Counter, Histogram, Metrics, counter, histogram};
use platform_proto::payment::v1 as payment;
use platform_proto::product::v1 as product;
use platform_resilience::Backoff;
use sea_orm::{DatabaseConnection, DbErr};
use tonic::Code;
use tracing::Instrument;
use uuid::Uuid;

use crate::clients::{CallError, Clients};
use crate::config::{HaltAt, SagaConfig};
use crate::domain::{InvalidTransition, OrderId, OrderStatus, Step, now};
use crate::repo::{self, Guard, ItemRow, OrderRow};

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

fn facts(row: &OrderRow) -> OrderFacts {
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
            let step = Step::parse(&row.step).ok_or_else(|| {
                SagaError::Corrupt(row.id, format!("unknown step {:?}", row.step))
            })?;
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
                Progress::Next(Some(row)) if row.step == Step::Done.as_str() => {
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

    /// Saves `row` (and `events`) as the saga's new state, unless a cancellation arrived
    /// meanwhile: then the facts learnt are kept and the saga turns to compensation.
    async fn advance(
        &self,
        mut row: OrderRow,
        events: Vec<Envelope>,
    ) -> Result<Progress, SagaError> {
        let inner = &self.inner;
        row.updated_at = now();
        if row.step == Step::Done.as_str() {
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
        if row.step == Step::Charge.as_str() {
            // The step that ran was the reservation: no charge was ever sent.
            row.charge_unresolved = false;
        }
        row.step = Step::Compensate.as_str().to_owned();
        row.lease_owner = Some(inner.owner.clone());
        row.lease_until = Some(self.lease_until());
        self.save(row).await
    }

    /// Saves `row` while this process holds the lease (compensation cannot be overtaken by
    /// a cancellation: it is where cancellations lead).
    async fn save(&self, row: OrderRow) -> Result<Progress, SagaError> {
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
    async fn compensate_from_here(
        &self,
        mut row: OrderRow,
        reason: Option<String>,
    ) -> Result<Progress, SagaError> {
        if let Some(reason) = &reason {
            tracing::info!(order_id = %row.id, %reason, "checkout failed; compensating");
        }
        row.step = Step::Compensate.as_str().to_owned();
        row.failure_reason = reason;
        row.updated_at = now();
        row.lease_until = Some(self.lease_until());
        self.save(row).await
    }

    fn envelope<E: Event>(&self, event: &E) -> Result<Envelope, SagaError> {
        Ok(Envelope::new(&self.inner.source, event)?)
    }

    fn move_to(row: &mut OrderRow, to: OrderStatus, step: Step) -> Result<(), SagaError> {
        let from = OrderStatus::parse(&row.status).ok_or_else(|| {
            SagaError::Corrupt(row.id, format!("unknown status {:?}", row.status))
        })?;
        row.status = from
            .transition(to)
            .map_err(|e| (row.id, e))?
            .as_str()
            .to_owned();
        row.step = step.as_str().to_owned();
        Ok(())
    }

    // --- forward ---

    async fn reserve(&self, mut row: OrderRow, items: &[ItemRow]) -> Result<Progress, SagaError> {
        let lines = items
            .iter()
            .map(|item| product::Line {
                product_id: item.product_id.to_string(),
                quantity: u32::try_from(item.quantity).unwrap_or(0),
            })
            .collect();
        match self.inner.clients.reserve(row.id.to_string(), lines).await {
            Ok(_) => {
                Self::move_to(&mut row, OrderStatus::StockReserved, Step::Charge)?;
                // Written ahead: from now on a charge may be on its way.
                row.charge_unresolved = true;
                self.advance(row, Vec::new()).await
            }
            Err(error) if Self::nothing_definite(&error) && now() < row.deadline => {
                // The product service is restarting or overloaded: the reservation is keyed by
                // the order, so trying again later reserves once. Only the deadline ends it.
                tracing::warn!(order_id = %row.id, %error, "cannot reserve yet; will retry");
                Self::wait(self, row).await
            }
            Err(error) => {
                let reason = match (&error, error.refused_code()) {
                    (CallError::Refused { status, .. }, Some(Code::FailedPrecondition)) => {
                        format!("out of stock: {}", status.message())
                    }
                    (CallError::Refused { status, .. }, Some(Code::NotFound)) => {
                        format!("a product is no longer sold: {}", status.message())
                    }
                    (_, Some(Code::Aborted)) => {
                        "the stock reservation was already released".to_owned()
                    }
                    _ => format!("stock could not be reserved: {error}"),
                };
                self.compensate_from_here(row, Some(reason)).await
            }
        }
    }

    /// Whether a failed call said nothing final: it never arrived (refused connection, open
    /// breaker), its answer was lost, or the service said "not now". Worth another try while
    /// the checkout has time; a definite answer (out of stock, declined) is not.
    fn nothing_definite(error: &CallError) -> bool {
        match error {
            CallError::NotSent { .. } | CallError::Unknown { .. } => true,
            CallError::Refused { status, .. } => matches!(
                status.code(),
                Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::DeadlineExceeded
            ),
        }
    }

    /// Saves `row` and gives the saga up until its next try, backing off with jitter.
    async fn wait(&self, row: OrderRow) -> Result<Progress, SagaError> {
        let retry_at = Self::retry_at(&row);
        match self.save(row).await? {
            Progress::Next(_) => Ok(Progress::Later(retry_at)),
            other => Ok(other),
        }
    }

    fn charge_request(row: &OrderRow) -> payment::ChargeRequest {
        let shipping_country =
            serde_json::from_str::<crate::domain::ShippingAddress>(&row.shipping_address)
                .map(|address| address.country)
                .unwrap_or_default();
        payment::ChargeRequest {
            shipping_country,
            card_bin: String::new(),
            order_id: row.id.to_string(),
            user_id: row.user_id.to_string(),
            amount: Some(payment::Money {
                amount: row.total,
                currency: row.currency.clone(),
            }),
            token: row.payment_token.clone().unwrap_or_default(),
            idempotency_key: OrderId::from_uuid(row.id).charge_key(),
        }
    }

    async fn charge(&self, mut row: OrderRow, fresh: bool) -> Result<Progress, SagaError> {
        if row.payment_token.is_none() {
            let reason = "the payment details are no longer available".to_owned();
            return self.compensate_from_here(row, Some(reason)).await;
        }
        // Whether a charge may have reached the payment service before this attempt.
        let sent_before = row.charge_unresolved && !fresh;
        if !row.charge_unresolved {
            // Written ahead, as when the saga first came here: a crash after sending must
            // not leave the row saying nothing was sent.
            row.charge_unresolved = true;
            row.updated_at = now();
            if !matches!(self.save(row.clone()).await?, Progress::Next(_)) {
                return Ok(Progress::Lost);
            }
        }
        let result = self.inner.clients.charge(Self::charge_request(&row)).await;
        if self.inner.config.halt_at == Some(HaltAt::AfterChargeCall) && result.is_ok() {
            tracing::warn!(order_id = %row.id, "test hook: halting after the charge");
            return Ok(Progress::Halted);
        }
        match result {
            Ok(paid) => {
                row.payment_id = Uuid::parse_str(&paid.id).ok();
                row.charge_unresolved = false;
                let declined = |what: &str| {
                    if paid.failure_reason.is_empty() {
                        what.to_owned()
                    } else {
                        format!("{what}: {}", paid.failure_reason)
                    }
                };
                match paid.status.as_str() {
                    "captured" | "authorized" => {
                        Self::move_to(&mut row, OrderStatus::PaymentAuthorized, Step::Commit)?;
                        self.advance(row, Vec::new()).await
                    }
                    "pending" | "unknown" => {
                        // The provider has not said yet (or its answer was lost and the
                        // payment service is asking it again): ask again shortly. Past the
                        // deadline, compensation waits for the answer before refunding.
                        row.charge_unresolved = true;
                        self.wait(row).await
                    }
                    "failed" => {
                        self.compensate_from_here(row, Some(declined("payment declined")))
                            .await
                    }
                    "blocked" => {
                        let reason = "payment blocked by the fraud checks".to_owned();
                        self.compensate_from_here(row, Some(reason)).await
                    }
                    "requires_review" => {
                        // Held for a person: the order waits in `payment_review`; the charge
                        // stays unresolved until the review is decided.
                        row.charge_unresolved = true;
                        Self::move_to(&mut row, OrderStatus::PaymentReview, Step::Review)?;
                        tracing::info!(order_id = %row.id, "payment held for review");
                        self.advance(row, Vec::new()).await
                    }
                    other => {
                        let reason = format!("unexpected payment status {other}");
                        self.compensate_from_here(row, Some(reason)).await
                    }
                }
            }
            Err(error) if error.definite_refusal() => {
                // The payment service answered this request under the order's key: no charge.
                row.charge_unresolved = false;
                let reason = format!("payment failed: {error}");
                self.compensate_from_here(row, Some(reason)).await
            }
            Err(error @ CallError::NotSent { .. }) => {
                if !sent_before {
                    // Neither this attempt nor any before reached the payment service.
                    row.charge_unresolved = false;
                }
                if now() < row.deadline {
                    // A restart or an open breaker: wait it out within the deadline.
                    tracing::warn!(order_id = %row.id, %error, "cannot charge yet; will retry");
                    return self.wait(row).await;
                }
                // Past the deadline the customer reads the same first words as when the top
                // of `drive` notices it, whichever check happens to see it first.
                let reason = if row.charge_unresolved {
                    format!("checkout did not complete in time ({error})")
                } else {
                    format!("checkout did not complete in time ({error}); nothing was charged")
                };
                self.compensate_from_here(row, Some(reason)).await
            }
            Err(error) => {
                // The charge may have happened: try again under the same key while there is
                // time; compensation settles it otherwise.
                tracing::warn!(order_id = %row.id, %error, "charge outcome unknown");
                if now() > row.deadline {
                    let reason = format!("checkout did not complete in time ({error})");
                    self.compensate_from_here(row, Some(reason)).await
                } else {
                    self.wait(row).await
                }
            }
        }
    }

    /// Asks how the review of the order's payment ended: approved and captured → commit, with
    /// a fresh deadline (the checkout's clock stopped while a person decided); declined,
    /// expired or failed → compensate; still held → ask again later.
    async fn review(&self, mut row: OrderRow) -> Result<Progress, SagaError> {
        let Some(payment_id) = row.payment_id else {
            return Err(SagaError::Corrupt(
                row.id,
                "in review without a payment".into(),
            ));
        };
        let paid = match self.inner.clients.get_payment(payment_id.to_string()).await {
            Ok(paid) => paid,
            Err(error) => {
                tracing::warn!(order_id = %row.id, %error, "cannot read the payment under review yet");
                return self.wait(row).await;
            }
        };
        match paid.status.as_str() {
            "captured" | "authorized" => {
                row.charge_unresolved = false;
                row.deadline = now() + chrono(self.inner.config.deadline);
                Self::move_to(&mut row, OrderStatus::PaymentAuthorized, Step::Commit)?;
                self.advance(row, Vec::new()).await
            }
            "failed" | "blocked" => {
                row.charge_unresolved = false;
                // The reviewer's own words stay with the payment: the customer reads this.
                let reason = if paid.failure_reason.contains("not reviewed in time") {
                    "the payment was not reviewed in time; nothing was charged".to_owned()
                } else if paid.failure_reason.starts_with("not approved in review")
                    || paid.failure_reason.is_empty()
                {
                    "the payment was not approved in review; nothing was charged".to_owned()
                } else {
                    format!("{}; nothing was charged", paid.failure_reason)
                };
                self.compensate_from_here(row, Some(reason)).await
            }
            // Held, or approved and on its way to a provider.
            _ => self.wait(row).await,
        }
    }

    async fn commit(&self, mut row: OrderRow) -> Result<Progress, SagaError> {
        match self.inner.clients.commit(row.id.to_string()).await {
            Ok(_) => {
                Self::move_to(&mut row, OrderStatus::Confirmed, Step::Done)?;
                row.payment_token = None;
                let Some(payment_id) = row.payment_id else {
                    return Err(SagaError::Corrupt(
                        row.id,
                        "confirmed without a payment".into(),
                    ));
                };
                let confirmed = self.envelope(&OrderConfirmed {
                    order: facts(&row),
                    payment_id,
                })?;
                let created_at = row.created_at;
                let progress = self.advance(row, vec![confirmed]).await?;
                if matches!(progress, Progress::Next(_)) {
                    finished(&self.inner.counters.confirmed, created_at);
                }
                Ok(progress)
            }
            Err(error) if error.refused_code() == Some(Code::FailedPrecondition) => {
                let reason = "the stock reservation expired before the order was confirmed";
                self.compensate_from_here(row, Some(reason.to_owned()))
                    .await
            }
            Err(error) if error.refused_code() == Some(Code::NotFound) => {
                let reason = "the stock reservation is missing".to_owned();
                self.compensate_from_here(row, Some(reason)).await
            }
            Err(error) => {
                tracing::warn!(order_id = %row.id, %error, "commit failed; will retry");
                Ok(Progress::Later(Self::retry_at(&row)))
            }
        }
    }

    // --- backward ---

    /// Undoes every step taken, then ends the order `failed` or `cancelled`. Stops (to be
    /// retried) at the first call that cannot be made now; every call is idempotent, so the
    /// retry repeats nothing.
    async fn compensate(&self, mut row: OrderRow) -> Result<Progress, SagaError> {
        let clients = &self.inner.clients;
        let order_id = row.id.to_string();
        // Stock: release a held reservation, or restock a committed one. Releasing an order
        // never reserved records the release, so a Reserve still in flight reserves nothing.
        let stock = match clients.release(order_id.clone()).await {
            Err(error) if error.refused_code() == Some(Code::FailedPrecondition) => {
                clients.restock(order_id.clone()).await.map(|_| ())
            }
            other => other.map(|_| ()),
        };
        if let Err(error) = stock {
            tracing::warn!(order_id = %row.id, %error, "cannot give the stock back yet");
            return Ok(Progress::Later(Self::retry_at(&row)));
        }
        // A charge whose outcome is unknown: ask again under the same key.
        if row.charge_unresolved {
            match clients.charge(Self::charge_request(&row)).await {
                Ok(paid) if paid.status == "requires_review" => {
                    // Held for a person: the checkout gave up on it, so it is declined;
                    // nothing was charged. While the provider holds it, wait.
                    row.payment_id = Uuid::parse_str(&paid.id).ok();
                    let reason = if row.cancel_requested {
                        "order cancelled"
                    } else {
                        "the checkout ended"
                    };
                    match clients.void(paid.id.clone(), reason.to_owned()).await {
                        Ok(voided) if voided.status == "failed" || voided.status == "blocked" => {
                            row.charge_unresolved = false;
                        }
                        Ok(_) | Err(_) => {
                            tracing::warn!(order_id = %row.id, "the held payment cannot be ended yet");
                            return self.wait(row).await;
                        }
                    }
                }
                Ok(paid) if matches!(paid.status.as_str(), "pending" | "unknown") => {
                    // Not settled at the provider yet: what to give back is not known.
                    row.payment_id = Uuid::parse_str(&paid.id).ok();
                    tracing::warn!(order_id = %row.id, status = %paid.status, "waiting for the charge to settle before compensating");
                    return self.wait(row).await;
                }
                Ok(paid) => {
                    row.payment_id = Uuid::parse_str(&paid.id).ok();
                    row.charge_unresolved = false;
                }
                Err(error) if error.definite_refusal() => {
                    row.charge_unresolved = false;
                }
                Err(error) => {
                    tracing::warn!(order_id = %row.id, %error, "cannot settle the charge yet");
                    return Ok(Progress::Later(Self::retry_at(&row)));
                }
            }
        }
        if let Some(payment_id) = row.payment_id {
            let refund = clients
                .refund(payment::RefundRequest {
                    payment_id: payment_id.to_string(),
                    amount: None,
                    reason: if row.cancel_requested {
                        "order cancelled".to_owned()
                    } else {
                        "order failed".to_owned()
                    },
                    idempotency_key: OrderId::from_uuid(row.id).refund_key(),
                })
                .await;
            let refunded = match refund {
                Ok(paid) => Ok(paid.refunded_amount),
                // Nothing captured to give back (declined, blocked), or given back already.
                Err(error) if error.refused_code() == Some(Code::FailedPrecondition) => clients
                    .get_payment(payment_id.to_string())
                    .await
                    .map(|paid| paid.refunded_amount),
                Err(error) => Err(error),
            };
            match refunded {
                Ok(amount) => row.refunded = amount.clamp(0, row.total),
                Err(error) => {
                    tracing::warn!(order_id = %row.id, %error, "cannot refund yet");
                    return Ok(Progress::Later(Self::retry_at(&row)));
                }
            }
        }
        let (end, event, counter) = if row.cancel_requested {
            let event = self.envelope(&OrderCancelled {
                order: facts(&row),
                refunded: row.refunded,
            })?;
            (
                OrderStatus::Cancelled,
                event,
                &self.inner.counters.cancelled,
            )
        } else {
            let reason = row.failure_reason.clone().unwrap_or_default();
            let event = self.envelope(&OrderFailed {
                order: facts(&row),
                reason,
                refunded: row.refunded,
            })?;
            (OrderStatus::Failed, event, &self.inner.counters.failed)
        };
        Self::move_to(&mut row, end, Step::Done)?;
        row.payment_token = None;
        row.lease_owner = None;
        row.lease_until = None;
        row.updated_at = now();
        let txn = platform_db::begin_write(&self.inner.db).await?;
        if !repo::save(&txn, &row, &self.inner.owner, Guard::Lease).await? {
            return Ok(Progress::Lost);
        }
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        finished(counter, row.created_at);
        tracing::info!(order_id = %row.id, status = %end, refunded = row.refunded, "order compensated");
        Ok(Progress::Next(None))
    }

    // --- recovery ---

    /// Finds sagas nobody drives (their process died, or they wait for a retry) and drives
    /// them, until `shutdown`.
    pub async fn recover(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.inner.config.scan_interval) => {}
            }
            let stalled = match repo::stalled(&self.inner.db, now(), 64).await {
                Ok(stalled) => stalled,
                Err(error) => {
                    tracing::warn!(%error, "cannot look for stalled sagas");
                    continue;
                }
            };
            futures::stream::iter(stalled)
                .for_each_concurrent(8, |id| {
                    let saga = self.clone();
                    async move {
                        if let Err(error) = saga.drive(id).await {
                            tracing::error!(order_id = %id, %error, "saga recovery failed");
                        }
                    }
                })
                .await;
        }
    }
}
