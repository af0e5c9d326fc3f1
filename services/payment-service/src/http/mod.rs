//! The REST API: routes, handlers and their OpenAPI description, registered in one place
//! ([`api`]) through utoipa so the served document can never drift from the routes.

mod dto;
mod error;
mod payments;
mod reviews;

use axum::extract::FromRef;
use platform_auth::{BearerSecurity, Jwt};
use platform_http::HttpApi;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Payments;

/// What handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub payments: Payments,
    pub jwt: Jwt,
    /// `DIRECT_PAYMENTS`: whether `POST /api/v1/payments` charges without an order.
    pub direct_payments: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "payment-service", description = "Payments, refunds and provider webhooks."),
    modifiers(&BearerSecurity),
    tags(
        (name = "payments", description = "Charging and refunding"),
        (name = "webhooks", description = "Events from payment providers"),
        (name = "reviews", description = "Payments held for a person to decide (administrators)"),
    )
)]
struct ApiDoc;

/// Every route of the service.
pub fn api(state: AppState) -> HttpApi {
    HttpApi::from_openapi_router(
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(payments::charge, payments::list))
            .routes(routes!(payments::get))
            .routes(routes!(payments::refund))
            .routes(routes!(payments::webhook))
            .routes(routes!(reviews::list))
            .routes(routes!(reviews::approve))
            .routes(routes!(reviews::decline))
            .with_state(state),
    )
}
