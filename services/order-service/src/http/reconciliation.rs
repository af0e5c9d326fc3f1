//! `/api/v1/admin/orders/reconciliation`: what the last reconciliation pass found, and a pass
//! run on demand.

use axum::extract::State;
use platform_auth::AdminUser;
use platform_http::{Json, Problem};

use super::AppState;
use crate::reconcile::{ReconcileError, Report};

impl From<ReconcileError> for Problem {
    fn from(error: ReconcileError) -> Self {
        match error {
            ReconcileError::Payments(error) => {
                tracing::warn!(%error, "reconciliation: the payment service is unavailable");
                Problem::unavailable("The payment service is not available right now.")
                    .with_retry_after(5)
            }
            ReconcileError::Database(error) => {
                tracing::error!(%error, "reconciliation failed");
                Problem::internal()
            }
        }
    }
}

/// The last pass's report: every mismatch between orders and payments, and whether it was
/// repaired.
#[utoipa::path(get, path = "/api/v1/admin/orders/reconciliation", tag = "reconciliation",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The last report (`checked_at` null before the first pass)", body = Report),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn report(State(state): State<AppState>, _admin: AdminUser) -> Json<Report> {
    Json(state.reconciler.report())
}

/// Run a pass now; its report.
#[utoipa::path(post, path = "/api/v1/admin/orders/reconciliation", tag = "reconciliation",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report of the pass just run", body = Report),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The payment service cannot be asked", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn run(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<Report>, Problem> {
    Ok(Json(state.reconciler.run_once().await?))
}
