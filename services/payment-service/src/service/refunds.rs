//! Refunds: checked, reserved against what is left to refund, then asked of the payment's
//! provider, under the client's idempotency key; what a repeat gets; and the reconciler's
//! part, finishing refunds whose answer never came.

use chrono::{DateTime, Utc};
use platform_events::catalogue::PaymentRefunded;
use platform_http::fingerprint;
use platform_money::Money;
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::keys::{self, ABANDONED_AFTER};
use super::{Caller, Outcome, PaymentError, Payments, detached};
use crate::domain::{PaymentId, PaymentSource, PaymentStatus, RefundStatus, now};
use crate::providers::{ProviderError, RefundRequest};
use crate::repo::{self, KeyRow, PaymentRow, RefundRow};
use crate::view::{CorruptRow, PaymentView};

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

/// What a repeat under the same key must ask for: the same amount (or everything left), in
/// the same currency, for the same reason.
fn request_hash(command: &RefundCommand) -> String {
    let requested = command.amount.map(|m| m.amount());
    fingerprint(&[
        &requested.map_or_else(|| "all".to_owned(), |a| a.to_string()),
        &command
            .amount
            .map(|m| m.currency().to_string())
            .unwrap_or_default(),
        &command.reason,
    ])
}

/// The idempotency key a refund is asked of the provider under: the payment's id and the
/// client's key, so that a repeat is the same refund at the provider too (and the reconciler
/// finds the client's key in it).
fn provider_key(payment: PaymentId, key: &str) -> String {
    format!("{payment}:{key}")
}

impl Payments {
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
        let scope = keys::refund_scope(id);
        let request_hash = request_hash(&command);
        if row.source == PaymentSource::Order.as_str() && !command.via_order {
            return Err(PaymentError::RefundThroughOrder {
                payment: row.id,
                order: row.order_id,
            });
        }
        if let Some(key) = keys::find(&self.db, &scope, &command.idempotency_key).await? {
            return self.replay_refund(key, &request_hash).await;
        }
        let amount = self.refundable(&row, &command)?;

        let at = now();
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
            Err(key) => return self.replay_refund(key, &request_hash).await,
        };
        let refund = self.reserve(txn, &row, &command, amount, at).await?;
        let payments = self.clone();
        let key = command.idempotency_key.clone();
        let finish = async move { payments.finish_refund(refund, &scope, &key).await };
        let payment = detached(finish).await?;
        Ok(Outcome {
            payment,
            replayed: false,
        })
    }

    /// The amount `command` refunds (what it asks for, or everything left), if the payment
    /// can be refunded that much: captured, in the payment's currency, within what is left,
    /// through a provider still configured.
    fn refundable(&self, row: &PaymentRow, command: &RefundCommand) -> Result<i64, PaymentError> {
        let requested = command.amount.map(|m| m.amount());
        let status = row.status;
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
        Ok(amount)
    }

    /// Takes `amount` off what is left to refund and writes the refund down as requested, in
    /// `txn` (which holds the key's claim), and commits them together.
    async fn reserve(
        &self,
        txn: DatabaseTransaction,
        row: &PaymentRow,
        command: &RefundCommand,
        amount: i64,
        at: DateTime<Utc>,
    ) -> Result<RefundRow, PaymentError> {
        let id = command.payment_id;
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
            status: RefundStatus::Requested,
            provider_refund_id: None,
            created_at: at,
            idempotency_key: Some(provider_key(id, &command.idempotency_key)),
            updated_at: Some(at),
        };
        repo::insert_refund(&txn, refund.clone()).await?;
        txn.commit().await?;
        Ok(refund)
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
            .unwrap_or_else(|| provider_key(id, key));
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
                repo::mark_refund(&self.db, refund.id, RefundStatus::Unknown, None, now()).await?;
                return Err(PaymentError::Provider(ProviderError::Unknown(reason)));
            }
            Err(error) => {
                // Nothing was refunded: give the amount back and let the key be used again.
                let txn = platform_db::begin_write(&self.db).await?;
                repo::unreserve_refund(&txn, id, refund.amount).await?;
                repo::delete_refund(&txn, refund.id).await?;
                keys::release(&txn, scope, key).await?;
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
        };
        row.updated_at = now();
        repo::save_payment(&txn, &row).await?;
        let status = match answer.outcome {
            crate::providers::RefundOutcome::Succeeded => RefundStatus::Succeeded,
            crate::providers::RefundOutcome::Pending => RefundStatus::Pending,
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
        keys::complete(&txn, scope, key, &view).await?;
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
        keys::check_request(&key, request_hash)?;
        if let Some(response) = &key.response {
            return Ok(Outcome {
                payment: serde_json::from_str(response)?,
                replayed: true,
            });
        }
        let payment_id = PaymentId::from_uuid(key.payment_id);
        let refund =
            repo::find_refund_by_key(&self.db, payment_id, &provider_key(payment_id, &key.key))
                .await?;
        let abandoned = keys::abandoned(&key);
        match refund {
            Some(refund) if refund.status == RefundStatus::Unknown || abandoned => {
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

    /// Finishes refunds left unfinished (an answer that never came, a process that died
    /// between reserving and asking), the backstop when their caller does not repeat them.
    pub(super) async fn finish_stale_refunds(&self) -> Result<(), PaymentError> {
        let before = now() - chrono::Duration::from_std(ABANDONED_AFTER).unwrap_or_default();
        for refund in repo::stale_refunds(&self.db, before, 32).await? {
            let Some(provider_key) = refund.idempotency_key.clone() else {
                continue;
            };
            let Some((_, key)) = provider_key.split_once(':') else {
                continue;
            };
            let scope = keys::refund_scope(refund.payment_id);
            if let Err(error) = self.finish_refund(refund.clone(), &scope, key).await {
                tracing::warn!(payment_id = %refund.payment_id, %error, "cannot finish a refund yet");
            }
        }
        Ok(())
    }
}
