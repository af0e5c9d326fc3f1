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

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use http::HeaderMap;
use platform_events::catalogue::{
    PaymentAuthorized, PaymentBlocked, PaymentCaptured, PaymentFacts, PaymentFailed,
    PaymentRefunded, PaymentReviewDecided, PaymentReviewRequested,
};
use platform_events::{Envelope, Event, outbox};
use platform_http::{CancellationToken, Page, PageRequest, fingerprint};
use platform_metrics::{Counter, Metrics, counter};
use platform_money::Money;
use platform_resilience::Backoff;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr};
use uuid::Uuid;

use crate::domain::{CardToken, PaymentId, PaymentSource, PaymentStatus, now};
use crate::fraud::{self, Decision, FraudConfig, History, RiskAssessment, RiskInput};
use crate::orders::{LookupFailed, OrderBook, OrderFacts};
use crate::providers::{
    CardDetails, ChargeOutcome, ChargeRequest, ProviderCharge, ProviderError, Providers,
    RefundRequest, WebhookError, WebhookKind,
};
use crate::repo::{self, Activity, KeyRow, PaymentRow, RefundRow};
use crate::view::{CorruptRow, PaymentView};

/// A key whose request has not finished after this long is presumed abandoned (the process
/// died mid-request): a repeat takes it over and completes the payment.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// How long to wait before asking a provider again about an unknown outcome, after `checks`
/// questions: 2 s doubling to 10 min, jittered so a provider's outage does not end in a
/// thundering herd.
fn check_backoff(checks: i32) -> chrono::Duration {
    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(2),
        max: Duration::from_secs(600),
    };
    let retry = u32::try_from(checks).unwrap_or(0).saturating_add(1);
    chrono::Duration::from_std(BACKOFF.delay(retry)).unwrap_or(chrono::Duration::seconds(2))
}

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

/// A refund row's status while the provider has not answered yet.
const REFUND_REQUESTED: &str = "requested";
/// A refund row's status after its answer was lost (a timeout): asked again.
const REFUND_UNKNOWN: &str = "unknown";

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
    NotInReview(String),
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

/// Why a charge naming `order` (paid by its checkout) is refused: somebody else's order, a
/// charge that does not match it (422 either way), or a second charge of it.
fn refusal(caller: Caller, command: &ChargeCommand, order: &OrderFacts) -> PaymentError {
    // Checked first, so that nobody learns another shopper's total by trying amounts.
    if !caller.admin && order.user_id != caller.user_id {
        return PaymentError::NotYourOrder(command.order_id);
    }
    if order.amount != command.amount.amount()
        || order.currency != command.amount.currency().as_str()
    {
        return PaymentError::ChargeMismatch {
            order: command.order_id,
            amount: command.amount.amount(),
            currency: command.amount.currency().to_string(),
            expected: format!("{} {}", order.amount, order.currency),
        };
    }
    PaymentError::OrderPaidByCheckout(command.order_id)
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

/// A charge to make, validated.
#[derive(Debug, Clone)]
pub struct ChargeCommand {
    pub order_id: Uuid,
    pub amount: Money,
    pub token: CardToken,
    /// First digits of the card, when the client's tokenization reported them.
    pub card_bin: Option<String>,
    pub card_country: Option<String>,
    /// Where the order ships (ISO 3166 alpha-2): the country rule's fallback when neither
    /// the client nor the provider names the card's.
    pub shipping_country: Option<String>,
    pub idempotency_key: String,
    pub source: PaymentSource,
}

/// A refund to make, validated.
#[derive(Debug, Clone)]
pub struct RefundCommand {
    pub payment_id: PaymentId,
    /// `None`: everything left to refund.
    pub amount: Option<Money>,
    pub reason: String,
    pub idempotency_key: String,
    /// Whether the order service asks (for its order): a payment for an order is refunded
    /// only that way, so the order's state and the stock agree with the money.
    pub via_order: bool,
}

/// A use case's answer, and whether it is the replay of an earlier one.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub payment: PaymentView,
    pub replayed: bool,
}

/// Counters recorded per decision and per result (pre-registered: the hot path is an add).
struct Counters {
    decisions: [(Decision, Counter); 3],
    rules: Vec<(&'static str, Counter)>,
    /// For `payment_amount_total{currency, kind}`, whose currencies are not known up front.
    metrics: Metrics,
}

impl Counters {
    fn new(metrics: &Metrics) -> Self {
        metrics.record(|| Self {
            decisions: [Decision::Allow, Decision::Review, Decision::Block].map(|d| {
                (
                    d,
                    counter!("fraud_decisions_total", "decision" => d.as_str()),
                )
            }),
            rules: fraud::RULES
                .iter()
                .map(|rule| (*rule, counter!("fraud_rules_fired_total", "rule" => *rule)))
                .collect(),
            metrics: metrics.clone(),
        })
    }

    /// Money that moved, once its transaction committed: `kind` is `captured` or `refunded`,
    /// `amount` in the currency's minor units.
    fn money(&self, kind: &'static str, currency: &str, amount: i64) {
        let Ok(amount) = u64::try_from(amount) else {
            return;
        };
        let currency = currency.to_owned();
        self.metrics.record(|| {
            counter!("payment_amount_total", "currency" => currency, "kind" => kind)
                .increment(amount)
        });
    }

