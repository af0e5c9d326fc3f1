//! The payment use cases: charge (fraud rules, then the providers with failover), refund,
//! read, and apply provider webhooks. HTTP and gRPC both call these.
//!
//! Exactly-once, end to end:
//! - A charge or refund carries an idempotency key, claimed in the database before anything
//!   else happens; a repeat gets the stored response, a different request under the same key
//!   is refused, and the provider is called with our payment id as *its* idempotency key, so
//!   even a repeat after a crash mid-call cannot charge twice.
//! - Refunds take their amount off what is left to refund in one conditional `UPDATE` before
//!   the provider is called (and give it back if the provider refuses), so concurrent refunds
//!   never add up to more than was captured; a database `CHECK` backs it.
//! - Each provider webhook event is recorded by id in the transaction that applies it:
//!   duplicates are acknowledged and ignored.
//!
//! One submodule per use case: `charges` (with `answers`: what a provider's answer to a
//! charge means, wherever the question came from), `reviews` of held payments, `refunds` and
//! `webhooks`. `keys` is the idempotency-key store that charges and refunds share; `counters`
//! the metrics the use cases record. Reads and the background reconciler are here.

mod answers;
mod charges;
mod counters;
mod keys;
mod refunds;
mod reviews;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use platform_events::catalogue::{
    PaymentAuthorized, PaymentCaptured, PaymentFacts, PaymentFailed, PaymentReviewRequested,
};
use platform_events::{Envelope, Event, outbox};
use platform_http::{CancellationToken, Page, PageRequest};
use platform_metrics::Metrics;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use uuid::Uuid;

pub use charges::ChargeCommand;
use counters::Counters;
pub use refunds::RefundCommand;

use crate::domain::{PaymentId, PaymentStatus, now};
use crate::fraud::{self, FraudConfig};
use crate::orders::{LookupFailed, OrderBook};
use crate::providers::{ProviderError, Providers, WebhookError};
use crate::repo::{self, PaymentRow};
use crate::view::{CorruptRow, PaymentView};

/// Runs `work` to its end in a task of its own, whatever becomes of the caller's future, in
/// the caller's span.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, PaymentError>> + Send + 'static,
) -> Result<T, PaymentError> {
    use tracing::Instrument;
    tokio::spawn(work.in_current_span())
        .await
        .map_err(|error| PaymentError::Interrupted(error.to_string()))?
}

/// `PAYMENT_REVIEW_TTL`'s default: shorter than the product service's reservation TTL (15 min),
/// so an approved order still finds its stock held.
pub const DEFAULT_REVIEW_TTL: Duration = Duration::from_secs(10 * 60);

