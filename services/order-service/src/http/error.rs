//! How use-case errors reach clients: every one becomes a problem document. Internal details
//! are logged here and never sent.

use platform_http::Problem;

use crate::service::OrderError;

impl From<OrderError> for Problem {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::NotFound => Problem::not_found("No such order."),
            OrderError::UnknownProducts(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                Problem::invalid_field(
                    "items",
                    format!("names products that are not for sale: {}", ids.join(", ")),
                )
            }
            OrderError::MixedCurrencies => Problem::invalid_field(
                "items",
                "names products priced in different currencies; order them separately",
            ),
            OrderError::TotalTooLarge => {
                Problem::invalid_field("items", "add up to more than one order can hold")
            }
            OrderError::KeyReused => Problem::invalid_field(
                "Idempotency-Key",
                "was already used for a different request",
            ),
            OrderError::InvalidTransition(from, to) => {
                Problem::conflict(format!("The order is {from}; it cannot become {to}."))
            }
            OrderError::NotCancellable(status) => Problem::conflict(format!(
                "The order is {status}; only orders that have not shipped can be cancelled."
            )),
            OrderError::Catalog(error) => {
                tracing::warn!(%error, "cannot price the order");
                Problem::unavailable("The catalog is not available right now; no order was placed.")
                    .with_retry_after(5)
            }
            OrderError::NotRefundable(status) => Problem::conflict(format!(
                "The order is {status}: there is nothing to refund here (an order still in \
                 checkout is cancelled instead; a failed or cancelled one was refunded already)."
            )),
            OrderError::RefundRefused(detail) => {
                Problem::conflict(format!("The refund was refused: {detail}"))
            }
            // As everywhere else, a key reused for another request is a 422 naming the key.
            OrderError::RefundRequestInvalid(detail) => {
                Problem::invalid_field("Idempotency-Key", detail)
            }
            OrderError::RefundedCannotShip => Problem::conflict(
                "The order has refunds, so it does not ship unless an administrator sets \
                 `force: true` with a `reason`.",
            ),
            OrderError::WrongCurrency(currency) => Problem::invalid_field(
                "amount.currency",
                format!("must be the order's currency, {currency}"),
            ),
            OrderError::Payments(error) => {
                tracing::warn!(%error, "the payment service is unavailable");
                Problem::unavailable("The payment service is not available right now.")
                    .with_retry_after(5)
            }
            // Also when the checkout's first step lost it: the order is kept under its
            // Idempotency-Key, so a retry answers what became of it.
            OrderError::Database(error)
            | OrderError::Saga(crate::saga::SagaError::Database(error)) => {
                platform_service::database_problem("order", &error)
            }
            error @ (OrderError::Corrupt(_) | OrderError::Saga(_) | OrderError::Encode(_)) => {
                tracing::error!(%error, "request failed");
                Problem::internal()
            }
        }
    }
}
