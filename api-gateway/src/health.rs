//! The gateway's view of its upstreams: `/health/{service}` and readiness.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use platform_http::{HealthCheck, Path, Problem};
use platform_proxy::{Proxy, Upstream};
use serde_json::{Value, json};

/// Upstreams by service name.
#[derive(Clone)]
pub struct Upstreams {
    pub proxy: Proxy,
    pub by_name: Arc<HashMap<String, Arc<Upstream>>>,
}

/// Liveness of one upstream service, as the gateway sees it.
#[utoipa::path(get, path = "/health/{service}", tag = "operations",
    params(("service" = String, Path, description = "A service name, e.g. user-service")),
    responses(
        (status = 200, description = "The service answers its /health"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The service is down"),
    ))]
pub async fn service_health(
    State(upstreams): State<Upstreams>,
    Path(service): Path<String>,
) -> Response {
    let Some(upstream) = upstreams.by_name.get(&service) else {
        return Problem::not_found(format!("No service named {service}.")).into_response();
    };
    match upstreams.proxy.fetch(upstream, "/health").await {
        Ok((status, body)) if status.is_success() => {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (StatusCode::OK, Json(json!({"service": service, "status": "up", "health": body}))).into_response()
        }
        Ok((status, _)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"service": service, "status": "down", "error": format!("/health answered {status}")})),
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"service": service, "status": "down", "error": error.to_problem().detail})),
        )
            .into_response(),
    }
}

/// Readiness check: the upstream answers its `/health`.
pub struct UpstreamCheck {
    pub proxy: Proxy,
    pub upstream: Arc<Upstream>,
}

impl HealthCheck for UpstreamCheck {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.proxy.fetch(&self.upstream, "/health").await {
                Ok((status, _)) if status.is_success() => Ok(()),
                Ok((status, _)) => Err(format!("/health answered {status}")),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}
