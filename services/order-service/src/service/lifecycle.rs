//! What happens to an order after its checkout: administrators ship and deliver it,
//! customers cancel it, administrators refund it.

use platform_auth::AuthUser;
use platform_events::catalogue::{OrderDelivered, OrderShipped};
use platform_events::{Envelope, outbox};
use platform_money::Money;

use super::{OrderError, Orders, Placed};
use crate::clients::CallError;
use crate::domain::{OrderId, OrderStatus, now};
use crate::repo;
use crate::saga::facts;
use crate::view::OrderView;

impl Orders {
    /// An administrator moves a confirmed order along: `shipped`, then `delivered`. An order
    /// with refunds ships only when `forced` (the caller audits why).
    pub async fn set_status(
        &self,
        id: OrderId,
        to: OrderStatus,
        forced: bool,
    ) -> Result<OrderView, OrderError> {
        let row = repo::find(&self.db, id)
            .await?
            .ok_or(OrderError::NotFound)?;
        let from = row.status;
        if !to.set_by_admin() || !from.allows(to) {
            return Err(OrderError::InvalidTransition(from, to));
        }
        if to == OrderStatus::Shipped && row.refunded > 0 && !forced {
            return Err(OrderError::RefundedCannotShip);
        }
        let at = now();
        let order = facts(&row);
        let event = match to {
            OrderStatus::Shipped => Envelope::new(&self.source, &OrderShipped { order })?,
            _ => Envelope::new(&self.source, &OrderDelivered { order })?,
        };
        let txn = platform_db::begin_write(&self.db).await?;
        if !repo::set_status(&txn, id, from, to, at).await? {
            drop(txn);
            // Moved meanwhile (or its saga is still running): report where it is now.
            let now_row = repo::find(&self.db, id)
                .await?
                .ok_or(OrderError::NotFound)?;
            let current = now_row.status;
            return Err(OrderError::InvalidTransition(current, to));
        }
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        tracing::info!(order_id = %id, %from, %to, "order status set");
        let row = repo::find(&self.db, id)
            .await?
            .ok_or(OrderError::NotFound)?;
        self.view(&row).await
    }

    /// Cancels an order that has not shipped: its stock goes back and what was charged is
    /// refunded. Cancelling a cancelled order changes nothing.
    pub async fn cancel(&self, caller: AuthUser, id: OrderId) -> Result<OrderView, OrderError> {
        let row = self.visible(caller, id).await?;
        let status = row.status;
        if status == OrderStatus::Cancelled || (row.cancel_requested && status.cancellable()) {
            return self.settle_existing(id).await;
        }
        if !status.cancellable() || !repo::request_cancel(&self.db, id, now()).await? {
            let current = repo::find(&self.db, id)
                .await?
                .ok_or(OrderError::NotFound)?;
            let current = current.status;
            if current == OrderStatus::Cancelled {
                return self.get(caller, id).await;
            }
            return Err(OrderError::NotCancellable(current));
        }
        tracing::info!(order_id = %id, "cancellation requested");
        self.settle_existing(id).await
    }

    /// An administrator refunds an order. Everything not refunded yet, of an order that has
    /// not shipped, is a cancellation (the stock goes back too, so stock and money agree);
    /// anything else (part of it, or after shipping) refunds the payment through the payment
    /// service, under a key of the request's own, and records it on the order.
    pub async fn refund(
        &self,
        admin: AuthUser,
        id: OrderId,
        amount: Option<Money>,
        reason: String,
        key: &str,
    ) -> Result<Placed, OrderError> {
        let row = self.visible(admin, id).await?;
        let status = row.status;
        if let Some(money) = amount
            && money.currency().as_str() != row.currency
        {
            return Err(OrderError::WrongCurrency(row.currency.clone()));
        }
        let left = row.total - row.refunded;
        let whole = amount.is_none_or(|m| m.amount() == left);
        match status {
            OrderStatus::Confirmed if whole => {
                let order = self.cancel(admin, id).await?;
                return Ok(Placed {
                    order,
                    replayed: false,
                });
            }
            OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered => {}
            other => return Err(OrderError::NotRefundable(other)),
        }
        let Some(payment_id) = row.payment_id else {
            return Err(OrderError::NotRefundable(status));
        };
        let refunded = self
            .saga
            .clients()
            .refund_reporting_replay(platform_proto::payment::v1::RefundRequest {
                payment_id: payment_id.to_string(),
                amount: amount.map(|m| platform_proto::payment::v1::Money {
                    amount: m.amount(),
                    currency: m.currency().to_string(),
                }),
                reason,
                idempotency_key: format!("order-{}-admin-{key}", row.id),
            })
            .await;
        let (paid, replayed) = match refunded {
            Ok(answer) => answer,
            Err(CallError::Refused { status, .. })
                if status.code() == tonic::Code::FailedPrecondition =>
            {
                return Err(OrderError::RefundRefused(status.message().to_owned()));
            }
            Err(CallError::Refused { status, .. })
                if status.code() == tonic::Code::InvalidArgument =>
            {
                return Err(OrderError::RefundRequestInvalid(
                    status.message().to_owned(),
                ));
            }
            Err(error) => return Err(OrderError::Payments(error)),
        };
        repo::record_refunded(&self.db, payment_id, paid.refunded_amount, now()).await?;
        if !replayed {
            tracing::info!(order_id = %id, refunded = paid.refunded_amount, "order refunded by an administrator");
        }
        let order = self.get(admin, id).await?;
        Ok(Placed { order, replayed })
    }
}
