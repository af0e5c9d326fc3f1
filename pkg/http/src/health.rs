//! Liveness (`/health`) and readiness (`/ready`).
//!
//! Liveness says the process answers; it checks nothing else, so an orchestrator never restarts
//! a healthy process because its database blinked. Readiness runs every registered
//! [`HealthCheck`] (from `platform-health`) concurrently, each under a deadline, and answers 503 with per-dependency
//! detail when any is down, so a load balancer stops sending traffic until it recovers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use platform_health::{
    CheckReport, CheckStatus, FnCheck, HealthCheck, Readiness, ReadinessReport, ReadinessStatus,
};

/// Body of `/health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "ok", "service": "user-service", "version": "0.1.0"}))]
pub struct Liveness {
    /// Always `ok`: a process that can answer is alive.
    pub status: String,
    /// The service's name.
    pub service: String,
    /// The version the binary was built as (the workspace's package version).
    pub version: String,
}

/// What the operational endpoints need.
#[derive(Clone)]
pub struct OpsState {
    /// The service's name, as `/health` reports it.
    pub service: Arc<str>,
    /// The version `/health` reports.
    pub version: &'static str,
    /// The checks `/ready` runs.
    pub readiness: Readiness,
    /// The registry `/metrics` renders.
    pub metrics: platform_metrics::Metrics,
    /// Render every registry in the process, not only this service's.
    pub federate_metrics: bool,
}

/// Liveness: the process is up and serving requests.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Liveness)))]
pub async fn health(State(state): State<OpsState>) -> Json<Liveness> {
    Json(Liveness {
        status: "ok".to_owned(),
        service: state.service.to_string(),
        version: state.version.to_owned(),
    })
}

/// Readiness: every dependency answers.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Every dependency is up", body = ReadinessReport),
        (status = 503, description = "At least one dependency is down", body = ReadinessReport),
    ))]
pub async fn ready(State(state): State<OpsState>) -> Response {
    let report = state.readiness.report().await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<OpsState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        if state.federate_metrics {
            state.metrics.render_process()
        } else {
            state.metrics.render()
        },
    )
        .into_response()
}
