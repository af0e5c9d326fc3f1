//! Charges: the fraud rules, then the providers (with failover), under the shopper's
//! idempotency key; and what a repeat of a charge gets, including taking over one whose
//! process died mid-way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use platform_events::catalogue::PaymentBlocked;
use platform_http::fingerprint;
use platform_money::Money;
use uuid::Uuid;

use super::keys::{self, ABANDONED_AFTER};
use super::{Caller, Outcome, PaymentError, Payments, detached};
use crate::domain::{CardToken, PaymentId, PaymentSource, PaymentStatus, now};
use crate::fraud::{self, Decision, History, RiskAssessment, RiskInput};
use crate::orders::OrderFacts;
use crate::providers::CardDetails;
use crate::repo::{self, Activity, KeyRow, PaymentRow};
use crate::view::PaymentView;

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

impl Payments {
    /// Charges `command.amount` to the card: fraud rules first, then the providers.
    /// A decline, a block or a review is an outcome (a payment with that status), not an
    /// error.
    pub async fn charge(
        &self,
        caller: Caller,
        command: ChargeCommand,
    ) -> Result<Outcome, PaymentError> {
        let scope = keys::charge_scope(caller.user_id);
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
        if let Some(key) = keys::find(&self.db, &scope, &command.idempotency_key).await? {
            return self.replay_charge(key, &request_hash, &command).await;
        }

        // A payment belongs to its order: the checkout charges an order for its total, and
        // nobody charges an order beside its checkout.
        if let Some(first) = repo::order_charge(&self.db, command.order_id).await? {
            // This very request, committed meanwhile by a concurrent call under the same key
            // (a retry of a call whose first attempt is still running): answer as a repeat.
            // The key and its payment commit together, so seeing one means seeing the other.
            if let Some(key) = keys::find(&self.db, &scope, &command.idempotency_key).await? {
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
            status,
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

        let txn = match keys::claim(
            &self.db,
            &scope,
            &command.idempotency_key,
            &request_hash,
            id,
            at,
        )
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
            keys::complete(&txn, &scope, &command.idempotency_key, &view).await?;
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
        let status = row.status;
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
        if !keys::complete(&txn, scope, key, view).await? {
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
                            if written && row.status == PaymentStatus::Captured {
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

    async fn replay_charge(
        &self,
        key: KeyRow,
        request_hash: &str,
        command: &ChargeCommand,
    ) -> Result<Outcome, PaymentError> {
        keys::check_request(&key, request_hash)?;
        if key.response.is_some() {
            // The payment as it stands now (a webhook may have moved it on since); an unknown
            // outcome is asked about again first.
            let id = PaymentId::from_uuid(key.payment_id);
            let row = match repo::find_payment(&self.db, id).await? {
                Some(row) if row.status == PaymentStatus::Unknown => self.resolve(id).await?,
                Some(row) => row,
                None => return Err(PaymentError::NotFound),
            };
            return Ok(Outcome {
                payment: PaymentView::try_from(&row)?,
                replayed: true,
            });
        }
        if !keys::abandoned(&key) {
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
}
