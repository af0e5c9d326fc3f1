//! The REST API and the SSE stream: routes, handlers and their OpenAPI description,
//! registered in one place ([`api`]) through utoipa so the served document can never drift
//! from the routes.

mod dto;
mod error;
mod notifications;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use platform_auth::{BearerSecurity, Jwt};
use platform_config::SecretString;
use platform_http::{CancellationToken, HttpApi};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Notifications;

pub use stream::StreamSlots;

/// What handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub notifications: Notifications,
    pub jwt: Jwt,
    /// `NOTIFY_INTERNAL_TOKEN`: other services' credential for posting notifications.
    pub internal_token: Option<Arc<SecretString>>,
    /// How often idle SSE streams send a heartbeat.
    pub heartbeat: Duration,
    /// Ends every open SSE stream at shutdown, so the server can drain.
    pub streams_stop: CancellationToken,
    /// Open SSE streams per user, capped.
    pub streams: StreamSlots,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "notification-service", description = "Email, SMS, push and in-app notifications, preferences and a real-time stream."),
    modifiers(&BearerSecurity),
    tags(
        (name = "notifications", description = "In-app notifications and sending"),
        (name = "preferences", description = "Channels, addresses and opt-ins"),
    )
)]
struct ApiDoc;

/// Every route of the service.
pub fn api(state: AppState) -> HttpApi {
    HttpApi::from_openapi_router(
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(notifications::send, notifications::list))
            .routes(routes!(notifications::mark_read))
            .routes(routes!(notifications::subscribe))
            .routes(routes!(notifications::preferences))
            .routes(routes!(notifications::deliveries))
            .routes(routes!(stream::stream))
            .with_state(state),
    )
}
