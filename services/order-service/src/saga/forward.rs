//! The forward steps (reserve, charge, review, commit): the calls to the product and
//! payment services, and how each answer moves the saga on or turns it back.

use platform_events::catalogue::OrderConfirmed;
use platform_proto::payment::v1 as payment;
use platform_proto::payment::v1::PaymentStatus;
use platform_proto::product::v1 as product;
use tonic::Code;
use uuid::Uuid;

use super::{Progress, Saga, SagaError, chrono, facts, finished};
use crate::clients::CallError;
use crate::config::HaltAt;
use crate::domain::{OrderId, OrderStatus, Step, now};
use crate::repo::{ItemRow, OrderRow};

impl Saga {
    pub(super) async fn reserve(
        &self,
        mut row: OrderRow,
        items: &[ItemRow],
    ) -> Result<Progress, SagaError> {
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

    pub(super) fn charge_request(row: &OrderRow) -> payment::ChargeRequest {
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

    pub(super) async fn charge(
        &self,
        mut row: OrderRow,
        fresh: bool,
    ) -> Result<Progress, SagaError> {
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
                match paid.status() {
                    PaymentStatus::Captured | PaymentStatus::Authorized => {
                        Self::move_to(&mut row, OrderStatus::PaymentAuthorized, Step::Commit)?;
                        self.advance(row, Vec::new()).await
                    }
                    PaymentStatus::Pending | PaymentStatus::Unknown => {
                        // The provider has not said yet (or its answer was lost and the
                        // payment service is asking it again): ask again shortly. Past the
                        // deadline, compensation waits for the answer before refunding.
                        row.charge_unresolved = true;
                        self.wait(row).await
                    }
                    PaymentStatus::Failed => {
                        self.compensate_from_here(row, Some(declined("payment declined")))
                            .await
                    }
                    PaymentStatus::Blocked => {
                        let reason = "payment blocked by the fraud checks".to_owned();
                        self.compensate_from_here(row, Some(reason)).await
                    }
                    PaymentStatus::RequiresReview => {
                        // Held for a person: the order waits in `payment_review`; the charge
                        // stays unresolved until the review is decided.
                        row.charge_unresolved = true;
                        Self::move_to(&mut row, OrderStatus::PaymentReview, Step::Review)?;
                        tracing::info!(order_id = %row.id, "payment held for review");
                        self.advance(row, Vec::new()).await
                    }
                    other => {
                        let reason = format!("unexpected payment status {}", other.text());
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
    pub(super) async fn review(&self, mut row: OrderRow) -> Result<Progress, SagaError> {
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
        match paid.status() {
            PaymentStatus::Captured | PaymentStatus::Authorized => {
                row.charge_unresolved = false;
                row.deadline = now() + chrono(self.inner.config.deadline);
                Self::move_to(&mut row, OrderStatus::PaymentAuthorized, Step::Commit)?;
                self.advance(row, Vec::new()).await
            }
            PaymentStatus::Failed | PaymentStatus::Blocked => {
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

    pub(super) async fn commit(&self, mut row: OrderRow) -> Result<Progress, SagaError> {
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
}
