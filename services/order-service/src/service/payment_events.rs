//! The payment service's events about an order: refunds made outside the saga, and money
//! captured after the order had already ended.

use std::sync::Arc;

use platform_events::catalogue::{PaymentCaptured, PaymentRefunded};
use platform_events::idempotency;
use platform_http::audit::{Action, Actor, AuditContext, AuditEvent, Outcome as AuditOutcome};
use uuid::Uuid;

use super::{OrderError, Orders};
use crate::domain::{OrderId, OrderStatus, now};
use crate::repo;

impl Orders {
    /// `payment.captured` for an order that had already ended `failed` or `cancelled`: money
    /// taken after the checkout gave up (a payment made directly for the order, a provider that
    /// captured late). It is refunded at once, under a key of its own per payment (so a
    /// redelivered event refunds once), audited, and the customer hears of it from the
    /// refund's notification. `true` when this call asked for the refund.
    pub async fn repair_late_capture(
        &self,
        captured: &PaymentCaptured,
    ) -> Result<bool, OrderError> {
        let facts = &captured.payment;
        let Some(row) = repo::find(&self.db, OrderId::from_uuid(facts.order_id)).await? else {
            // Not one of our orders (a direct charge with an order id of its own).
            return Ok(false);
        };
        if !matches!(row.status, OrderStatus::Failed | OrderStatus::Cancelled) {
            return Ok(false);
        }
        let refunded = self
            .saga
            .clients()
            .refund(platform_proto::payment::v1::RefundRequest {
                payment_id: facts.payment_id.to_string(),
                amount: None,
                reason: format!("captured after order {} ended", row.id),
                idempotency_key: format!("order-{}-late-{}", row.id, facts.payment_id),
            })
            .await;
        match refunded {
            Ok(_) => {
                tracing::warn!(order_id = %row.id, payment_id = %facts.payment_id, amount = facts.amount, "payment captured after its order ended; refunded");
                self.audit.record(
                    &AuditContext::default(),
                    AuditEvent::new(Action::PaymentRefund, AuditOutcome::Success)
                        .actor(Actor::Service(Arc::from(self.source.as_str())))
                        .target(format!("payment:{}", facts.payment_id))
                        .reason("late_capture"),
                );
                Ok(true)
            }
            // Refunded already (this event was delivered before), or nothing left to refund.
            Err(error) if error.refused_code() == Some(tonic::Code::FailedPrecondition) => {
                Ok(false)
            }
            Err(error) => Err(OrderError::Payments(error)),
        }
    }

    /// `payment.refunded`: records refunds made outside the saga (at the provider, by an
    /// administrator) on the order. Idempotent per event.
    pub async fn apply_refund(
        &self,
        consumer: &str,
        event_id: Uuid,
        refund: &PaymentRefunded,
    ) -> Result<(), OrderError> {
        let txn = platform_db::begin_write(&self.db).await?;
        if idempotency::first_time(&txn, consumer, event_id).await? {
            repo::record_refunded(
                &txn,
                refund.payment.payment_id,
                refund.refunded_total,
                now(),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
