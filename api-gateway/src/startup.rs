//! Wiring of the gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get};
use platform_config::Env;
use platform_http::{
    BoxError, CancellationToken, HttpApi, Metrics, Readiness, Server, ServiceParts,
};
use platform_proxy::Proxy;

use crate::config::GatewayConfig;
use crate::health::{UpstreamCheck, Upstreams, service_health};
use crate::proxy::{Target, forward};
use crate::rate_limit::RateLimit;
use crate::routes::SERVICES;

/// A built, bound gateway.
pub struct Gateway {
    server: Server,
    rate_limit: Option<RateLimit>,
}

impl Gateway {
    pub async fn build(config: GatewayConfig) -> Result<Self, BoxError> {
        let proxy = Proxy::new(config.proxy);
        let by_name: HashMap<String, Arc<_>> = config
            .upstreams
            .into_iter()
            .map(|u| (u.service.clone(), Arc::new(u)))
            .collect();
        let upstreams = Upstreams {
            proxy: proxy.clone(),
            by_name: Arc::new(by_name),
        };

        let mut router = Router::new();
        let mut readiness = Readiness::new();
        for routes in SERVICES {
            let Some(upstream) = upstreams.by_name.get(routes.service) else {
                continue;
            };
            let target = Target {
                proxy: proxy.clone(),
                upstream: Arc::clone(upstream),
            };
            for path in routes.paths {
                router = router.route(path, any(forward).with_state(target.clone()));
            }
            readiness.add(
                routes.service,
                UpstreamCheck {
                    proxy: proxy.clone(),
                    upstream: Arc::clone(upstream),
                },
            );
        }
        // Only the API routes are limited: health and metrics must stay reachable.
        let rate_limit = config.rate_limit_per_minute.map(RateLimit::per_minute);
        if let Some(rate_limit) = &rate_limit {
            router = router.route_layer(from_fn_with_state(
                rate_limit.clone(),
                crate::rate_limit::limit,
            ));
        }
        let router = router
            .route(
                "/health/{service}",
                get(service_health).with_state(upstreams.clone()),
            )
            .merge(crate::docs::router(upstreams));

        let name = config.server.service_name.clone();
        let server = Server::bind(
            &config.server,
            ServiceParts {
                http: HttpApi {
                    router,
                    openapi: None,
                },
                grpc: None,
                readiness,
                metrics: Metrics::new(&name),
            },
        )
        .await?;
        Ok(Self { server, rate_limit })
    }
}

impl platform_http::Service for Gateway {
    type Config = GatewayConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "API_GATEWAY_";

    fn config_from_env(env: &mut Env) -> GatewayConfig {
        GatewayConfig::from_env(env)
    }

    async fn build(config: GatewayConfig) -> Result<Self, BoxError> {
        Gateway::build(config).await
    }

    fn http_addr(&self) -> SocketAddr {
        self.server.http_addr()
    }

    fn grpc_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        if let Some(rate_limit) = self.rate_limit {
            tokio::spawn(rate_limit.prune_until(shutdown.clone()));
        }
        Ok(self.server.run(shutdown).await?)
    }
}
