//! A provider's answer to a charge, wherever the question came from (a first charge, a
//! takeover, an approved review, the reconciler): the request it is asked under, what status
//! its answer means, and asking again when the answer never came.

use std::time::Duration;

use platform_money::Money;
use platform_resilience::Backoff;

use super::{PaymentError, Payments};
use crate::domain::{CardToken, PaymentId, PaymentStatus, now};
use crate::providers::{ChargeOutcome, ChargeRequest, ProviderCharge, ProviderError};
use crate::repo::{self, PaymentRow};
use crate::view::CorruptRow;

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

impl Payments {
    /// The provider request of `row`'s charge with `token`: our payment id is the provider's
    /// idempotency key, so any repeat (a takeover after a crash, a question about an unknown
    /// outcome) gets the first call's result instead of a second charge.
    pub(super) fn provider_request(
        row: &PaymentRow,
        token: CardToken,
    ) -> Result<ChargeRequest, PaymentError> {
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

    /// Writes a provider's answer (to a first charge or to a repeat) into `row`: the status it
    /// means, the provider's ids and card. An answer that never came leaves the payment
    /// `unknown`, with the token kept to ask again and the next question scheduled.
    pub(super) fn record_answer(
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
            Err(ProviderError::Rejected(reason)) if row.status == PaymentStatus::Unknown => {
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
        row.status = status;
    }

    /// Asks the provider again about a payment whose outcome is unknown, and records the
    /// answer if the payment is still unknown when it arrives (a webhook may have settled it
    /// meanwhile). Returns the payment as it stands.
    pub async fn resolve(&self, id: PaymentId) -> Result<PaymentRow, PaymentError> {
        let row = repo::find_payment(&self.db, id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        if row.status != PaymentStatus::Unknown {
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
        if current.status != PaymentStatus::Unknown {
            return Ok(current);
        }
        Self::record_answer(&mut current, result, &token);
        current.updated_at = now();
        repo::save_payment(&txn, &current).await?;
        self.announce(&txn, &current).await?;
        txn.commit().await?;
        if current.status == PaymentStatus::Captured {
            self.counters
                .money("captured", &current.currency, current.amount);
        }
        if current.status != PaymentStatus::Unknown {
            tracing::info!(payment_id = %id, status = %current.status, checks = current.checks, "unknown charge outcome resolved");
        }
        Ok(current)
    }
}
