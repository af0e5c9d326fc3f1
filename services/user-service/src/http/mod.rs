//! The REST API: routes, handlers and their OpenAPI description, registered in one place
//! ([`api`]) through utoipa so the served document can never drift from the routes.

mod auth;
mod dto;
mod error;
mod users;

use axum::extract::FromRef;
use platform_auth::BearerSecurity;
use platform_auth::Jwt;
use platform_http::HttpApi;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use dto::{TokenResponse, UserResponse};

use crate::service::Users;

/// What handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub users: Users,
    pub jwt: Jwt,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "user-service", description = "Accounts and authentication."),
    modifiers(&BearerSecurity),
    tags(
        (name = "auth", description = "Login, token refresh and logout"),
        (name = "users", description = "User accounts"),
    )
)]
struct ApiDoc;

/// Every route of the service.
pub fn api(state: AppState) -> HttpApi {
    HttpApi::from_openapi_router(
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(users::register, users::list))
            .routes(routes!(users::me))
            .routes(routes!(users::get, users::update, users::delete))
            .routes(routes!(auth::login))
            .routes(routes!(auth::refresh))
            .routes(routes!(auth::logout))
            .with_state(state),
    )
}
