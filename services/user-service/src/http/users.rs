//! `/api/v1/users` handlers.

use axum::extract::State;
use axum::http::StatusCode;
use platform_auth::AuthUser;
use platform_http::{Auditor, Json, Page, PageRequest, Path, Problem};
use uuid::Uuid;

use super::AppState;
use super::dto::{RegisterRequest, UpdateUserRequest, UserResponse};
use crate::domain::{Role, UserId};

/// Create an account.
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Created", body = UserResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<AppState>,
    auditor: Auditor,
    Json(request): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<UserResponse>), Problem> {
    let new = request.parse()?;
    let user = state.users.register(&auditor, new, Role::User).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// List users (administrators only).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    params(platform_http::PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of users", body = Page<UserResponse>),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid page parameters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auditor: Auditor,
    caller: AuthUser,
    page: PageRequest,
) -> Result<Json<Page<UserResponse>>, Problem> {
    let users = state.users.list(&auditor, caller, page).await?;
    Ok(Json(users.map(UserResponse::from)))
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserResponse),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<Json<UserResponse>, Problem> {
    Ok(Json(state.users.get(caller, caller.id).await?.into()))
}

/// One account: the caller's own, or any for an administrator.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or not the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<UserResponse>, Problem> {
    Ok(Json(
        state.users.get(caller, UserId::from_uuid(id)).await?.into(),
    ))
}

/// Change a name, password or role. Changing one's own password needs `current_password`;
/// only administrators change roles. A password or role change ends every session of the
/// account: its refresh and access tokens stop working at once.
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    request_body = UpdateUserRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated user", body = UserResponse),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A role change by someone other than an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or wrong current password", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    auditor: Auditor,
    caller: AuthUser,
    Path(id): Path<Uuid>,
    Json(request): Json<UpdateUserRequest>,
) -> Result<Json<UserResponse>, Problem> {
    let change = request.parse()?;
    let user = state
        .users
        .update(&auditor, caller, UserId::from_uuid(id), change)
        .await?;
    Ok(Json(user.into()))
}

/// Delete an account: it can no longer log in and its refresh and access tokens stop working.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or not the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    auditor: Auditor,
    caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Problem> {
    state
        .users
        .delete(&auditor, caller, UserId::from_uuid(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