    fn record(&self, risk: &RiskAssessment) {
        for (decision, counter) in &self.decisions {
            if *decision == risk.decision {
                counter.increment(1);
            }
        }
        for reason in &risk.reasons {
            if let Some((_, counter)) = self.rules.iter().find(|(code, _)| *code == reason.code()) {
                counter.increment(1);
            }
        }
    }
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
        match PaymentStatus::parse(&row.status) {
            Some(PaymentStatus::Authorized) => {
                self.emit(conn, &PaymentAuthorized { payment }).await
            }
            Some(PaymentStatus::Captured) => self.emit(conn, &PaymentCaptured { payment }).await,
            Some(PaymentStatus::Failed) => {
                let reason = row.failure_reason.clone().unwrap_or_default();
                self.emit(conn, &PaymentFailed { payment, reason }).await
            }
            Some(PaymentStatus::RequiresReview) => {
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

    // --- charge ---

    /// Charges `command.amount` to the card: fraud rules first, then the providers.
    /// A decline, a block or a review is an outcome (a payment with that status), not an
    /// error.
    pub async fn charge(
        &self,
        caller: Caller,
        command: ChargeCommand,
    ) -> Result<Outcome, PaymentError> {
        let scope = format!("charge:{}", caller.user_id);
        let request_hash = fingerprint(&[
            &command.order_id.to_string(),
            &command.amount.amount().to_string(),
            command.amount.currency().as_str(),
            command.token.as_str(),
            // The fraud rules read these: another BIN or country is another request.
            command.card_bin.as_deref().unwrap_or(""),
            command.card_country.as_deref().unwrap_or(""),
            command.shipping_country.as_deref().unwrap_or(""),
        ]);
        if let Some(key) = repo::find_key(&self.db, &scope, &command.idempotency_key).await? {
            return self.replay_charge(key, &request_hash, &command).await;
        }

        // A payment belongs to its order: the checkout charges an order for its total, and
        // nobody charges an order beside its checkout.
        if let Some(first) = repo::order_charge(&self.db, command.order_id).await? {
            // This very request, committed meanwhile by a concurrent call under the same key
            // (a retry of a call whose first attempt is still running): answer as a repeat.
            // The key and its payment commit together, so seeing one means seeing the other.
            if let Some(key) = repo::find_key(&self.db, &scope, &command.idempotency_key).await? {
                return self.replay_charge(key, &request_hash, &command).await;
            }
            let order = OrderFacts {
                user_id: first.user_id,
                amount: first.amount,
                currency: first.currency,
            };
            return Err(refusal(caller, &command, &order));
        }
        // A direct charge may not name an order: the order service is asked whether it is
        // one (its checkout may not have charged it yet). Not an order: the id is only the
        // charge's reference.
        if command.source == PaymentSource::Direct
            && let Some(order) = self.orders.get(command.order_id).await?
        {
            return Err(refusal(caller, &command, &order));
        }
        // Velocity counts per card: the provider's fingerprint of it when it has one (so a
        // sandbox test token is one card per shopper, and one card is one card under any
        // token), else the token itself.
        let details = self
            .providers
            .card_details(&command.token, &caller.user_id.to_string())
            .await;
        let token_hash = match &details.fingerprint {
            Some(card) => fingerprint(&["card", card]),
            None => fingerprint(&[command.token.as_str()]),
        };
        let at = now();
        let risk = self
            .assess(caller.user_id, &token_hash, &command, &details, at)
            .await?;
        self.counters.record(&risk);
        let status = match risk.decision {
            Decision::Allow => PaymentStatus::Pending,
            Decision::Review => PaymentStatus::RequiresReview,
            Decision::Block => PaymentStatus::Blocked,
        };
        let id = PaymentId::generate();
        // A held payment keeps its token until decided: approving it charges the card.
        let retry_token =
            (status == PaymentStatus::RequiresReview).then(|| command.token.as_str().to_owned());
        let row = PaymentRow {
            id: id.as_uuid(),
            order_id: command.order_id,
            user_id: caller.user_id,
            amount: command.amount.amount(),
            currency: command.amount.currency().to_string(),
            status: status.as_str().to_owned(),
            provider: String::new(),
            provider_payment_id: None,
            token_hash,
            card_brand: None,
            card_last4: None,
            risk_score: i16::from(risk.score),
            risk_decision: risk.decision.as_str().to_owned(),
            risk_reasons: serde_json::to_string(&risk.reasons)?,
            refunded_amount: 0,
            provider_refunded: 0,
            failure_reason: None,
            created_at: at,
            updated_at: at,
            next_check_at: None,
            checks: 0,
            retry_token,
            source: command.source.as_str().to_owned(),
        };

        let txn = match self
            .claim(&scope, &command.idempotency_key, &request_hash, id, at)
            .await?
        {
            Ok(txn) => txn,
            Err(key) => return self.replay_charge(key, &request_hash, &command).await,
        };
        repo::insert_payment(&txn, row.clone()).await?;
        if status != PaymentStatus::Pending {
            // Blocked or held for review: no provider sees it.
            if status == PaymentStatus::Blocked {
                let blocked = PaymentBlocked {
                    payment: Self::facts(&row),
                    score: risk.score,
                    reasons: risk.reasons.iter().map(|r| r.code().to_owned()).collect(),
                };
                self.emit(&txn, &blocked).await?;
            } else {
                self.announce(&txn, &row).await?;
            }
            let view = PaymentView::try_from(&row)?;
            repo::complete_key(
                &txn,
                &scope,
                &command.idempotency_key,
                &serde_json::to_string(&view)?,
            )
            .await?;
            txn.commit().await?;
            tracing::info!(payment_id = %id, decision = risk.decision.as_str(), "payment stopped by the fraud rules");
            return Ok(Outcome {
                payment: view,
                replayed: false,
            });
        }
        txn.commit().await?;
        let payment = self.drive_detached(row, scope, command).await?;
        Ok(Outcome {
            payment,
            replayed: false,
        })
    }

    /// Claims an idempotency key in a new write transaction. `Ok(txn)`: ours; go on inside
    /// `txn`, which commits the claim with the work. `Err(row)`: a concurrent request with the
    /// same key claimed it first (our transaction is rolled back): answer from its row.
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        id: PaymentId,
        at: DateTime<Utc>,
    ) -> Result<Result<DatabaseTransaction, KeyRow>, PaymentError> {
        let txn = platform_db::begin_write(&self.db).await?;
        match repo::claim_key(&txn, scope, key, request_hash, id, at).await {
            Ok(()) => Ok(Ok(txn)),
            Err(error) if platform_db::is_unique_violation(&error) => {
                drop(txn);
                let row = repo::find_key(&self.db, scope, key)
                    .await?
                    .ok_or(PaymentError::KeyInProgress)?;
                Ok(Err(row))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn assess(
        &self,
        user: Uuid,
        token_hash: &str,
        command: &ChargeCommand,
        details: &CardDetails,
        at: DateTime<Utc>,
    ) -> Result<RiskAssessment, PaymentError> {
        let window = chrono::Duration::from_std(self.fraud.velocity_window)
            .unwrap_or(chrono::Duration::hours(1));
        let Activity {
            user_payments,
            card_payments,
            user_declines,
            history_count,
            history_average,
        } = repo::activity(
            &self.db,
            user,
            token_hash,
            command.amount.currency().as_str(),
            at - window,
        )
        .await?;
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(fraud::assess(
            &self.fraud,
            &RiskInput {
                amount: command.amount,
                recent_user_payments: clamp(user_payments),
                recent_card_payments: clamp(card_payments),
                recent_user_declines: clamp(user_declines),
                user_history: (history_count > 0).then_some(History {
                    count: clamp(history_count),
                    average_amount: history_average,
                }),
                // What the provider knows of the card beats what the client claims.
                card_bin: details.bin.clone().or_else(|| command.card_bin.clone()),
                card_country: details
                    .country
                    .clone()
                    .or_else(|| command.card_country.clone())
                    .or_else(|| command.shipping_country.clone()),
            },
        ))
    }

    /// The provider request of `row`'s charge with `token`: our payment id is the provider's
    /// idempotency key, so any repeat (a takeover after a crash, a question about an unknown
    /// outcome) gets the first call's result instead of a second charge.
    fn provider_request(row: &PaymentRow, token: CardToken) -> Result<ChargeRequest, PaymentError> {
        let currency = platform_money::Currency::parse(&row.currency)
            .map_err(|_| CorruptRow(row.id, "currency"))?;
        Ok(ChargeRequest {
            payment_id: PaymentId::from_uuid(row.id),
            amount: Money::new(row.amount, currency).map_err(|_| CorruptRow(row.id, "amount"))?,
            token,
            customer: row.user_id.to_string(),
            idempotency_key: row.id.to_string(),
            description: format!("order {}", row.order_id),
        })
    }

    /// Calls the providers for a pending payment and records what they said.
    async fn drive(
        &self,
        mut row: PaymentRow,
        scope: &str,
        command: &ChargeCommand,
    ) -> Result<PaymentView, PaymentError> {
        let request = Self::provider_request(&row, command.token.clone())?;
        let (provider, result) = if row.provider.is_empty() {
            self.providers.charge(&request).await
        } else {
            // Taking over a charge a provider was already asked for: only that one may be
            // asked again.
            let provider = self.providers.get(&row.provider).map(|p| p.name());
            (
                provider,
                self.providers.resolve(&row.provider, &request).await,
            )
        };
        if let Some(provider) = provider {
            row.provider = provider.to_owned();
        }
        Self::record_answer(&mut row, result, &command.token);
        let status = PaymentStatus::parse(&row.status).unwrap_or(PaymentStatus::Failed);
        row.updated_at = now();
        let view = PaymentView::try_from(&row)?;
        let key = &command.idempotency_key;
        let written = match self.record_charge(&row, scope, key, &view).await {
            Ok(written) => written,
            Err(error) => {
                if matches!(&error, PaymentError::Database(db) if platform_db::is_unavailable(db)) {
                    // The provider answered and only the database failed: the answer is kept
                    // here and written as soon as the database is back, so the caller's repeat
                    // under the same key finds it (rather than waiting for the key to be
                    // abandoned).
                    self.keep_recording(row, scope.to_owned(), key.clone(), view);
                }
                return Err(error);
            }
        };
        if written && status == PaymentStatus::Captured {
            self.counters.money("captured", &row.currency, row.amount);
        }
        tracing::info!(payment_id = %row.id, provider = %row.provider, status = %row.status, "payment processed");
        Ok(view)
    }

    /// Writes a provider's answer to a charge: the payment, its event, and the key's stored
    /// response, in one transaction. Nothing (`false`) when the key has its response already
    /// (an earlier attempt committed and only its acknowledgement was lost).
    async fn record_charge(
        &self,
        row: &PaymentRow,
        scope: &str,
        key: &str,
        view: &PaymentView,
    ) -> Result<bool, PaymentError> {
        let txn = platform_db::begin_write(&self.db).await?;
        if !repo::complete_key(&txn, scope, key, &serde_json::to_string(view)?).await? {
            return Ok(false);
        }
        repo::save_payment(&txn, row).await?;
        self.announce(&txn, row).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// [`Self::record_charge`] again in the background, every second until it is written, for
    /// less than [`ABANDONED_AFTER`] (so it never races a takeover). Past that, or if the
    /// process dies, a repeat takes the key over and asks the provider again under the
    /// payment's own key, which answers what it did the first time.
    fn keep_recording(&self, row: PaymentRow, scope: String, key: String, view: PaymentView) {
        use tracing::Instrument;
        let payments = self.clone();
        tokio::spawn(
            async move {
                let attempts = ABANDONED_AFTER.as_secs().saturating_sub(10);
                for attempt in 1..=attempts {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match payments.record_charge(&row, &scope, &key, &view).await {
                        Ok(written) => {
                            // Counted once: not when an earlier attempt had landed after all.
                            if written && row.status == PaymentStatus::Captured.as_str() {
                                payments.counters.money("captured", &row.currency, row.amount);
                            }
                            tracing::info!(payment_id = %row.id, status = %row.status, attempt, "provider's answer recorded after the database came back");
                            return;
                        }
                        Err(error) => {
                            tracing::debug!(payment_id = %row.id, %error, attempt, "cannot record the provider's answer yet");
                        }
                    }
                }
                tracing::error!(payment_id = %row.id, "the provider's answer could not be recorded; the key will be taken over");
            }
            .in_current_span(),
        );
    }

    /// [`Self::drive`] in a task of its own: a caller that goes away (the order service dying
    /// mid-call drops the gRPC request) cannot stop a charge between the provider's answer and
    /// its record, which would leave the key "in progress" until it is taken over.
    async fn drive_detached(
        &self,
        row: PaymentRow,
        scope: String,
        command: ChargeCommand,
    ) -> Result<PaymentView, PaymentError> {
        let payments = self.clone();
        detached(async move { payments.drive(row, &scope, &command).await }).await
    }

    /// Writes a provider's answer (to a first charge or to a repeat) into `row`: the status it
    /// means, the provider's ids and card. An answer that never came leaves the payment
    /// `unknown`, with the token kept to ask again and the next question scheduled.
    fn record_answer(
        row: &mut PaymentRow,
        result: Result<ProviderCharge, ProviderError>,
        token: &CardToken,
    ) {
        let status = match result {
            Ok(charge) => {
                row.provider_payment_id = Some(charge.provider_payment_id);
                if let Some(card) = charge.card {
                    row.card_brand = Some(card.brand);
                    row.card_last4 = Some(card.last4);
                }
                match charge.outcome {
                    ChargeOutcome::Captured => PaymentStatus::Captured,
                    ChargeOutcome::Authorized => PaymentStatus::Authorized,
                    ChargeOutcome::RequiresReview => PaymentStatus::RequiresReview,
                    ChargeOutcome::Pending => PaymentStatus::Pending,
                }
            }
            Err(ProviderError::Unknown(reason)) => {
                tracing::warn!(payment_id = %row.id, provider = %row.provider, %reason, "charge outcome unknown; the provider will be asked again");
                PaymentStatus::Unknown
            }
            Err(ProviderError::Rejected(reason))
                if PaymentStatus::parse(&row.status) == Some(PaymentStatus::Unknown) =>
            {
                // A repeat the provider refused says nothing about the first request.
                tracing::error!(payment_id = %row.id, provider = %row.provider, %reason, "a question about an unknown charge was refused; it stays unknown");
                PaymentStatus::Unknown
            }
            Err(error) => {
                row.failure_reason = Some(match &error {
                    ProviderError::Declined { code, message } => format!("{code}: {message}"),
                    ProviderError::NotSent(_) | ProviderError::Unknown(_) => {
                        "payment providers unavailable; nothing was charged".to_owned()
                    }
                    ProviderError::Rejected(_) => "rejected by the payment provider".to_owned(),
                });
                tracing::info!(payment_id = %row.id, %error, "charge did not succeed");
                PaymentStatus::Failed
            }
        };
        if status == PaymentStatus::Unknown {
            row.retry_token = Some(token.as_str().to_owned());
            row.next_check_at = Some(now() + check_backoff(row.checks));
            row.checks = row.checks.saturating_add(1);
        } else {
            row.retry_token = None;
            row.next_check_at = None;
        }
        row.status = status.as_str().to_owned();
    }

    /// Asks the provider again about a payment whose outcome is unknown, and records the
    /// answer if the payment is still unknown when it arrives (a webhook may have settled it
    /// meanwhile). Returns the payment as it stands.
    pub async fn resolve(&self, id: PaymentId) -> Result<PaymentRow, PaymentError> {
        let row = repo::find_payment(&self.db, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        if row.status != PaymentStatus::Unknown.as_str() {
            return Ok(row);
        }
        let Some(token) = row
            .retry_token
            .as_deref()
            .and_then(|t| CardToken::parse(t).ok())
        else {
            return Err(CorruptRow(row.id, "retry_token").into());
        };
        let request = Self::provider_request(&row, token.clone())?;
        let result = self.providers.resolve(&row.provider, &request).await;
        let txn = platform_db::begin_write(&self.db).await?;
        let mut current = repo::lock_payment(&txn, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        if current.status != PaymentStatus::Unknown.as_str() {
            return Ok(current);
        }
        Self::record_answer(&mut current, result, &token);
        current.updated_at = now();
        repo::save_payment(&txn, &current).await?;
        self.announce(&txn, &current).await?;
        txn.commit().await?;
        if current.status == PaymentStatus::Captured.as_str() {
            self.counters
                .money("captured", &current.currency, current.amount);
        }
        if current.status != PaymentStatus::Unknown.as_str() {
            tracing::info!(payment_id = %id, status = %current.status, checks = current.checks, "unknown charge outcome resolved");
        }
        Ok(current)
    }

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

    async fn replay_charge(
        &self,
        key: KeyRow,
        request_hash: &str,
        command: &ChargeCommand,
    ) -> Result<Outcome, PaymentError> {
        if key.request_hash != request_hash {
            return Err(PaymentError::KeyReused);
        }
        if key.response.is_some() {
            // The payment as it stands now (a webhook may have moved it on since); an unknown
            // outcome is asked about again first.
            let id = PaymentId::from_uuid(key.payment_id);
            let row = match repo::find_payment(&self.db, id).await? {
                Some(row) if row.status == PaymentStatus::Unknown.as_str() => {
                    self.resolve(id).await?
                }
                Some(row) => row,
                None => return Err(PaymentError::NotFound),
            };
            return Ok(Outcome {
                payment: PaymentView::try_from(&row)?,
                replayed: true,
            });
        }
        let age = (now() - key.created_at).to_std().unwrap_or_default();
        if age < ABANDONED_AFTER {
            return Err(PaymentError::KeyInProgress);
        }
        // The first request died mid-way: finish it (the providers dedupe the call).
        let row = repo::find_payment(&self.db, PaymentId::from_uuid(key.payment_id))
            .await?
            .ok_or(PaymentError::KeyInProgress)?;
        tracing::warn!(payment_id = %row.id, "taking over an abandoned charge");
        let payment = self.drive(row, &key.scope, command).await?;
        Ok(Outcome {
            payment,
            replayed: true,
        })
    }

    // --- reviews ---

    /// Payments waiting for a person, oldest first.
    pub async fn reviews(&self, page: PageRequest) -> Result<Page<PaymentView>, PaymentError> {
        let (rows, total) = repo::reviews(&self.db, page).await?;
        let items = rows
            .iter()
            .map(PaymentView::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.into_page(items, total))
    }

    /// Approves a payment the fraud rules held: it goes to the providers now (under its own
    /// id as the key, so a repeat after a crash charges once) and whatever they answer is its
    /// outcome. A payment the provider holds is the provider's to decide.
    pub async fn approve(&self, id: PaymentId) -> Result<PaymentView, PaymentError> {
        let txn = platform_db::begin_write(&self.db).await?;
        let mut row = repo::lock_payment(&txn, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        Self::held_by_us(&row)?;
        let token = row
            .retry_token
            .as_deref()
            .and_then(|t| CardToken::parse(t).ok())
            .ok_or(CorruptRow(row.id, "retry_token"))?;
        // Claimed before any provider call: a second approval, a decline or the expiry
        // now finds it pending; if this process dies here, the reconciler finishes it.
        row.status = PaymentStatus::Pending.as_str().to_owned();
        row.updated_at = now();
        repo::save_payment(&txn, &row).await?;
        let decided = PaymentReviewDecided {
            payment: Self::facts(&row),
            decision: "approved".to_owned(),
            reason: "approved by an administrator".to_owned(),
        };
        self.emit(&txn, &decided).await?;
        txn.commit().await?;
        tracing::info!(payment_id = %id, "review approved; charging");
        let row = self.charge_held(row, token).await?;
        Ok(PaymentView::try_from(&row)?)
    }

    /// Sends an approved payment to the providers and records their answer.
    async fn charge_held(
        &self,
        mut row: PaymentRow,
        token: CardToken,
    ) -> Result<PaymentRow, PaymentError> {
        let request = Self::provider_request(&row, token.clone())?;
        let (provider, result) = self.providers.charge(&request).await;
        let txn = platform_db::begin_write(&self.db).await?;
        let current = repo::lock_payment(&txn, PaymentId::from_uuid(row.id))
            .await?
            .ok_or(PaymentError::NotFound)?;
        if current.status != PaymentStatus::Pending.as_str() {
            // Settled meanwhile (a webhook): that is the answer.
            return Ok(current);
        }
        if let Some(provider) = provider {
            row.provider = provider.to_owned();
        }
        Self::record_answer(&mut row, result, &token);
        row.updated_at = now();
        repo::save_payment(&txn, &row).await?;
        self.announce(&txn, &row).await?;
        txn.commit().await?;
        if row.status == PaymentStatus::Captured.as_str() {
            self.counters.money("captured", &row.currency, row.amount);
        }
        Ok(row)
    }

    /// Declines a held payment (`decision`: `declined` by a person or the checkout,
    /// `expired`): it fails without any provider having seen it, so nothing was charged.
    pub async fn decline(
        &self,
        id: PaymentId,
        decision: &str,
        reason: &str,
    ) -> Result<PaymentView, PaymentError> {
        let txn = platform_db::begin_write(&self.db).await?;
        let mut row = repo::lock_payment(&txn, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        Self::held_by_us(&row)?;
        row.status = PaymentStatus::Failed.as_str().to_owned();
        row.failure_reason = Some(format!("not approved in review: {reason}"));
        row.retry_token = None;
        row.updated_at = now();
        repo::save_payment(&txn, &row).await?;
        self.announce(&txn, &row).await?;
        let decided = PaymentReviewDecided {
            payment: Self::facts(&row),
            decision: decision.to_owned(),
            reason: reason.to_owned(),
        };
        self.emit(&txn, &decided).await?;
        txn.commit().await?;
        tracing::info!(payment_id = %id, decision, "review decided");
        Ok(PaymentView::try_from(&row)?)
    }

    /// Ends a payment the checkout gave up on: a held review is declined; a failed or blocked
    /// payment is returned as it is. Anything else still open at a provider (pending,
    /// unknown, held by the provider) cannot be ended here: the caller asks again later.
    pub async fn void(&self, id: PaymentId, reason: &str) -> Result<PaymentView, PaymentError> {
        let row = repo::find_payment(&self.db, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        match PaymentStatus::parse(&row.status) {
            Some(PaymentStatus::RequiresReview) if row.provider.is_empty() => {
                self.decline(id, "declined", reason).await
            }
            Some(PaymentStatus::Failed | PaymentStatus::Blocked) => {
                Ok(PaymentView::try_from(&row)?)
            }
            Some(
                PaymentStatus::RequiresReview | PaymentStatus::Pending | PaymentStatus::Unknown,
            ) => Err(PaymentError::HeldByProvider),
            _ => Err(PaymentError::NotRefundable(
                PaymentStatus::parse(&row.status).map_or("corrupt", |s| s.as_str()),
            )),
        }
    }

    /// Whether `row` is a review this service may decide.
    fn held_by_us(row: &PaymentRow) -> Result<(), PaymentError> {
        if row.status != PaymentStatus::RequiresReview.as_str() {
            return Err(PaymentError::NotInReview(row.status.clone()));
        }
        if !row.provider.is_empty() {
            return Err(PaymentError::HeldByProvider);
        }
        Ok(())
    }

    /// Declines the reviews nobody decided within the review TTL.
    async fn expire_reviews(&self) -> Result<(), PaymentError> {
        let before = now() - chrono::Duration::from_std(self.review_ttl).unwrap_or_default();
        for row in repo::expired_reviews(&self.db, before, 32).await? {
            let id = PaymentId::from_uuid(row.id);
            match self.decline(id, "expired", "not reviewed in time").await {
                Ok(_) | Err(PaymentError::NotInReview(_)) => {}
                Err(error) => tracing::warn!(payment_id = %id, %error, "cannot expire a review"),
            }
        }
        Ok(())
    }

    // --- refunds ---

    /// Refunds part or all of a captured payment.
    pub async fn refund(
        &self,
        caller: Caller,
        command: RefundCommand,
    ) -> Result<Outcome, PaymentError> {
        let id = command.payment_id;
        let row = repo::find_payment(&self.db, id)
            .await?
            .filter(|row| caller.may_see(row))
            .ok_or(PaymentError::NotFound)?;
        let scope = format!("refund:{id}");
        let requested = command.amount.map(|m| m.amount());
        let request_hash = fingerprint(&[
            &requested.map_or_else(|| "all".to_owned(), |a| a.to_string()),
            &command
                .amount
                .map(|m| m.currency().to_string())
                .unwrap_or_default(),
            &command.reason,
        ]);
        if row.source == PaymentSource::Order.as_str() && !command.via_order {
            return Err(PaymentError::RefundThroughOrder {
                payment: row.id,
                order: row.order_id,
            });
        }
        if let Some(key) = repo::find_key(&self.db, &scope, &command.idempotency_key).await? {
            return self.replay_refund(key, &request_hash).await;
        }
        let status = PaymentStatus::parse(&row.status).unwrap_or(PaymentStatus::Failed);
        if !matches!(
            status,
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded
        ) {
            return Err(PaymentError::NotRefundable(status.as_str()));
        }
        if let Some(money) = command.amount
            && money.currency().as_str() != row.currency
        {
            return Err(PaymentError::WrongCurrency(row.currency.clone()));
        }
        let left = row.amount - row.refunded_amount;
        let amount = requested.unwrap_or(left);
        if amount <= 0 || amount > left {
            return Err(PaymentError::ExceedsRefundable(left));
        }
        if self.providers.get(&row.provider).is_none() {
            return Err(PaymentError::UnknownProvider(row.provider.clone()));
        }

        let at = now();
        let txn = match self
            .claim(&scope, &command.idempotency_key, &request_hash, id, at)
            .await?
        {
            Ok(txn) => txn,
            Err(key) => return self.replay_refund(key, &request_hash).await,
        };
        if !repo::reserve_refund(&txn, id, amount, at).await? {
            // Another refund took it meanwhile; the key is released with the rollback.
            drop(txn);
            let current = repo::find_payment(&self.db, id).await?;
            let left = current.map_or(0, |r| r.amount - r.refunded_amount);
            return Err(PaymentError::ExceedsRefundable(left));
        }
        // Written with the reservation: whoever finds the key unfinished (a repeat after a
        // crash, the reconciler) knows what was asked and finishes it.
        let refund = RefundRow {
            id: Uuid::now_v7(),
            payment_id: row.id,
            amount,
            reason: command.reason.clone(),
            status: REFUND_REQUESTED.to_owned(),
            provider_refund_id: None,
            created_at: at,
            idempotency_key: Some(format!("{id}:{}", command.idempotency_key)),
            updated_at: Some(at),
        };
        repo::insert_refund(&txn, refund.clone()).await?;
        txn.commit().await?;
        let payments = self.clone();
        let key = command.idempotency_key.clone();
        let finish = async move { payments.finish_refund(refund, &scope, &key).await };
        let payment = detached(finish).await?;
        Ok(Outcome {
            payment,
            replayed: false,
        })
    }

    /// Asks the payment's provider for a reserved refund and records its answer. Repeating it
    /// (after a crash, or an answer that never came) is safe: the provider gets the same
    /// idempotency key. A definite "no" gives the amount back and frees the client's key; an
    /// unknown outcome keeps both, to be asked again.
    async fn finish_refund(
        &self,
        refund: RefundRow,
        scope: &str,
        key: &str,
    ) -> Result<PaymentView, PaymentError> {
        let id = PaymentId::from_uuid(refund.payment_id);
        let row = repo::find_payment(&self.db, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        let provider = self
            .providers
            .get(&row.provider)
            .cloned()
            .ok_or_else(|| PaymentError::UnknownProvider(row.provider.clone()))?;
        let currency = platform_money::Currency::parse(&row.currency)
            .map_err(|_| CorruptRow(row.id, "currency"))?;
        let money =
            Money::new(refund.amount, currency).map_err(|_| CorruptRow(row.id, "amount"))?;
        let provider_key = refund
            .idempotency_key
            .clone()
            .unwrap_or_else(|| format!("{id}:{key}"));
        let refunded = self
            .providers
            .refund(
                &provider,
                &RefundRequest {
                    provider_payment_id: row.provider_payment_id.clone().unwrap_or_default(),
                    amount: money,
                    idempotency_key: provider_key,
                    reason: refund.reason.clone(),
                },
            )
            .await;
        let answer = match refunded {
            Ok(answer) => answer,
            Err(ProviderError::Unknown(reason)) => {
                // It may have gone through: keep the reservation and the key; the next
                // repeat or the reconciler asks again under the same provider key.
                tracing::warn!(payment_id = %id, %reason, "refund outcome unknown; will ask again");
                repo::mark_refund(&self.db, refund.id, REFUND_UNKNOWN, None, now()).await?;
                return Err(PaymentError::Provider(ProviderError::Unknown(reason)));
            }
            Err(error) => {
                // Nothing was refunded: give the amount back and let the key be used again.
                let txn = platform_db::begin_write(&self.db).await?;
                repo::unreserve_refund(&txn, id, refund.amount).await?;
                repo::delete_refund(&txn, refund.id).await?;
                repo::release_key(&txn, scope, key).await?;
                txn.commit().await?;
                return Err(PaymentError::Provider(error));
            }
        };

        let txn = platform_db::begin_write(&self.db).await?;
        // Locked: concurrent refunds and webhooks change this row too.
        let mut row = repo::lock_payment(&txn, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        row.status = if row.refunded_amount >= row.amount {
            PaymentStatus::Refunded
        } else {
            PaymentStatus::PartiallyRefunded
        }
        .as_str()
        .to_owned();
        row.updated_at = now();
        repo::save_payment(&txn, &row).await?;
        let status = match answer.outcome {
            crate::providers::RefundOutcome::Succeeded => "succeeded",
            crate::providers::RefundOutcome::Pending => "pending",
        };
        repo::mark_refund(
            &txn,
            refund.id,
            status,
            Some(answer.provider_refund_id),
            now(),
        )
        .await?;
        self.emit(
            &txn,
            &PaymentRefunded {
                payment: Self::facts(&row),
                refund_amount: refund.amount,
                refunded_total: row.refunded_amount,
                reason: refund.reason.clone(),
            },
        )
        .await?;
        let view = PaymentView::try_from(&row)?;
        repo::complete_key(&txn, scope, key, &serde_json::to_string(&view)?).await?;
        txn.commit().await?;
        self.counters
            .money("refunded", &row.currency, refund.amount);
        tracing::info!(payment_id = %id, amount = refund.amount, "payment refunded");
        Ok(view)
    }

    /// A repeat of a refund request: the stored answer, or, for a refund whose answer never
    /// came (or whose process died mid-way), the provider asked again under the same key.
    async fn replay_refund(
        &self,
        key: KeyRow,
        request_hash: &str,
    ) -> Result<Outcome, PaymentError> {
        if key.request_hash != request_hash {
            return Err(PaymentError::KeyReused);
        }
        if let Some(response) = key.response {
            return Ok(Outcome {
                payment: serde_json::from_str(&response)?,
                replayed: true,
            });
        }
        let payment_id = PaymentId::from_uuid(key.payment_id);
        let refund =
            repo::find_refund_by_key(&self.db, payment_id, &format!("{payment_id}:{}", key.key))
                .await?;
        let abandoned = (now() - key.created_at).to_std().unwrap_or_default() >= ABANDONED_AFTER;
        match refund {
            Some(refund) if refund.status == REFUND_UNKNOWN || abandoned => {
                tracing::warn!(payment_id = %payment_id, "taking over an unfinished refund");
                let payment = self.finish_refund(refund, &key.scope, &key.key).await?;
                Ok(Outcome {
                    payment,
                    replayed: true,
                })
            }
            _ => Err(PaymentError::KeyInProgress),
        }
    }

    /// Charges approved payments whose process died before the providers answered (status
    /// `pending`, no provider yet, token kept): the providers get the payment id as the key,
    /// so one that had already charged answers with that charge.
    async fn finish_approvals(&self) -> Result<(), PaymentError> {
        let before = now() - chrono::Duration::from_std(ABANDONED_AFTER).unwrap_or_default();
        for row in repo::stalled_approvals(&self.db, before, 32).await? {
            let Some(token) = row
                .retry_token
                .as_deref()
                .and_then(|t| CardToken::parse(t).ok())
            else {
                continue;
            };
            tracing::warn!(payment_id = %row.id, "finishing an approval left unfinished");
            if let Err(error) = self.charge_held(row.clone(), token).await {
                tracing::warn!(payment_id = %row.id, %error, "cannot finish an approval yet");
            }
        }
        Ok(())
    }

    /// Finishes refunds left unfinished (an answer that never came, a process that died
    /// between reserving and asking), the backstop when their caller does not repeat them.
    async fn finish_stale_refunds(&self) -> Result<(), PaymentError> {
        let before = now() - chrono::Duration::from_std(ABANDONED_AFTER).unwrap_or_default();
        for refund in repo::stale_refunds(&self.db, before, 32).await? {
            let Some(provider_key) = refund.idempotency_key.clone() else {
                continue;
            };
            let Some((_, key)) = provider_key.split_once(':') else {
                continue;
            };
            let scope = format!("refund:{}", refund.payment_id);
            if let Err(error) = self.finish_refund(refund.clone(), &scope, key).await {
                tracing::warn!(payment_id = %refund.payment_id, %error, "cannot finish a refund yet");
            }
        }
        Ok(())
    }

    // --- webhooks ---

    /// Verifies and applies a provider's webhook; returns how many events were new.
    pub async fn webhook(
        &self,
        provider_name: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<usize, PaymentError> {
        let provider = self
            .providers
            .get(provider_name)
            .cloned()
            .ok_or_else(|| PaymentError::UnknownProvider(provider_name.to_owned()))?;
        let events = provider.verify_webhook(headers, body, SystemTime::now())?;
        let mut applied = 0;
        for event in events {
            let at = now();
            let txn = platform_db::begin_write(&self.db).await?;
            if let Err(error) =
                repo::record_webhook_event(&txn, provider.name(), &event.id, at).await
            {
                if platform_db::is_unique_violation(&error) {
                    tracing::debug!(provider = provider.name(), event = %event.id, "duplicate webhook event ignored");
                    continue;
                }
                return Err(error.into());
            }
            let mut found =
                repo::find_by_provider_id(&txn, provider.name(), &event.provider_payment_id)
                    .await?;
            if found.is_none()
                && let Some(reference) = event.reference
            {
                // Our payment id, echoed by the provider: matches a charge whose answer we
                // never got (so its provider id was never recorded).
                found = repo::lock_payment(&txn, reference).await?;
                if let Some(row) = &found {
                    if row.provider != provider.name() {
                        // Money taken by a provider this payment never went to. Cannot
                        // happen unless a charge failed over after reaching a provider:
                        // acknowledged (retries would not help) and shouted about.
                        tracing::error!(payment_id = %row.id, provider = provider.name(), charged_with = %row.provider, event = %event.id, "webhook from a provider this payment was not sent to; needs reconciliation");
                        txn.commit().await?;
                        continue;
                    }
                    if row.provider_payment_id.is_none() {
                        let mut row = row.clone();
                        row.provider_payment_id = Some(event.provider_payment_id.clone());
                        found = Some(row);
                    }
                }
            }
            let Some(mut row) = found else {
                // Not recorded: the event may describe a charge whose provider id is not saved
                // yet (the webhook overtook the provider's answer). Refusing it makes the
                // provider deliver it again later instead of it being lost.
                tracing::warn!(provider = provider.name(), event = %event.id, "webhook for a payment not known (yet); asking for a retry");
                return Err(PaymentError::WebhookTooEarly);
            };
            let status = PaymentStatus::parse(&row.status).unwrap_or(PaymentStatus::Failed);
            // What the event moved, counted once its transaction has committed.
            let mut moved_money = None;
            let changed = match &event.kind {
                WebhookKind::Authorized => {
                    self.move_to(&mut row, status, PaymentStatus::Authorized)
                }
                WebhookKind::Captured => {
                    let moved = self.move_to(&mut row, status, PaymentStatus::Captured);
                    if moved {
                        moved_money = Some(("captured", row.amount));
                    }
                    moved
                }
                WebhookKind::Failed { reason } => {
                    let moved = self.move_to(&mut row, status, PaymentStatus::Failed);
                    if moved {
                        row.failure_reason = Some(reason.clone());
                    }
                    moved
                }
                WebhookKind::Refunded { amount } if amount.currency().as_str() != row.currency => {
                    tracing::warn!(provider = provider.name(), event = %event.id, currency = %amount.currency(), "refund webhook in another currency than the payment's; ignored");
                    false
                }
                WebhookKind::Refunded { amount } => {
                    // One refund, ours or one made at the provider: the provider's sum can
                    // only raise ours (ours already counts the refunds we asked for).
                    row.provider_refunded = row
                        .provider_refunded
                        .saturating_add(amount.amount())
                        .min(row.amount);
                    let total = row.refunded_amount.max(row.provider_refunded);
                    if status.is_captured() && total > row.refunded_amount {
                        let refund_amount = total - row.refunded_amount;
                        moved_money = Some(("refunded", refund_amount));
                        row.refunded_amount = total;
                        row.status = if total >= row.amount {
                            PaymentStatus::Refunded
                        } else {
                            PaymentStatus::PartiallyRefunded
                        }
                        .as_str()
                        .to_owned();
                        self.emit(
                            &txn,
                            &PaymentRefunded {
                                payment: Self::facts(&row),
                                refund_amount,
                                refunded_total: total,
                                reason: "refunded at the provider".to_owned(),
                            },
                        )
                        .await?;
                        true
                    } else {
                        // Nothing new to announce, but the provider's sum is kept.
                        repo::save_payment(&txn, &row).await?;
                        false
                    }
                }
            };
            if changed {
                row.updated_at = now();
                repo::save_payment(&txn, &row).await?;
                if !matches!(event.kind, WebhookKind::Refunded { .. }) {
                    self.announce(&txn, &row).await?;
                }
            }
            txn.commit().await?;
            if let Some((kind, amount)) = moved_money {
                self.counters.money(kind, &row.currency, amount);
            }
            applied += 1;
        }
        Ok(applied)
    }

    fn move_to(&self, row: &mut PaymentRow, from: PaymentStatus, to: PaymentStatus) -> bool {
        if from.can_become(to) {
            row.status = to.as_str().to_owned();
            // Settled: nothing left to ask the provider.
            row.retry_token = None;
            row.next_check_at = None;
            true
        } else {
            tracing::info!(payment_id = %row.id, from = from.as_str(), to = to.as_str(), "webhook transition not allowed; ignored");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hashes_separate_their_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["x"]), fingerprint(&["x"]));
        assert_eq!(fingerprint(&["x"]).len(), 64);
    }
}
