//! `/api/v1/orders` handlers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform_auth::{AdminUser, AuthUser};
use platform_http::audit::{Action, AuditEvent, Outcome};
use platform_http::{
    Auditor, IdempotencyKey, Json, Page, PageRequest, Path, Problem, Query, idempotent_response,
};
use uuid::Uuid;

use super::AppState;
use super::dto::{ListQuery, OrderInput, RefundInput, StatusInput};
use crate::domain::{OrderId, OrderStatus};
use crate::service::PlaceOrder;
use crate::view::OrderView;

/// Records an administrator's action on an order (`reason`: the new status, or why).
fn audit(auditor: &Auditor, action: Action, admin: AuthUser, order: Uuid, reason: &'static str) {
    auditor.record(
        AuditEvent::new(action, Outcome::Success)
            .user(admin.id.as_uuid())
            .target(format!("order:{order}"))
            .reason(reason),
    );
}

/// `201` once checkout is over (confirmed or failed), `202` while it still runs.
fn respond(order: OrderView, replayed: bool) -> Response {
    let status = if order.settled() {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    idempotent_response(status, order, replayed)
}

/// Place an order: stock is reserved, the card charged and the order confirmed — or, when a
/// step fails, everything undone and the order `failed` with the reason.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders",
    request_body = OrderInput,
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "Makes retries safe: a repeat returns the same order (1 to 255 visible ASCII characters)")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Checkout is over: the order is `confirmed` or `failed` (replays carry `Idempotent-Replayed: true`)", body = OrderView),
        (status = 202, description = "Checkout is still running; poll the order", body = OrderView),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, unknown products, or the key was used for another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The catalog is unavailable; nothing was placed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn place(
    State(state): State<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    Json(input): Json<OrderInput>,
) -> Result<Response, Problem> {
    let parsed = input.parse()?;
    let placed = state
        .orders
        .place(
            user,
            PlaceOrder {
                lines: parsed.lines,
                token: parsed.token,
                shipping_address: parsed.shipping_address,
                idempotency_key: key.into_string(),
            },
        )
        .await?;
    Ok(respond(placed.order, placed.replayed))
}

/// One order: the caller's own, or any for an administrator.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order, or not the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<OrderView>, Problem> {
    Ok(Json(state.orders.get(user, OrderId::from_uuid(id)).await?))
}

/// The caller's orders (an administrator's: everyone's), newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    params(platform_http::PageQuery, ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of orders", body = Page<OrderView>),
        (status = 422, description = "Invalid filter or page", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    page: PageRequest,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<OrderView>>, Problem> {
    let status = query.parse()?;
    Ok(Json(state.orders.list(user, status, page).await?))
}

/// Move a confirmed order along (administrators): `shipped`, then `delivered`.
#[utoipa::path(put, path = "/api/v1/orders/{id}/status", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    request_body = StatusInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order in its new status", body = OrderView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed from the order's current status (named), or an order with refunds shipped without `force`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown status, or `force` without a known `reason`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_status(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
    Json(input): Json<StatusInput>,
) -> Result<Json<OrderView>, Problem> {
    let (to, forced) = input.parse()?;
    let order = state
        .orders
        .set_status(OrderId::from_uuid(id), to, forced.is_some())
        .await?;
    let reason = forced.unwrap_or(order.status.as_str());
    audit(&auditor, Action::OrderStatusChange, admin, id, reason);
    Ok(Json(order))
}

/// Refund an order (administrators): everything left of an order that has not shipped
/// cancels it (the stock goes back too); part of it, or after shipping, refunds the payment and
/// records it on the order. Customers get their money back by cancelling.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/refund", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"),
        ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "Makes retries safe (1 to 255 visible ASCII characters)")),
    request_body = RefundInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order after the refund (`cancelled` for a whole refund before shipping; replays carry `Idempotent-Replayed: true`)", body = OrderView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to refund in this status, or more than is left", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid amount or reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The payment service is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refund(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
    key: IdempotencyKey,
    Json(input): Json<RefundInput>,
) -> Result<Response, Problem> {
    let (amount, reason) = input.parse()?;
    let refunded = state
        .orders
        .refund(admin, OrderId::from_uuid(id), amount, reason, key.as_str())
        .await?;
    // A replay repeats the answer, not the refund: nothing new for the audit trail.
    if !refunded.replayed {
        audit(&auditor, Action::PaymentRefund, admin, id, "admin_refund");
    }
    Ok(idempotent_response(
        StatusCode::OK,
        refunded.order,
        refunded.replayed,
    ))
}

/// Cancel an order that has not shipped (its owner or an administrator): the stock goes back
/// and what was charged is refunded. Cancelling twice is harmless.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cancelled order", body = OrderView),
        (status = 202, description = "Cancellation is under way", body = OrderView),
        (status = 404, description = "No such order, or not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order has shipped, or has ended", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
) -> Result<Response, Problem> {
    let order = state.orders.cancel(user, OrderId::from_uuid(id)).await?;
    // An owner cancelling their own order is no administrative act.
    if user.is_admin() {
        audit(
            &auditor,
            Action::OrderStatusChange,
            user,
            id,
            OrderStatus::Cancelled.as_str(),
        );
    }
    let status = if order.settled() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(order)).into_response())
}
