//! How use-case errors reach clients: every one becomes a problem document. Internal details
//! are logged here and never sent.

use platform_http::Problem;

use crate::service::CatalogError;

impl From<CatalogError> for Problem {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::SkuTaken => Problem::conflict("A product with this SKU already exists."),
            CatalogError::NotFound => Problem::not_found("No such product."),
            CatalogError::UnknownProduct(id) => {
                Problem::not_found(format!("Product {id} does not exist or is archived."))
            }
            CatalogError::BelowReserved { reserved } => Problem::conflict(format!(
                "Stock cannot go below the {reserved} units reserved by orders in progress."
            )),
            CatalogError::AboveMaximum(max) => {
                Problem::conflict(format!("Stock cannot exceed {max} units."))
            }
            CatalogError::InsufficientStock(id) => {
                Problem::conflict(format!("Not enough units of product {id} are available."))
            }
            CatalogError::AlreadySettled(order, state) => Problem::conflict(format!(
                "The reservation of order {order} is already {state}."
            )),
            CatalogError::NoReservation(order) => {
                Problem::not_found(format!("Order {order} has no reservation."))
            }
            CatalogError::EmptyReservation => {
                Problem::invalid_field("lines", "must contain at least one line")
            }
            CatalogError::Database(error) => platform_service::database_problem("product", &error),
            error @ CatalogError::Event(_) => {
                tracing::error!(%error, "request failed");
                Problem::internal()
            }
        }
    }
}
