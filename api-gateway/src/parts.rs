//! The gateway's parts, assembled from its configuration: the upstream pools with their
//! breakers and counters, the edge audit trail, the shared forwarding state, and the router of
//! its own endpoints around the route table. `startup.rs` binds and runs what this builds.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};
use platform_auth::{Jwt, Revocations};
use platform_http::audit::Audit;
use platform_http::{BoxError, CancellationToken, HttpApi, Metrics, Readiness, ServiceParts};
use platform_metrics::{Counter, counter};
use platform_middleware::{LoadShed, MaxHeaderBytes, RateLimiter};
use platform_proxy::Proxy;
use platform_proxy::balance::{Endpoint, Pool};
use platform_redis::RedisPool;
use platform_resilience::{RetryBudget, observed_breaker};

use crate::config::GatewayConfig;
use crate::forward::{Gateway as State, handle};
use crate::health::Upstreams;

fn pools(
    config: &GatewayConfig,
    metrics: &Metrics,
) -> Result<HashMap<String, Arc<Pool>>, BoxError> {
    let mut pools = HashMap::new();
    for service in &config.services {
        let mut endpoints = Vec::new();
        for (url, weight) in &service.upstreams {
            let upstream = platform_proxy::Upstream::parse(&service.name, url)?;
            let breaker =
                observed_breaker(config.breaker, metrics, &service.name, &upstream.base_url());
            endpoints.push(Endpoint::new(upstream, *weight, breaker));
        }
        pools.insert(
            service.name.clone(),
            Arc::new(Pool::new(&service.name, endpoints, service.strategy)),
        );
    }
    Ok(pools)
}

/// Registers `upstream_requests_total{service,endpoint,outcome}` for every endpoint once, so
/// the request path only increments.
fn upstream_counters(
    pools: &HashMap<String, Arc<Pool>>,
    metrics: &Metrics,
) -> HashMap<usize, Vec<Counter>> {
    let mut counters = HashMap::new();
    for pool in pools.values() {
        for endpoint in pool.endpoints() {
            let service: Arc<str> = Arc::from(pool.service.as_str());
            let by_outcome = crate::forward::OUTCOMES
                .iter()
                .map(|outcome| {
                    metrics.record(|| {
                        counter!(
                            "upstream_requests_total",
                            "upstream" => Arc::clone(&service),
                            "endpoint" => endpoint.url_label(),
                            "outcome" => *outcome,
                        )
                    })
                })
                .collect();
            counters.insert(Arc::as_ptr(endpoint) as usize, by_outcome);
        }
    }
    counters
}

/// Where edge refusals are recorded: the configured trail (tests), else the event bus, where
/// every service's audit records go (with its publisher, to run), else the log alone.
async fn edge_audit(
    config: &GatewayConfig,
    name: &str,
    metrics: &Metrics,
) -> Result<(Audit, Option<platform_events::audit::AuditPublisher>), BoxError> {
    Ok(match (&config.audit, &config.events) {
        (Some(audit), _) => (audit.clone(), None),
        (None, Some(events)) => {
            let transport = events.connect().await?;
            let (audit, publisher) =
                platform_events::audit::bus_audit(name, transport, Some(metrics.clone()));
            (audit, Some(publisher))
        }
        (None, None) => (Audit::new(name), None),
    })
}

/// The forwarding state both request paths share.
struct Shared<'a> {
    config: &'a GatewayConfig,
    pools: &'a HashMap<String, Arc<Pool>>,
    proxy: &'a Proxy,
    jwt: Jwt,
    audit: &'a Audit,
    limiter: &'a RateLimiter,
    metrics: &'a Metrics,
}

/// The state every forwarded request reads: routes, pools, policy, limits, counters.
fn state(shared: Shared<'_>) -> Arc<State> {
    let Shared {
        config,
        pools,
        proxy,
        jwt,
        audit,
        limiter,
        metrics,
    } = shared;
    Arc::new(State {
        routes: config.routes.clone(),
        pools: pools.clone(),
        proxy: proxy.clone(),
        jwt,
        audit: audit.clone(),
        limiter: limiter.clone(),
        default_limit: config.rate_limit_per_minute,
        budget: RetryBudget::new(
            std::time::Duration::from_secs(10),
            5,
            config.retry.budget_ratio,
        ),
        retry: config.retry,
        max_body_bytes: config.server.max_body_bytes,
        max_header_bytes: MaxHeaderBytes(config.server.connections.max_header_bytes),
        trusted_proxies: config.server.trusted_proxies.clone(),
        shed: LoadShed::new(config.max_concurrent_requests).counted(metrics),
        upstream_counters: upstream_counters(pools, metrics),
        metrics: metrics.clone(),
    })
}

