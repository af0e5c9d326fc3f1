//! Assembles a service's complete HTTP router: its API, the operational endpoints, the OpenAPI
//! document and the shared middleware stack.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use platform_metrics::Metrics;
use tower::ServiceBuilder;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::audit::Audit;
use crate::client_ip::TrustedProxies;
use crate::health::{self, OpsState, Readiness};
use crate::middleware::{self, PipelineState};

/// Everything a service contributes to its HTTP side.
pub struct HttpApi {
    /// The service's routes, state already applied.
    pub router: Router,
    /// The OpenAPI document of those routes (from `OpenApiRouter::split_for_parts`), served
    /// at `/openapi.json` with the operational endpoints added. `None` when the service
    /// serves its own `/openapi.json` (the gateway, which merges its upstreams' documents).
    pub openapi: Option<OpenApi>,
    /// The service serves its own `/health` (the gateway's aggregates its upstreams').
    pub own_health: bool,
}

impl HttpApi {
    /// Splits a utoipa router into the axum router and its document.
    pub fn from_openapi_router(router: OpenApiRouter) -> Self {
        let (router, openapi) = router.split_for_parts();
        Self {
            router,
            openapi: Some(openapi),
            own_health: false,
        }
    }
}

/// The OpenAPI description of `/health`, `/ready` and `/metrics`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(health::health, health::ready, health::metrics),
    tags((name = "operations", description = "Liveness, readiness and metrics"))
)]
pub struct OperationsDoc;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// The deadline of one request (`REQUEST_TIMEOUT`): past it the answer is a 503.
    pub timeout: Duration,
    /// The largest request body accepted (`MAX_BODY_BYTES`): beyond it, a 413.
    pub max_body_bytes: usize,
}

/// What the pipeline gives every request besides limits: the audit trail, and whose
/// forwarding headers to believe when naming the client.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The service's trail, handed to every request as an [`Auditor`](crate::Auditor).
    pub audit: Audit,
    /// Whose forwarding headers name the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// `/metrics` goes on a router of its own (`METRICS_PORT`), not on the main one.
    pub separate_metrics: bool,
    /// `/metrics` renders every registry of the process (`METRICS_FEDERATE`).
    pub federate_metrics: bool,
}

/// The service's routers: the main one, and `/metrics` alone when it is served apart.
pub struct Routers {
    /// The API, the operational endpoints and `/openapi.json`, inside the middleware stack.
    pub main: Router,
    /// `/metrics` alone (no middleware), when [`RequestContext::separate_metrics`] is set.
    pub metrics: Option<Router>,
}

/// Adds `/health`, `/ready`, `/metrics` and `/openapi.json` to `api`, then wraps the whole in the
/// shared middleware stack (see [`crate::middleware`] for the order and why).
pub fn finish(
    service: &str,
    api: HttpApi,
    readiness: Readiness,
    metrics: Metrics,
    limits: RequestLimits,
    context: RequestContext,
) -> Routers {
    let service: Arc<str> = Arc::from(service);
    let ops = OpsState {
        service: Arc::clone(&service),
        version: env!("CARGO_PKG_VERSION"),
        readiness,
        metrics: metrics.clone(),
        federate_metrics: context.federate_metrics,
    };
    let mut ops_router = Router::new();
    if !api.own_health {
        ops_router = ops_router.route("/health", get(health::health));
    }
    let mut ops_router = ops_router.route("/ready", get(health::ready));
    let metrics_router = if context.separate_metrics {
        Some(
            Router::new()
                .route("/metrics", get(health::metrics))
                .with_state(ops.clone()),
        )
    } else {
        ops_router = ops_router.route("/metrics", get(health::metrics));
        None
    };
    let ops_router = ops_router.with_state(ops);

    let mut router = api.router.merge(ops_router);
    let mut documented = None;
    if let Some(mut openapi) = api.openapi {
        openapi.merge(OperationsDoc::openapi());
        openapi.info.title = service.to_string();
        openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
        // Rendered once: the document never changes while the process runs.
        let mut document = serde_json::to_value(&openapi).unwrap_or_default();
        crate::contract::complete(&mut document, &service);
        documented = Some(Arc::new(crate::contract::Documented::from_document(
            &document,
        )));
        let document = Bytes::from(serde_json::to_vec_pretty(&document).unwrap_or_default());
        router =
            router.route(
                "/openapi.json",
                get(move || {
                    let document = document.clone();
                    async move {
                        ([(header::CONTENT_TYPE, "application/json")], document).into_response()
                    }
                }),
            );
    }
    let main = router
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(
            // Outermost first; see `crate::middleware` for what the pipeline does.
            ServiceBuilder::new()
                .layer(from_fn_with_state(
                    PipelineState {
                        service,
                        metrics,
                        timeout: limits.timeout,
                        audit: context.audit,
                        trusted_proxies: context.trusted_proxies,
                        documented,
                    },
                    middleware::pipeline,
                ))
                .layer(DefaultBodyLimit::max(limits.max_body_bytes)),
        );
    Routers {
        main,
        metrics: metrics_router,
    }
}
