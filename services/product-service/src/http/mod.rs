//! The REST API: routes, handlers and their OpenAPI description, registered in one place
//! ([`api`]) through utoipa so the served document can never drift from the routes.

mod dto;
mod error;
mod products;

use axum::extract::FromRef;
use platform_auth::{BearerSecurity, Jwt};
use platform_http::HttpApi;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Catalog;

/// What handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub catalog: Catalog,
    pub jwt: Jwt,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "product-service", description = "The catalog, search and inventory."),
    modifiers(&BearerSecurity),
    tags(
        (name = "products", description = "Browsing and searching the catalog"),
        (name = "admin", description = "Catalog and stock administration"),
    )
)]
struct ApiDoc;

/// Every route of the service.
pub fn api(state: AppState) -> HttpApi {
    HttpApi::from_openapi_router(
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(products::list))
            .routes(routes!(products::search))
            .routes(routes!(products::get))
            .routes(routes!(products::create))
            .routes(routes!(products::update, products::archive))
            .routes(routes!(products::inventory))
            .with_state(state),
    )
}
