//! How use-case errors reach clients: every one becomes a problem document. Internal details
//! are logged here and never sent.

use platform_http::Problem;

use crate::providers::{ProviderError, WebhookError};
use crate::service::PaymentError;

impl From<PaymentError> for Problem {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::NotFound => Problem::not_found("No such payment."),
            PaymentError::KeyReused => Problem::invalid_field(
                "Idempotency-Key",
                "was already used for a different request",
            ),
            PaymentError::KeyInProgress => Problem::conflict(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            )
            .with_retry_after(1),
            PaymentError::NotRefundable(status) => Problem::conflict(format!(
                "Only captured payments can be refunded; this one is {status}."
            )),
            PaymentError::ExceedsRefundable(left) => Problem::conflict(format!(
                "The refund exceeds what is left to refund ({left} minor units)."
            )),
            PaymentError::WrongCurrency(currency) => Problem::invalid_field(
                "amount.currency",
                format!("must be the payment's currency, {currency}"),
            ),
            PaymentError::WebhookTooEarly => Problem::conflict(
                "The event names a payment this service does not know (yet); deliver it again later.",
            )
            .with_retry_after(60),
            PaymentError::RefundThroughOrder { order, .. } => Problem::conflict(format!(
                "This payment belongs to order {order}: refund it through the order \
                 (POST /api/v1/admin/orders/{order}/refund), so the order and its stock agree."
            )),
            PaymentError::DirectPaymentsOff => Problem::forbidden(
                "Direct payments are switched off (DIRECT_PAYMENTS=false): pay through an order \
                 (POST /api/v1/orders).",
            ),
            PaymentError::OrderPaidByCheckout(order) => Problem::conflict(format!(
                "Order {order} is paid by its checkout, once; it cannot be charged again."
            )),
            PaymentError::ChargeMismatch { .. } => {
                Problem::invalid_field("amount", error.to_string())
            }
            PaymentError::NotYourOrder(_) => {
                Problem::invalid_field("order_id", "does not name one of your orders")
            }
            PaymentError::OrderUnverified(error) => {
                tracing::warn!(%error, "direct charge refused: its order cannot be checked");
                Problem::unavailable(
                    "The order this charge names cannot be checked right now; nothing was \
                     charged. Try again shortly.",
                )
                .with_retry_after(5)
            }
            PaymentError::NotInReview(status) => Problem::conflict(format!(
                "This payment is {status}: it is not waiting for a review."
            )),
            PaymentError::HeldByProvider => Problem::conflict(
                "The payment provider holds this payment for its own check (e.g. 3-D Secure); \
                 its answer decides it.",
            ),
            PaymentError::UnknownProvider(name) => {
                Problem::not_found(format!("No payment provider named {name:?} is configured."))
            }
            PaymentError::Webhook(WebhookError::Malformed(detail)) => {
                Problem::bad_request(format!("The webhook could not be understood: {detail}"))
            }
            PaymentError::Webhook(error) => {
                tracing::warn!(%error, "webhook refused");
                Problem::unauthorized("The webhook signature is missing, invalid or too old.")
            }
            PaymentError::Provider(ProviderError::NotSent(reason)) => {
                tracing::warn!(%reason, "refund failed: provider unavailable");
                Problem::unavailable(
                    "The payment provider is not available right now; nothing was refunded.",
                )
                .with_retry_after(5)
            }
            PaymentError::Provider(ProviderError::Unknown(reason)) => {
                tracing::warn!(%reason, "refund outcome unknown");
                Problem::unavailable(
                    "The payment provider did not answer, so the refund may or may not have been \
                     made. Repeat the request with the same Idempotency-Key to learn its outcome.",
                )
                .with_retry_after(5)
            }
            PaymentError::Provider(error) => {
                tracing::warn!(%error, "refund refused by the provider");
                Problem::new(axum::http::StatusCode::BAD_GATEWAY)
                    .with_detail("The payment provider refused the refund; nothing was refunded.")
            }
            PaymentError::Database(error) => platform_service::database_problem("payment", &error),
            error @ (PaymentError::Interrupted(_)
            | PaymentError::Corrupt(_)
            | PaymentError::Encode(_)) => {
                tracing::error!(%error, "request failed");
                Problem::internal()
            }
        }
    }
}
