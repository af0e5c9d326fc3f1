//! `/api/v1/admin/payments/…`: the manual review queue. A payment the fraud rules held waits
//! here until an administrator approves it (it is charged now) or declines it (nothing is
//! charged), or `PAYMENT_REVIEW_TTL` passes (declined). Every decision is audited.

use axum::extract::State;
use platform_auth::AdminUser;
use platform_http::audit::{Action, AuditEvent, Outcome as Audited};
use platform_http::{Auditor, Json, Page, PageRequest, Path, Problem};
use uuid::Uuid;

use super::AppState;
use super::dto::DeclineInput;
use crate::domain::PaymentId;
use crate::view::PaymentView;

fn audit(auditor: &Auditor, admin: &AdminUser, id: Uuid, decision: &'static str) {
    auditor.record(
        AuditEvent::new(Action::PaymentReview, Audited::Success)
            .user(admin.0.id.as_uuid())
            .target(format!("payment:{id}"))
            .reason(decision),
    );
}

/// The payments waiting for a review, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/payments/reviews", tag = "reviews",
    params(platform_http::PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of held payments", body = Page<PaymentView>),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
    page: PageRequest,
) -> Result<Json<Page<PaymentView>>, Problem> {
    Ok(Json(state.payments.reviews(page).await?))
}

/// Approve a held payment: it is charged now, and its order goes on.
#[utoipa::path(post, path = "/api/v1/admin/payments/{id}/approve", tag = "reviews",
    params(("id" = Uuid, Path, description = "Payment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment after the providers answered (captured, failed, …)", body = PaymentView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting for a review, or held by the provider", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    admin: AdminUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
) -> Result<Json<PaymentView>, Problem> {
    let payment = state.payments.approve(PaymentId::from_uuid(id)).await?;
    audit(&auditor, &admin, id, "approved");
    Ok(Json(payment))
}

/// Decline a held payment: it fails, nothing is charged, and its order is given up.
#[utoipa::path(post, path = "/api/v1/admin/payments/{id}/decline", tag = "reviews",
    params(("id" = Uuid, Path, description = "Payment id")),
    request_body = DeclineInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The failed payment", body = PaymentView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting for a review, or held by the provider", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid reason", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decline(
    State(state): State<AppState>,
    admin: AdminUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
    Json(input): Json<DeclineInput>,
) -> Result<Json<PaymentView>, Problem> {
    let reason = input.parse()?;
    let payment = state
        .payments
        .decline(PaymentId::from_uuid(id), "declined", &reason)
        .await?;
    audit(&auditor, &admin, id, "declined");
    Ok(Json(payment))
}
