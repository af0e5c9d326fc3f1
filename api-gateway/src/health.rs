//! The gateway's view of its upstreams: `GET /health` aggregates every service's state
//! (endpoint health from active checks, circuit breakers, check latency); `GET
//! /health/{service}` shows one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use platform_auth::{Jwt, Role};
use platform_http::{Path, Problem};
use platform_proxy::balance::Pool;
use platform_resilience::BreakerState;
use serde::Serialize;
use utoipa::ToSchema;

/// Every service's pool, by name.
#[derive(Clone)]
pub struct Upstreams(pub Arc<HashMap<String, Arc<Pool>>>);

/// What the health pages need: the pools, and who may see their detail (upstream addresses,
/// breakers, in-flight counts are a map of the interior: administrators only, unless
/// `HEALTH_DETAIL=true`).
#[derive(Clone)]
pub struct HealthState {
    pub upstreams: Upstreams,
    pub jwt: Jwt,
    /// `HEALTH_DETAIL`: everyone sees the detail.
    pub detail: bool,
}

impl HealthState {
    fn shows_detail(&self, headers: &HeaderMap) -> bool {
        self.detail
            || headers
                .get(AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .and_then(|(_, token)| self.jwt.verify_cached(token.trim()).ok())
                .is_some_and(|caller| caller.role == Role::Admin)
    }
}

/// How things are. The gateway is `ok` (every service up), `degraded` (some down) or
/// `down` (all down); one service is `up` (an endpoint passes its checks) or `down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The gateway: every service up.
    Ok,
    /// A service: at least one endpoint passes its health checks.
    Up,
    /// The gateway: some services down.
    Degraded,
    /// The gateway: every service down; a service: no endpoint passes.
    Down,
}

/// The public answer: how things are, not what they are made of.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthStatus {
    /// Gateway: `ok`, `degraded` or `down`; one service: `up` or `down`.
    pub status: Health,
}

/// One endpoint's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointHealth {
    pub url: String,
    pub healthy: bool,
    pub circuit_breaker: String,
    pub in_flight: usize,
    pub latency_ms: f64,
}

/// One service's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceHealth {
    /// `up` when at least one endpoint passes its health checks, else `down`.
    pub status: Health,
    /// The worst breaker among the endpoints: `closed`, `half_open` or `open`.
    pub circuit_breaker: String,
    /// Latency of the fastest healthy endpoint's last health check.
    pub latency_ms: f64,
    pub endpoints: Vec<EndpointHealth>,
}

/// What `/health` answers: the detail for administrators (or with `HEALTH_DETAIL=true`), the
/// status alone for anyone else. (For the document only.)
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum GatewayHealthAnswer {
    Detail(GatewayHealth),
    Status(HealthStatus),
}

/// What `/health/{service}` answers, as [`GatewayHealthAnswer`].
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ServiceHealthAnswer {
    Detail(ServiceHealth),
    Status(HealthStatus),
}

/// The gateway and its services.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "degraded", "services": {"user_service": {"status": "up", "circuit_breaker": "closed", "latency_ms": 0.4, "endpoints": []}}}))]
pub struct GatewayHealth {
    /// `ok` (every service up), `degraded` (some down) or `down` (all down).
    pub status: Health,
    /// Keyed by service name with `_` for `-` (`user_service`).
    pub services: BTreeMap<String, ServiceHealth>,
}

fn service_health(pool: &Pool) -> ServiceHealth {
    let endpoints: Vec<EndpointHealth> = pool
        .endpoints()
        .iter()
        .map(|e| EndpointHealth {
            url: e.url(),
            healthy: e.is_healthy(),
            circuit_breaker: e.breaker.state().as_str().to_owned(),
            in_flight: e.in_flight(),
            latency_ms: e.check_latency().as_secs_f64() * 1000.0,
        })
        .collect();
    let worst = pool
        .endpoints()
        .iter()
        .map(|e| e.breaker.state())
        .max_by_key(|s| match s {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        })
        .unwrap_or(BreakerState::Closed);
    let up = endpoints.iter().any(|e| e.healthy);
    ServiceHealth {
        status: if up { Health::Up } else { Health::Down },
        circuit_breaker: worst.as_str().to_owned(),
        latency_ms: endpoints
            .iter()
            .filter(|e| e.healthy)
            .map(|e| e.latency_ms)
            .fold(f64::INFINITY, f64::min)
            .min(f64::MAX),
        endpoints,
    }
}

/// Liveness of the gateway, and the state of every service behind it. Anyone sees the
/// status; the per-service detail needs an administrator's token (or `HEALTH_DETAIL=true`).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Every service up, or some (degraded); the detail for administrators", body = GatewayHealthAnswer),
        (status = 503, description = "Every service down", body = GatewayHealthAnswer),
    ))]
pub async fn aggregate(State(state): State<HealthState>, headers: HeaderMap) -> Response {
    let services: BTreeMap<String, ServiceHealth> = state
        .upstreams
        .0
        .iter()
        .map(|(name, pool)| (name.replace('-', "_"), service_health(pool)))
        .collect();
    let up = services.values().filter(|s| s.status == Health::Up).count();
    let status = match up {
        n if n == services.len() => Health::Ok,
        0 => Health::Down,
        _ => Health::Degraded,
    };
    let code = if status == Health::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    if !state.shows_detail(&headers) {
        return (code, Json(HealthStatus { status })).into_response();
    }
    (code, Json(GatewayHealth { status, services })).into_response()
}

/// The state of one service behind the gateway: its status for anyone, the detail for
/// administrators (or with `HEALTH_DETAIL=true`).
#[utoipa::path(get, path = "/health/{service}", tag = "operations",
    params(("service" = String, Path, description = "A service name, e.g. user-service")),
    responses(
        (status = 200, description = "The service is up; the detail for administrators", body = ServiceHealthAnswer),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The service is down", body = ServiceHealthAnswer),
    ))]
pub async fn service(
    State(state): State<HealthState>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Response {
    let name = service.replace('_', "-");
    let Some(pool) = state.upstreams.0.get(&name) else {
        return Problem::not_found("No such service.").into_response();
    };
    let health = service_health(pool);
    let code = if health.status == Health::Up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !state.shows_detail(&headers) {
        let status = health.status;
        return (code, Json(HealthStatus { status })).into_response();
    }
    (code, Json(health)).into_response()
}