/// Everything under /api is the route table's; the rest (health, the merged OpenAPI
/// document) is the gateway's own. Also whether CORS is on, which the fast path must know.
fn router(
    config: &GatewayConfig,
    state: &Arc<State>,
    pools: &HashMap<String, Arc<Pool>>,
    proxy: &Proxy,
) -> (Router, bool) {
    let mut api = Router::new().route("/api/{*path}", any(handle).with_state(state.clone()));
    let cors = config.cors.layer();
    let cors_on = cors.is_some();
    if let Some(cors) = cors {
        api = api.layer(cors);
    }
    let upstreams = Upstreams(Arc::new(pools.clone()));
    let health = crate::health::HealthState {
        upstreams: upstreams.clone(),
        jwt: state.jwt.clone(),
        detail: config.health_detail,
    };
    let router = api
        .route(
            "/health",
            get(crate::health::aggregate).with_state(health.clone()),
        )
        .route(
            "/health/{service}",
            get(crate::health::service).with_state(health),
        )
        .merge(crate::docs::router(crate::docs::Upstreams {
            pools: upstreams,
            proxy: proxy.clone(),
        }));
    (router, cors_on)
}

/// Everything the gateway is made of, before it is bound.
pub(crate) struct Assembled {
    /// What the server serves: the router, metrics, the edge's audit trail.
    pub(crate) service: ServiceParts,
    /// The forwarding state, for the fast path.
    pub(crate) state: Arc<State>,
    /// Whether CORS is on (the fast path answers preflights itself).
    pub(crate) cors_on: bool,
    /// What runs beside the server.
    pub(crate) beside: Beside,
}

/// The tasks that run beside the server, and what they need.
pub(crate) struct Beside {
    pools: Vec<Arc<Pool>>,
    proxy: Proxy,
    limiter: RateLimiter,
    revocations: Revocations,
    audit_publisher: Option<platform_events::audit::AuditPublisher>,
    health_check_interval: std::time::Duration,
}

/// Builds every part from `config`: pools, limiter, token verifier, audit trail, state,
/// router. Ready when it can serve: how each upstream fares is /health's business, so one
/// service down never takes the whole gateway out of rotation.
pub(crate) async fn assemble(config: &GatewayConfig) -> Result<Assembled, BoxError> {
    let name = &config.server.service_name;
    let metrics = Metrics::new(name);
    let proxy = Proxy::new(config.proxy);
    let pools = pools(config, &metrics)?;
    let limiter = match &config.redis {
        Some(redis) => RateLimiter::shared(RedisPool::new(redis)?, &config.rate_limit_prefix),
        None => RateLimiter::local(),
    };
    let jwt = Jwt::connect(config.jwt.clone(), config.redis.as_ref())?;
    let revocations = jwt.revocations().clone();
    let (audit, audit_publisher) = edge_audit(config, name, &metrics).await?;
    let state = state(Shared {
        config,
        pools: &pools,
        proxy: &proxy,
        jwt,
        audit: &audit,
        limiter: &limiter,
        metrics: &metrics,
    });
    let (router, cors_on) = router(config, &state, &pools, &proxy);
    let service = ServiceParts {
        http: HttpApi {
            router,
            openapi: None,
            own_health: true,
        },
        grpc: None,
        readiness: Readiness::new(),
        metrics,
        audit,
    };
    let beside = Beside {
        pools: pools.into_values().collect(),
        proxy,
        limiter,
        revocations,
        audit_publisher,
        health_check_interval: config.health_check_interval,
    };
    Ok(Assembled {
        service,
        state,
        cors_on,
        beside,
    })
}

impl Beside {
    /// Checks the upstreams' health, applies revocations, publishes audit records and prunes
    /// rate-limit windows, until `shutdown`.
    pub(crate) fn start(self, shutdown: &CancellationToken) {
        for pool in self.pools {
            let interval = self.health_check_interval;
            tokio::spawn(pool.check_health(self.proxy.clone(), interval, shutdown.clone()));
        }
        self.revocations.start(shutdown.clone().cancelled_owned());
        if let Some(publisher) = self.audit_publisher {
            tokio::spawn(publisher.run(shutdown.clone()));
        }
        tokio::spawn(prune(self.limiter, shutdown.clone()));
    }
}

/// Forgets idle rate-limit windows every minute until `stop`.
async fn prune(limiter: RateLimiter, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => limiter.prune(),
        }
    }
}
