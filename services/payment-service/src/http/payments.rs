//! `/api/v1/payments` and `/api/v1/webhooks/payments/{provider}` handlers.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use platform_auth::{AdminUser, AuthUser};
use platform_http::audit::{Action, AuditEvent, Outcome as Audited};
use platform_http::{
    Auditor, IdempotencyKey, Json, Page, PageRequest, Path, Problem, Query, idempotent_response,
};
use uuid::Uuid;

use super::AppState;
use super::dto::{ChargeInput, ListQuery, RefundInput};
use crate::domain::{PaymentId, PaymentSource};
use crate::service::{Caller, ChargeCommand, Outcome, PaymentError, RefundCommand};
use crate::view::PaymentView;

fn caller(user: AuthUser) -> Caller {
    Caller {
        user_id: user.id.as_uuid(),
        admin: user.is_admin(),
    }
}

/// A repeat of an idempotent request answers exactly as the first did, marked as a replay.
fn respond(status: StatusCode, outcome: Outcome) -> Response {
    idempotent_response(status, outcome.payment, outcome.replayed)
}

/// A direct charge (`DIRECT_PAYMENTS`; orders are paid by their checkout). A decline, a fraud
/// block or a review is not an error: the payment is created with status `failed`, `blocked`
/// or `requires_review`. `order_id` is the charge's reference, and may not name an order (the
/// order service is asked): a charge of one's own order is 409 when it matches the order's
/// total and 422 when it does not; somebody else's order is 422.
#[utoipa::path(post, path = "/api/v1/payments", tag = "payments",
    request_body = ChargeInput,
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "Makes retries safe: a repeat returns the first response (1 to 255 visible ASCII characters)")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The payment (replays carry `Idempotent-Replayed: true`)", body = PaymentView),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Direct payments are switched off (`DIRECT_PAYMENTS=false`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same key is still being processed, or `order_id` names an order (paid by its checkout) and the charge matches it", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, the key was used for another request, or `order_id` names an order that is not the caller's or whose total the charge does not match", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The order service cannot be asked about `order_id`; nothing was charged", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn charge(
    State(state): State<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    Json(input): Json<ChargeInput>,
) -> Result<Response, Problem> {
    if !state.direct_payments {
        return Err(PaymentError::DirectPaymentsOff.into());
    }
    let parsed = input.parse()?;
    let outcome = state
        .payments
        .charge(
            caller(user),
            ChargeCommand {
                order_id: parsed.order_id,
                amount: parsed.amount,
                token: parsed.token,
                card_bin: parsed.bin,
                card_country: parsed.country,
                shipping_country: None,
                idempotency_key: key.into_string(),
                source: PaymentSource::Direct,
            },
        )
        .await?;
    Ok(respond(StatusCode::CREATED, outcome))
}

/// One payment: the caller's own, or any for an administrator.
#[utoipa::path(get, path = "/api/v1/payments/{id}", tag = "payments",
    params(("id" = Uuid, Path, description = "Payment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 404, description = "No such payment, or not the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PaymentView>, Problem> {
    Ok(Json(
        state
            .payments
            .get(caller(user), PaymentId::from_uuid(id))
            .await?,
    ))
}

/// The caller's payments (an administrator's: everyone's), newest first.
#[utoipa::path(get, path = "/api/v1/payments", tag = "payments",
    params(platform_http::PageQuery, ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of payments", body = Page<PaymentView>),
        (status = 422, description = "Invalid filter or page", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    page: PageRequest,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<PaymentView>>, Problem> {
    let status = query.parse()?;
    Ok(Json(state.payments.list(caller(user), status, page).await?))
}

/// Refund part (`amount`) or all of a captured direct payment (administrators). A payment
/// for an order is refunded through its order (409 names it); customers get their money
/// back by cancelling the order. Refunds never add up to more than was captured.
#[utoipa::path(post, path = "/api/v1/payments/{id}/refund", tag = "payments",
    params(("id" = Uuid, Path, description = "Payment id"),
        ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "Makes retries safe (1 to 255 visible ASCII characters)")),
    request_body = RefundInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment after the refund", body = PaymentView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not captured, more than is left to refund, or a payment for an order (refund the order)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider refused; nothing was refunded", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider is unavailable; nothing was refunded", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refund(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
    key: IdempotencyKey,
    Json(input): Json<RefundInput>,
) -> Result<Response, Problem> {
    let (amount, reason) = input.parse()?;
    let actor = user.id.as_uuid();
    let outcome = state
        .payments
        .refund(
            caller(user),
            RefundCommand {
                payment_id: PaymentId::from_uuid(id),
                amount,
                reason,
                idempotency_key: key.into_string(),
                via_order: false,
            },
        )
        .await?;
    // A replay repeats the answer, not the refund.
    if !outcome.replayed {
        auditor.record(
            AuditEvent::new(Action::PaymentRefund, Audited::Success)
                .user(actor)
                .target(format!("payment:{id}")),
        );
    }
    Ok(respond(StatusCode::OK, outcome))
}

/// A provider's webhook: the signature over the raw body is verified, each event applied
/// once (repeats are acknowledged and ignored).
#[utoipa::path(post, path = "/api/v1/webhooks/payments/{provider}", tag = "webhooks",
    params(("provider" = String, Path, description = "sandbox, stripe or adyen")),
    request_body(content = String, description = "The provider's event, as it sent it"),
    responses(
        (status = 200, description = "Accepted (new or repeated events)"),
        (status = 400, description = "Signed but not understood", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or stale signature", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider configured", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "About a payment the service does not know yet (its charge is still being written): the provider retries after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let applied = state.payments.webhook(&provider, &headers, &body).await?;
    // Adyen retries a notification until the answer's body is exactly `[accepted]`.
    if provider == crate::providers::adyen::NAME {
        return Ok("[accepted]".into_response());
    }
    Ok(Json(serde_json::json!({"received": true, "applied": applied})).into_response())
}
