//! The REST API: routes, handlers and their OpenAPI description, registered in one place
//! ([`api`]) through utoipa so the served document can never drift from the routes.

mod dto;
mod error;
mod orders;
mod reconciliation;

use axum::extract::FromRef;
use platform_auth::{BearerSecurity, Jwt};
use platform_http::HttpApi;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::reconcile::Reconciler;
use crate::service::Orders;

/// What handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub orders: Orders,
    pub reconciler: Reconciler,
    pub jwt: Jwt,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "order-service", description = "Orders and the checkout saga."),
    modifiers(&BearerSecurity),
    tags(
        (name = "orders", description = "Placing, following and cancelling orders"),
        (name = "reconciliation", description = "Orders compared with their payments (administrators)"),
    )
)]
struct ApiDoc;

/// Every route of the service.
pub fn api(state: AppState) -> HttpApi {
    HttpApi::from_openapi_router(
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(orders::place, orders::list))
            .routes(routes!(orders::get))
            .routes(routes!(orders::set_status))
            .routes(routes!(orders::cancel))
            .routes(routes!(orders::refund))
            .routes(routes!(reconciliation::report, reconciliation::run))
            .with_state(state),
    )
}
