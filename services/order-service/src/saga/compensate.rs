//! The way back: gives the stock back, settles a charge whose outcome is unknown, refunds,
//! and ends the order `failed` or `cancelled`.

use platform_events::catalogue::{OrderCancelled, OrderFailed};
use platform_events::outbox;
use platform_proto::payment::v1 as payment;
use platform_proto::payment::v1::PaymentStatus;
use tonic::Code;
use uuid::Uuid;

use super::{Progress, Saga, SagaError, facts, finished};
use crate::domain::{OrderId, OrderStatus, Step, now};
use crate::repo::{self, Guard, OrderRow};

impl Saga {
    /// Undoes every step taken, then ends the order `failed` or `cancelled`. Stops (to be
    /// retried) at the first call that cannot be made now; every call is idempotent, so the
    /// retry repeats nothing.
    pub(super) async fn compensate(&self, mut row: OrderRow) -> Result<Progress, SagaError> {
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
                Ok(paid) if paid.status() == PaymentStatus::RequiresReview => {
                    // Held for a person: the checkout gave up on it, so it is declined;
                    // nothing was charged. While the provider holds it, wait.
                    row.payment_id = Uuid::parse_str(&paid.id).ok();
                    let reason = if row.cancel_requested {
                        "order cancelled"
                    } else {
                        "the checkout ended"
                    };
                    match clients.void(paid.id.clone(), reason.to_owned()).await {
                        Ok(voided)
                            if matches!(
                                voided.status(),
                                PaymentStatus::Failed | PaymentStatus::Blocked
                            ) =>
                        {
                            row.charge_unresolved = false;
                        }
                        Ok(_) | Err(_) => {
                            tracing::warn!(order_id = %row.id, "the held payment cannot be ended yet");
                            return self.wait(row).await;
                        }
                    }
                }
                Ok(paid)
                    if matches!(
                        paid.status(),
                        PaymentStatus::Pending | PaymentStatus::Unknown
                    ) =>
                {
                    // Not settled at the provider yet: what to give back is not known.
                    row.payment_id = Uuid::parse_str(&paid.id).ok();
                    tracing::warn!(order_id = %row.id, status = paid.status().text(), "waiting for the charge to settle before compensating");
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
}