/// Everything a use case can fail with. The HTTP and gRPC layers map these to statuses.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// No such payment, or one the caller may not see (indistinguishable on purpose).
    #[error("payment not found")]
    NotFound,
    #[error("this idempotency key was used for a different request")]
    KeyReused,
    #[error("a request with this idempotency key is still being processed")]
    KeyInProgress,
    #[error("only captured payments can be refunded (this one is {0})")]
    NotRefundable(&'static str),
    #[error("the refund exceeds the {0} minor units left to refund")]
    ExceedsRefundable(i64),
    #[error("the refund amount must be in the payment's currency ({0})")]
    WrongCurrency(String),
    #[error("the webhook names a payment not known yet")]
    WebhookTooEarly,
    #[error("no payment provider named {0}")]
    UnknownProvider(String),
    #[error("payment {payment} belongs to order {order}: refund it through the order")]
    RefundThroughOrder { payment: Uuid, order: Uuid },
    #[error("direct payments are switched off")]
    DirectPaymentsOff,
    #[error("order {0} is paid by its checkout, once, under its key")]
    OrderPaidByCheckout(Uuid),
    /// A direct charge names an order of somebody else's (its total is not told).
    #[error("order {0} is not one of the caller's orders")]
    NotYourOrder(Uuid),
    /// The order service could not be asked about the order a direct charge names: nothing
    /// was charged.
    #[error(transparent)]
    OrderUnverified(#[from] LookupFailed),
    #[error("the charge ({amount} {currency}) does not match order {order}'s ({expected})")]
    ChargeMismatch {
        order: Uuid,
        amount: i64,
        currency: String,
        expected: String,
    },
    #[error("the payment is {0}, not waiting for a review")]
    NotInReview(PaymentStatus),
    #[error("the provider holds this payment for its own check; its webhook decides it")]
    HeldByProvider,
    #[error("webhook refused: {0}")]
    Webhook(#[from] WebhookError),
    #[error("the payment provider could not refund: {0}")]
    Provider(ProviderError),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// The task doing the work panicked or was aborted.
    #[error("interrupted: {0}")]
    Interrupted(String),
    #[error("{0}")]
    Corrupt(#[from] CorruptRow),
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: Uuid,
    pub admin: bool,
}

impl Caller {
    fn may_see(&self, row: &PaymentRow) -> bool {
        self.admin || row.user_id == self.user_id
    }
}

/// A use case's answer, and whether it is the replay of an earlier one.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub payment: PaymentView,
    pub replayed: bool,
}

/// The use cases. Cheap to clone.
#[derive(Clone)]
pub struct Payments {
    db: DatabaseConnection,
    providers: Providers,
    fraud: Arc<FraudConfig>,
    counters: Arc<Counters>,
    source: Arc<str>,
    /// How long a payment held by the fraud rules waits for a decision before it is declined.
    review_ttl: Duration,
    /// The order service, which a direct charge naming an order is checked against.
    orders: OrderBook,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl Payments {
    pub fn new(
        db: DatabaseConnection,
        providers: Providers,
        fraud: FraudConfig,
        orders: OrderBook,
        metrics: &Metrics,
        source: &str,
    ) -> Self {
        Self {
            db,
            providers: providers.with_metrics(metrics.clone()),
            fraud: Arc::new(fraud),
            counters: Arc::new(Counters::new(metrics)),
            source: Arc::from(source),
            review_ttl: DEFAULT_REVIEW_TTL,
            orders,
        }
    }

    /// Reviews left undecided for `ttl` are declined (`PAYMENT_REVIEW_TTL`).
    pub fn with_review_ttl(mut self, ttl: Duration) -> Self {
        self.review_ttl = ttl;
        self
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    fn facts(row: &PaymentRow) -> PaymentFacts {
        PaymentFacts {
            payment_id: row.id,
            order_id: row.order_id,
            user_id: row.user_id,
            amount: row.amount,
            currency: row.currency.clone(),
            provider: row.provider.clone(),
        }
    }

    async fn emit<E: Event, C: ConnectionTrait>(
        &self,
        conn: &C,
        event: &E,
    ) -> Result<(), PaymentError> {
        outbox::enqueue(conn, &Envelope::new(&self.source, event)?).await?;
        Ok(())
    }

    /// The event that announces `row`'s current status, if it has one.
    async fn announce<C: ConnectionTrait>(
        &self,
        conn: &C,
        row: &PaymentRow,
    ) -> Result<(), PaymentError> {
        let payment = Self::facts(row);
        match row.status {
            PaymentStatus::Authorized => self.emit(conn, &PaymentAuthorized { payment }).await,
            PaymentStatus::Captured => self.emit(conn, &PaymentCaptured { payment }).await,
            PaymentStatus::Failed => {
                let reason = row.failure_reason.clone().unwrap_or_default();
                self.emit(conn, &PaymentFailed { payment, reason }).await
            }
            PaymentStatus::RequiresReview => {
                let reasons: Vec<fraud::Reason> =
                    serde_json::from_str(&row.risk_reasons).unwrap_or_default();
                let requested = PaymentReviewRequested {
                    payment,
                    held_by: if row.provider.is_empty() {
                        "fraud"
                    } else {
                        "provider"
                    }
                    .to_owned(),
                    score: u8::try_from(row.risk_score).unwrap_or(0),
                    reasons: reasons.iter().map(|r| r.code().to_owned()).collect(),
                };
                self.emit(conn, &requested).await
            }
            _ => Ok(()),
        }
    }

    // --- reads ---

    pub async fn get(&self, caller: Caller, id: PaymentId) -> Result<PaymentView, PaymentError> {
        let row = repo::find_payment(&self.db, id)
            .await?
            .filter(|row| caller.may_see(row))
            .ok_or(PaymentError::NotFound)?;
        Ok(PaymentView::try_from(&row)?)
    }

    /// The caller's payments (an administrator's: everyone's), newest first.
    pub async fn list(
        &self,
        caller: Caller,
        status: Option<PaymentStatus>,
        page: PageRequest,
    ) -> Result<Page<PaymentView>, PaymentError> {
        let user = (!caller.admin).then_some(caller.user_id);
        let (rows, total) = repo::list_payments(&self.db, user, status, page).await?;
        let items = rows
            .iter()
            .map(PaymentView::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.into_page(items, total))
    }

    // --- background ---

    /// Asks the providers about every unknown outcome that is due, until `shutdown`: the
    /// backstop for a charge nobody asks about again (the order service normally does).
    pub async fn reconcile(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let due = match repo::due_checks(&self.db, now(), 32).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "cannot look for unknown charge outcomes");
                    continue;
                }
            };
            for row in due {
                if let Err(error) = self.resolve(PaymentId::from_uuid(row.id)).await {
                    tracing::warn!(payment_id = %row.id, %error, "cannot resolve an unknown charge outcome yet");
                }
            }
            if let Err(error) = self.finish_stale_refunds().await {
                tracing::warn!(%error, "cannot look for unfinished refunds");
            }
            if let Err(error) = self.expire_reviews().await {
                tracing::warn!(%error, "cannot look for expired reviews");
            }
            if let Err(error) = self.finish_approvals().await {
                tracing::warn!(%error, "cannot look for unfinished approvals");
            }
        }
    }
}
