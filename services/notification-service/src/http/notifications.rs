//! `/api/v1/notifications` handlers: sending, the inbox, preferences, deliveries.

use axum::extract::State;
use axum::http::StatusCode;
use platform_auth::{AdminUser, AuthUser};
use platform_http::{Json, Page, PageRequest, Path, Problem, Query};
use uuid::Uuid;

use super::AppState;
use super::dto::{DeliveriesQuery, ListQuery, Poster, SendInput, SubscribeInput};
use crate::channels::Channel;
use crate::domain::NotificationId;
use crate::view::{AcceptedView, DeliveryView, InAppView, PreferencesView};

/// Send a notification to a user (administrators, or services with the internal token).
/// Preferences apply: a channel the user turned off is recorded as `suppressed`.
#[utoipa::path(post, path = "/api/v1/notifications", tag = "notifications",
    request_body = SendInput,
    params(("X-Internal-Token" = Option<String>, Header, description = "Instead of an administrator's token: the service credential")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued; email, SMS and push are delivered asynchronously", body = AcceptedView),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or the template cannot render with the data", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn send(
    State(state): State<AppState>,
    _poster: Poster,
    Json(input): Json<SendInput>,
) -> Result<(StatusCode, Json<AcceptedView>), Problem> {
    let command = input.parse()?;
    let accepted = state.notifications.send_direct(command).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// The caller's in-app notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications",
    params(platform_http::PageQuery, ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of in-app notifications", body = Page<InAppView>),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid page", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    page: PageRequest,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<InAppView>>, Problem> {
    let unread = query.unread.unwrap_or(false);
    Ok(Json(
        state
            .notifications
            .inbox(user.id.as_uuid(), unread, page)
            .await?,
    ))
}

/// Mark one of the caller's in-app notifications read. Someone else's is 404.
#[utoipa::path(put, path = "/api/v1/notifications/{id}/read", tag = "notifications",
    params(("id" = Uuid, Path, description = "Notification id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Read (reading again changes nothing)"),
        (status = 404, description = "No such notification of the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Problem> {
    state
        .notifications
        .mark_read(user.id.as_uuid(), NotificationId::from_uuid(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turn a channel on or off for some or all event types, and set its address.
#[utoipa::path(post, path = "/api/v1/notifications/subscribe", tag = "preferences",
    request_body = SubscribeInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's preferences after the change", body = PreferencesView),
        (status = 422, description = "Unknown channel or event type, invalid address, or an address is needed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn subscribe(
    State(state): State<AppState>,
    user: AuthUser,
    Json(input): Json<SubscribeInput>,
) -> Result<Json<PreferencesView>, Problem> {
    let command = input.parse()?;
    let user = user.id.as_uuid();
    // Turning SMS or push on is pointless without somewhere to send them.
    if command.enabled
        && matches!(command.channel, Channel::Sms | Channel::Push)
        && command.address.is_none()
        && !state
            .notifications
            .has_address(user, command.channel)
            .await?
    {
        return Err(Problem::invalid_field(
            "address",
            format!("is required to turn on {}", command.channel),
        ));
    }
    Ok(Json(state.notifications.subscribe(user, command).await?))
}

/// The caller's channels, addresses and per-event-type settings (defaults included).
#[utoipa::path(get, path = "/api/v1/notifications/preferences", tag = "preferences",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every channel and event type", body = PreferencesView),
    ))]
pub async fn preferences(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<PreferencesView>, Problem> {
    Ok(Json(
        state.notifications.preferences(user.id.as_uuid()).await?,
    ))
}

/// Every message and what became of it, newest first (administrators): the queue, the
/// suppressed, and the dead letters (`status=failed`).
#[utoipa::path(get, path = "/api/v1/notifications/deliveries", tag = "notifications",
    params(platform_http::PageQuery, DeliveriesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of messages", body = Page<DeliveryView>),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid filter or page", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deliveries(
    State(state): State<AppState>,
    _admin: AdminUser,
    page: PageRequest,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Page<DeliveryView>>, Problem> {
    let filter = query.parse()?;
    Ok(Json(state.notifications.deliveries(filter, page).await?))
}
