//! `/api/v1/products` (public reads) and `/api/v1/admin/products` (administrators) handlers.

use axum::extract::State;
use axum::http::StatusCode;
use platform_auth::AdminUser;
use platform_http::audit::{Action, AuditEvent, Outcome};
use platform_http::{Auditor, Json, Page, PageRequest, Path, Problem, Query};
use uuid::Uuid;

use super::AppState;
use super::dto::{
    CreateProductRequest, InventoryRequest, ListQuery, SearchQuery, UpdateProductRequest,
};
use crate::domain::ProductId;
use crate::view::ProductView;

/// Records an administrator's change to the catalog.
fn audit(auditor: &Auditor, admin: AdminUser, action: Action, product: Uuid) {
    auditor.record(
        AuditEvent::new(action, Outcome::Success)
            .user(admin.0.id.as_uuid())
            .target(format!("product:{product}")),
    );
}

/// Browse the catalog.
#[utoipa::path(get, path = "/api/v1/products", tag = "products",
    params(platform_http::PageQuery, ListQuery),
    responses(
        (status = 200, description = "One page of products", body = Page<ProductView>),
        (status = 422, description = "Invalid filter or page parameters", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    page: PageRequest,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<ProductView>>, Problem> {
    let filter = query.parse()?;
    Ok(Json(state.catalog.list(&filter, page).await?))
}

/// Full-text search over name, description, category and SKU; best matches first.
#[utoipa::path(get, path = "/api/v1/products/search", tag = "products",
    params(SearchQuery, platform_http::PageQuery),
    responses(
        (status = 200, description = "One page of matches", body = Page<ProductView>),
        (status = 422, description = "Missing, empty or too long query", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn search(
    State(state): State<AppState>,
    page: PageRequest,
    Query(query): Query<SearchQuery>,
) -> Result<Json<Page<ProductView>>, Problem> {
    let terms = query.parse()?;
    Ok(Json(state.catalog.search(&terms, page).await?))
}

/// One product.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<ProductView>, Problem> {
    Ok(Json(state.catalog.get(ProductId::from_uuid(id)).await?))
}

/// Add a product (administrators).
#[utoipa::path(post, path = "/api/v1/admin/products", tag = "admin",
    request_body = CreateProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ProductView),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "SKU already in use", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    admin: AdminUser,
    auditor: Auditor,
    Json(request): Json<CreateProductRequest>,
) -> Result<(StatusCode, Json<ProductView>), Problem> {
    let product = state.catalog.create(request.parse()?).await?;
    audit(&auditor, admin, Action::ProductCreate, product.id);
    Ok((StatusCode::CREATED, Json(product)))
}

/// Change a product's details or price (administrators).
#[utoipa::path(put, path = "/api/v1/admin/products/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = UpdateProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated product", body = ProductView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "SKU already in use", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    admin: AdminUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
    Json(request): Json<UpdateProductRequest>,
) -> Result<Json<ProductView>, Problem> {
    let change = request.parse()?;
    let product = state
        .catalog
        .update(ProductId::from_uuid(id), change)
        .await?;
    audit(&auditor, admin, Action::ProductUpdate, id);
    Ok(Json(product))
}

/// Archive a product: it leaves the catalog and can no longer be reserved (administrators).
#[utoipa::path(delete, path = "/api/v1/admin/products/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "Product id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Archived"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn archive(
    State(state): State<AppState>,
    admin: AdminUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Problem> {
    state.catalog.archive(ProductId::from_uuid(id)).await?;
    audit(&auditor, admin, Action::ProductDelete, id);
    Ok(StatusCode::NO_CONTENT)
}

/// Set (`stock`) or adjust (`delta`) the units on hand; never below what is reserved
/// (administrators).
#[utoipa::path(put, path = "/api/v1/admin/products/{id}/inventory", tag = "admin",
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = InventoryRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product with its new stock", body = ProductView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stock would fall below the reserved units", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Neither or both of stock and delta, or a negative stock", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn inventory(
    State(state): State<AppState>,
    admin: AdminUser,
    auditor: Auditor,
    Path(id): Path<Uuid>,
    Json(request): Json<InventoryRequest>,
) -> Result<Json<ProductView>, Problem> {
    let change = request.parse()?;
    let product = state
        .catalog
        .change_stock(ProductId::from_uuid(id), change)
        .await?;
    audit(&auditor, admin, Action::InventoryUpdate, id);
    Ok(Json(product))
}
