//! Provider webhooks: verified by the provider's own scheme, each event applied once (its id
//! is recorded in the transaction that applies it), and only along the moves the payment
//! state machine allows.

use std::time::SystemTime;

use http::HeaderMap;
use platform_events::catalogue::PaymentRefunded;

use super::{PaymentError, Payments};
use crate::domain::{PaymentStatus, now};
use crate::providers::WebhookKind;
use crate::repo::{self, PaymentRow};

impl Payments {
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
            let status = row.status;
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
                        };
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
            row.status = to;
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
