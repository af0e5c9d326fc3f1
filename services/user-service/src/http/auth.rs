//! `/api/v1/auth` handlers.

use axum::extract::State;
use axum::http::StatusCode;
use platform_http::{Auditor, Json, Problem};

use super::AppState;
use super::dto::{LoginRequest, RefreshRequest, TokenResponse};

/// Exchange email and password for tokens.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Authenticated", body = TokenResponse),
        (status = 401, description = "Wrong email or password, or too many failed logins for this account (the same answer for all three)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many logins at once: retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    auditor: Auditor,
    Json(request): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, Problem> {
    let pair = state
        .users
        .login(&auditor, &request.email, &request.password)
        .await?;
    Ok(Json(pair.into()))
}

/// Exchange a refresh token for a new pair. The old one stops working; reusing it revokes
/// every token descended from the same login.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenResponse),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    auditor: Auditor,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, Problem> {
    Ok(Json(
        state
            .users
            .refresh(&auditor, &request.refresh_token)
            .await?
            .into(),
    ))
}

/// End the session a refresh token belongs to. The user's access tokens stop working at once
/// (on every session: the others renew theirs with their refresh token).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Logged out (also for unknown tokens)"),
        (status = 422, description = "Missing refresh_token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The access tokens could not be revoked: retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    auditor: Auditor,
    Json(request): Json<RefreshRequest>,
) -> Result<StatusCode, Problem> {
    state.users.logout(&auditor, &request.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}
