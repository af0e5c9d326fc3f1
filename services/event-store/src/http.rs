//! The admin API: the audit trail and the dead letters.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use platform_auth::BearerSecurity;
use platform_auth::{AdminUser, Jwt};
use platform_events::audit;
use platform_events::store::{self, Filter};
use platform_events::{DeadLetter, Transport};
use platform_http::audit::{Action, Actor, AuditEvent, AuditRecord, Outcome};
use platform_http::pagination::DEFAULT_PER_PAGE;
use platform_http::{Auditor, FieldErrors, HttpApi, Json, Page, PageRequest, Path, Problem, Query};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub transport: Arc<dyn Transport>,
    pub jwt: Jwt,
}

fn internal(error: impl std::fmt::Display) -> Problem {
    tracing::error!(%error, "event store request failed");
    Problem::internal()
}

/// Which events to list (all optional).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// The aggregate id the events are about.
    pub subject: Option<String>,
    /// An event type such as `user.registered`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Events at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

/// An event as it was published (CloudEvents attributes, `data`, and the platform's extensions).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct StoredEvent(serde_json::Value);

/// The audit trail, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/events", tag = "events",
    params(EventQuery, platform_http::PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of events", body = Page<StoredEvent>),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_events(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<EventQuery>,
    page: PageRequest,
) -> Result<Json<Page<StoredEvent>>, Problem> {
    let filter = Filter {
        subject: query.subject,
        event_type: query.event_type,
        since: query.since,
        until: query.until,
        ..Filter::default()
    };
    let (events, total) = store::query(&state.db, &filter, page.offset(), page.per_page())
        .await
        .map_err(internal)?;
    let items = events
        .into_iter()
        .map(|e| serde_json::to_value(e).map(StoredEvent))
        .collect::<Result<_, _>>()
        .map_err(internal)?;
    Ok(Json(page.into_page(items, total)))
}

/// Which audit records to list (all optional). Every parameter is checked: an invalid one is
/// a 422 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted: a user id, or `service:<name>` (`service:order-service`).
    #[param(schema_with = actor_schema)]
    pub actor: Option<String>,
    /// An audited action, e.g. `product.create`, `auth.token_rejected`.
    #[param(value_type = Option<Action>)]
    pub action: Option<String>,
    /// Records at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// 1-based page number (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Records per page (default 20; more than 100 is read as 100).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub per_page: Option<String>,
}

fn actor_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(Actor::PATTERN))
        .build()
}

/// A parsed [`AuditQuery`].
struct AuditFilter {
    actor: Option<Actor>,
    action: Option<Action>,
    since: Option<DateTime<Utc>>,
    page: PageRequest,
}

impl AuditQuery {
    fn parse(self) -> Result<AuditFilter, Problem> {
        let mut errors = FieldErrors::new();
        let actor = self.actor.and_then(|raw| {
            errors.check(
                "actor",
                Actor::parse(&raw).ok_or("must be a user id or service:<name>"),
            )
        });
        let action = self.action.and_then(|raw| {
            errors.check(
                "action",
                Action::parse(&raw).ok_or("must be an audited action such as product.create"),
            )
        });
        let since = self.since.and_then(|raw| {
            errors.check(
                "since",
                DateTime::parse_from_rfc3339(&raw)
                    .map(|time| time.with_timezone(&Utc))
                    .map_err(|_| "must be an RFC 3339 time such as 2026-01-31T12:00:00Z"),
            )
        });
        let mut number = |field: &str, raw: Option<String>, default: u64| match raw {
            None => Some(default),
            Some(raw) => errors.check(
                field,
                // As documented: a signed 64-bit integer, at least 1.
                raw.parse::<i64>()
                    .ok()
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|n| *n >= 1)
                    .ok_or("must be a positive integer"),
            ),
        };
        let page = number("page", self.page, 1);
        let per_page = number("per_page", self.per_page, DEFAULT_PER_PAGE);
        errors.finish()?;
        Ok(AuditFilter {
            actor,
            action,
            since,
            page: PageRequest::new(page.unwrap_or(1), per_page.unwrap_or(DEFAULT_PER_PAGE))?,
        })
    }
}

/// An audit record as a service recorded it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(value_type = AuditRecord)]
pub struct StoredAuditRecord(serde_json::Value);

/// The audit trail: every authentication and authorization decision and administrative
/// action the services recorded, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of audit records, newest first", body = Page<StoredAuditRecord>),
        (status = 400, description = "Malformed query string (a parameter given twice)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid parameter (named)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The store could not be read", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn audit_trail(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Page<StoredAuditRecord>>, Problem> {
    let query = query.parse()?;
    let filter = Filter {
        // Audit events are about their actor (see platform_events::audit).
        subject: query.actor.map(|actor| audit::subject(Some(&actor))),
        event_type: query.action.map(audit::event_type),
        family: Some(audit::FAMILY.to_owned()),
        since: query.since,
        until: None,
        newest_first: true,
    };
    let page = query.page;
    let (events, total) = store::query(&state.db, &filter, page.offset(), page.per_page())
        .await
        .map_err(internal)?;
    let items = events
        .into_iter()
        .map(|event| StoredAuditRecord(event.data))
        .collect();
    Ok(Json(page.into_page(items, total)))
}

/// Dead letters to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// At most this many, oldest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Dead letters.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetters {
    pub items: Vec<DeadLetter>,
}

/// Events a consumer gave up on, with the error and attempt count.
#[utoipa::path(get, path = "/api/v1/admin/events/dead-letters", tag = "events",
    params(DeadLetterQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Dead letters, oldest first", body = DeadLetters),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The event bus is unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn dead_letters(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Json<DeadLetters>, Problem> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let items = state
        .transport
        .dead_letters(limit)
        .await
        .map_err(bus_down)?;
    Ok(Json(DeadLetters { items }))
}

fn bus_down(error: platform_events::BusError) -> Problem {
    tracing::error!(%error, "event bus unreachable");
    Problem::unavailable("The event bus is not reachable right now.").with_retry_after(5)
}

/// Puts a dead letter back for delivery.
#[utoipa::path(post, path = "/api/v1/admin/events/dead-letters/{id}/replay", tag = "events",
    params(("id" = String, Path, description = "Dead letter id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Re-published; consumers will receive it again"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    AdminUser(caller): AdminUser,
    auditor: Auditor,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    if state.transport.replay(&id).await.map_err(bus_down)? {
        auditor.record(
            AuditEvent::new(Action::EventReplay, Outcome::Success)
                .user(caller.id.as_uuid())
                .target(format!("dead_letter:{id}")),
        );
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(Problem::not_found(format!("No dead letter {id}.")))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "event-store", description = "The audit trail of every event, and dead letters."),
    modifiers(&BearerSecurity),
    tags(
        (name = "events", description = "Every published event, and dead letters (administrators)"),
        (name = "audit", description = "Who did what: authentication, authorization and administrative actions (administrators)"),
    )
)]
struct ApiDoc;

pub fn api(state: AppState) -> HttpApi {
    HttpApi::from_openapi_router(
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(list_events))
            .routes(routes!(audit_trail))
            .routes(routes!(dead_letters))
            .routes(routes!(replay))
            .with_state(state),
    )
}
