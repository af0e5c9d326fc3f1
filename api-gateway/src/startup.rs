//! Wiring of the gateway.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};
use platform_auth::{Jwt, Revocations};
use platform_config::Env;
use platform_http::{
    BoxError, CancellationToken, HttpApi, Metrics, Readiness, Server, ServiceParts,
};
use platform_metrics::{Counter, counter};
use platform_middleware::{LoadShed, MaxHeaderBytes, RateLimiter};
use platform_proxy::Proxy;
use platform_proxy::balance::{Endpoint, Pool};
use platform_redis::RedisPool;
use platform_resilience::{RetryBudget, observed_breaker};

use crate::config::GatewayConfig;
use crate::fast::FastPath;
use crate::forward::{Gateway as State, handle};
use crate::health::Upstreams;

/// A built, bound gateway.
pub struct Application {
    server: Server,
    pools: Vec<Arc<Pool>>,
    proxy: Proxy,
    limiter: RateLimiter,
    /// Receives the services' revocations (through Redis) while the gateway runs.
    revocations: Revocations,
    /// Sends the edge's audit records to the event bus.
    audit_publisher: Option<platform_events::audit::AuditPublisher>,
    health_check_interval: std::time::Duration,
}

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

impl Application {
    pub async fn build(config: GatewayConfig) -> Result<Self, BoxError> {
        let name = config.server.service_name.clone();
        let metrics = Metrics::new(&name);
        let proxy = Proxy::new(config.proxy);
        let pools = pools(&config, &metrics)?;
        let limiter = match &config.redis {
            Some(redis) => RateLimiter::shared(RedisPool::new(redis)?, &config.rate_limit_prefix),
            None => RateLimiter::local(),
        };
        let upstreams = Upstreams(Arc::new(pools.clone()));
        let jwt = Jwt::connect(config.jwt.clone(), config.redis.as_ref())?;
        let revocations = jwt.revocations().clone();
        // Edge refusals go where every service's audit records go: the event bus.
        let (audit, audit_publisher) = match (&config.audit, &config.events) {
            (Some(audit), _) => (audit.clone(), None),
            (None, Some(events)) => {
                let transport = events.connect().await?;
                let (audit, publisher) =
                    platform_events::audit::bus_audit(&name, transport, Some(metrics.clone()));
                (audit, Some(publisher))
            }
            (None, None) => (platform_http::audit::Audit::new(&name), None),
        };
        let state = Arc::new(State {
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
            shed: LoadShed::new(config.max_concurrent_requests).counted(&metrics),
            upstream_counters: upstream_counters(&pools, &metrics),
            metrics: metrics.clone(),
        });

        // Everything under /api is the route table's; the rest is the gateway's own.
        let mut api = Router::new().route("/api/{*path}", any(handle).with_state(state.clone()));
        let cors = config.cors.layer();
        let cors_on = cors.is_some();
        if let Some(cors) = cors {
            api = api.layer(cors);
        }
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

        let server = Server::bind(
            &config.server,
            ServiceParts {
                http: HttpApi {
                    router,
                    openapi: None,
                    own_health: true,
                },
                grpc: None,
                // Ready when it can serve; how each upstream fares is /health's business, so
                // one service down never takes the whole gateway out of rotation.
                readiness: Readiness::new(),
                metrics,
                audit,
            },
        )
        .await?;
        let server = if config.fast_path {
            server.with_front(Arc::new(FastPath::new(state, &name, cors_on)))
        } else {
            server
        };
        Ok(Self {
            server,
            pools: pools.into_values().collect(),
            proxy,
            limiter,
            revocations,
            audit_publisher,
            health_check_interval: config.health_check_interval,
        })
    }
}

impl platform_http::Service for Application {
    type Config = GatewayConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "API_GATEWAY_";

    fn config_from_env(env: &mut Env) -> GatewayConfig {
        GatewayConfig::from_env(env)
    }

    async fn build(config: GatewayConfig) -> Result<Self, BoxError> {
        Application::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        for pool in &self.pools {
            tokio::spawn(Arc::clone(pool).check_health(
                self.proxy.clone(),
                self.health_check_interval,
                shutdown.clone(),
            ));
        }
        self.revocations.start(shutdown.clone().cancelled_owned());
        if let Some(publisher) = self.audit_publisher {
            tokio::spawn(publisher.run(shutdown.clone()));
        }
        let limiter = self.limiter.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => limiter.prune(),
                }
            }
        });
        Ok(self.server.run(shutdown).await?)
    }
}
