//! The template service's REST API: create an item, read one back.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use platform_auth::{AuthUser, BearerSecurity, Jwt};
use platform_http::{HttpApi, Json, Path, Problem};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::repo;

/// What the handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The service's pool.
    pub db: DatabaseConnection,
    /// Verifies callers' access tokens.
    pub jwt: Jwt,
    /// The longest item name accepted (`TEMPLATE_MAX_NAME`).
    pub max_name: usize,
}

/// A new item.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// 1 to `TEMPLATE_MAX_NAME` characters (default 100), no control characters; trimmed.
    #[schema(example = "First item")]
    pub name: String,
}

/// An item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    /// Its id.
    pub id: Uuid,
    /// The user who created it.
    pub owner: Uuid,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<repo::item::Model> for ItemView {
    fn from(row: repo::item::Model) -> Self {
        Self {
            id: row.id,
            owner: row.owner,
            name: row.name,
            created_at: row.created_at,
        }
    }
}

/// Creates an item owned by the caller.
#[utoipa::path(post, path = "/api/v1/items", tag = "items",
    request_body = NewItem,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ItemView),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name is empty, too long or has control characters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(item): Json<NewItem>,
) -> Result<(StatusCode, Json<ItemView>), Problem> {
    let name = item.name.trim();
    let length = name.chars().count();
    if length == 0 || length > state.max_name || name.chars().any(char::is_control) {
        return Err(Problem::invalid_field(
            "name",
            format!(
                "must be 1 to {} characters without control characters",
                state.max_name
            ),
        ));
    }
    let row = repo::create(&state.db, caller.id.as_uuid(), name)
        .await
        .map_err(|error| platform_service::database_problem("template", &error))?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// One item.
#[utoipa::path(get, path = "/api/v1/items/{id}", tag = "items",
    params(("id" = Uuid, Path, description = "The item's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<ItemView>, Problem> {
    match repo::find(&state.db, id)
        .await
        .map_err(|error| platform_service::database_problem("template", &error))?
    {
        Some(row) => Ok(Json(row.into())),
        None => Err(Problem::not_found(format!("No item {id}."))),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "template-service", description = "The template of a service: named items."),
    modifiers(&BearerSecurity),
    tags((name = "items", description = "Named items, each owned by its creator")),
)]
struct ApiDoc;

/// The REST API with its OpenAPI document.
pub fn api(state: AppState) -> HttpApi {
    HttpApi::from_openapi_router(
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(create))
            .routes(routes!(get))
            .with_state(state),
    )
}
