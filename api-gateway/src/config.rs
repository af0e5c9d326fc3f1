//! The gateway's configuration: the route table (file or built-in) and the edge policies.

use std::num::NonZeroU32;
use std::time::Duration;

use platform_auth::JwtConfig;
use platform_config::Env;
use platform_events::EventsConfig;
use platform_http::{ServerConfig, ServerDefaults};
use platform_middleware::CorsConfig;
use platform_proxy::ProxyConfig;
use platform_proxy::balance::Strategy;
use platform_redis::RedisConfig;
use platform_resilience::BreakerConfig;

use crate::routes::{self, FileConfig, RouteTable, ServiceDef};

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "api-gateway",
    port: platform_service::ports::GATEWAY.http,
    grpc_port: platform_service::ports::GATEWAY.grpc,
    request_timeout: Duration::from_secs(35),
    per_core: true,
    edge: true,
};

/// Retry timing and budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// `RETRY_BACKOFF_BASE` / `RETRY_BACKOFF_MAX`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// `RETRY_BUDGET_RATIO`: retries allowed as a share of recent requests.
    pub budget_ratio: f32,
    /// Request bodies up to this size are kept for retries; larger ones stream once.
    pub max_body_bytes: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(500),
            budget_ratio: 0.2,
            max_body_bytes: 64 * 1024,
        }
    }
}

const DEFAULT_RATE_LIMIT_PREFIX: &str = "ratelimit";

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    pub services: Vec<ServiceDef>,
    pub routes: RouteTable,
    /// `UPSTREAM_TIMEOUT` (a cap on any attempt) and `UPSTREAM_CONNECT_TIMEOUT`.
    pub proxy: ProxyConfig,
    /// `RATE_LIMIT_PER_MINUTE`: per client IP and per user (0: unlimited).
    pub rate_limit_per_minute: Option<NonZeroU32>,
    /// Shares rate limits between replicas when set.
    pub redis: Option<RedisConfig>,
    /// `RATE_LIMIT_KEY_PREFIX` (default `ratelimit`): the Redis keys of the shared buckets.
    /// Gateways that should not share limits (two environments on one Redis) set different
    /// ones.
    pub rate_limit_prefix: String,
    /// Verifies access tokens at the edge.
    pub jwt: JwtConfig,
    /// The audit trail edge refusals go to, when a test passes one with a capturing sink;
    /// otherwise the event bus (`events`), or the log alone when that is `None`.
    pub audit: Option<platform_http::audit::Audit>,
    /// The event bus the gateway's audit records go to (so the event store keeps the edge's
    /// refusals with everyone else's): Redis Streams with `REDIS_URL`, else the embedded bus
    /// under `DATA_DIR`.
    pub events: Option<EventsConfig>,
    pub cors: CorsConfig,
    /// `GATEWAY_MAX_CONCURRENT_REQUESTS`: beyond, requests are shed with 503.
    pub max_concurrent_requests: usize,
    /// `HEALTH_DETAIL`: `/health` shows every endpoint to anyone (default: status only;
    /// the detail, with upstream addresses, needs an admin token).
    pub health_detail: bool,
    /// `GATEWAY_FAST_PATH` (default on): serve API requests (HTTP/1.1, plain or over TLS,
    /// and HTTP/2) with the gateway's own HTTP/1 upstream engine ([`crate::fast`]) instead
    /// of the router and hyper's client.
    pub fast_path: bool,
    /// `HEALTH_CHECK_INTERVAL`: how often each endpoint's `/health` is probed.
    pub health_check_interval: Duration,
    /// `BREAKER_*`.
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
}

/// The environment variable naming a service's URLs: `user-service` → `USER_SERVICE_URL`.
pub fn url_variable(service: &str) -> String {
    format!("{}_URL", service.to_ascii_uppercase().replace('-', "_"))
}

fn parse_upstreams(raw: &str) -> Option<Vec<(String, u32)>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| match entry.rsplit_once('@') {
            Some((url, weight)) => weight
                .parse()
                .ok()
                .filter(|w| *w > 0)
                .map(|w| (url.to_owned(), w)),
            None => Some((entry.to_owned(), 1)),
        })
        .collect::<Option<Vec<_>>>()
        .filter(|list| {
            !list.is_empty()
                && list
                    .iter()
                    .all(|(url, _)| platform_proxy::Upstream::parse("x", url).is_ok())
        })
}

impl GatewayConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let server = ServerConfig::from_env(env, DEFAULTS);
        let file = match env.optional::<String>("GATEWAY_CONFIG") {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => match FileConfig::parse(&path, &text) {
                    Ok(file) => file,
                    Err(error) => {
                        env.report(
                            "GATEWAY_CONFIG",
                            format!("a valid gateway configuration: {error}"),
                        );
                        FileConfig::defaults()
                    }
                },
                Err(error) => {
                    env.report("GATEWAY_CONFIG", format!("a readable file: {error}"));
                    FileConfig::defaults()
                }
            },
            None => FileConfig::defaults(),
        };
        let (mut services, routes) = match routes::build(&file) {
            Ok(built) => built,
            Err(errors) => {
                env.report(
                    "GATEWAY_CONFIG",
                    format!("a valid route table: {}", errors.join("; ")),
                );
                (Vec::new(), RouteTable::default())
            }
        };
        for service in &mut services {
            let variable = url_variable(&service.name);
            if let Some(upstreams) = env.optional_with(
                &variable,
                "comma-separated http://host:port URLs, each optionally @weight",
                parse_upstreams,
            ) {
                service.upstreams = upstreams;
            }
            let balancer = format!("{}_BALANCER", variable.trim_end_matches("_URL"));
            if let Some(strategy) = env.optional_with(
                &balancer,
                "round_robin, weighted_round_robin or p2c",
                Strategy::parse,
            ) {
                service.strategy = strategy;
            }
        }
        let proxy_defaults = ProxyConfig::default();
        let breaker_defaults = BreakerConfig::default();
        let retry_defaults = RetryConfig::default();
        let redis = RedisConfig::from_env(env);
        let events = EventsConfig::from_env(env, redis.clone());
        let jwt = JwtConfig::from_env(env, server.environment);
        let max_concurrent_requests =
            env.in_range("GATEWAY_MAX_CONCURRENT_REQUESTS", 4096, 1..=1_000_000);
        Self {
            services,
            routes,
            proxy: ProxyConfig {
                timeout: env.or("UPSTREAM_TIMEOUT", proxy_defaults.timeout),
                connect_timeout: env.or("UPSTREAM_CONNECT_TIMEOUT", proxy_defaults.connect_timeout),
                // As many as the gateway may have requests in flight: a pool that closes
                // connections it will need again churns them (h2 clients put ten requests
                // in flight per connection; at a cap of 1,024, 1,024 h2 connections made
                // 7,700 requests/s with the kernel busy finding free ports; 30,700 uncapped).
                max_idle_per_host: env.in_range(
                    "UPSTREAM_MAX_IDLE",
                    max_concurrent_requests.min(65_536),
                    1..=65_536,
                ),
            },
            rate_limit_per_minute: NonZeroU32::new(env.or("RATE_LIMIT_PER_MINUTE", 100u32)),
            rate_limit_prefix: env.or(
                "RATE_LIMIT_KEY_PREFIX",
                DEFAULT_RATE_LIMIT_PREFIX.to_owned(),
            ),
            redis,
            jwt,
            audit: None,
            events: Some(events),
            cors: CorsConfig::from_env(env),
            max_concurrent_requests,
            health_detail: env.or("HEALTH_DETAIL", false),
            fast_path: env.or("GATEWAY_FAST_PATH", true),
            health_check_interval: env.or("HEALTH_CHECK_INTERVAL", Duration::from_secs(5)),
            breaker: BreakerConfig {
                failure_rate: env
                    .optional_with(
                        "BREAKER_FAILURE_RATE",
                        "a share between 0 and 1, such as 0.5",
                        |raw| raw.parse::<f64>().ok().filter(|r| *r > 0.0 && *r <= 1.0),
                    )
                    .unwrap_or(breaker_defaults.failure_rate),
                min_requests: env.in_range(
                    "BREAKER_MIN_REQUESTS",
                    breaker_defaults.min_requests,
                    1..=100_000,
                ),
                window: env.or("BREAKER_WINDOW", breaker_defaults.window),
                window_size: env.in_range(
                    "BREAKER_WINDOW_SIZE",
                    breaker_defaults.window_size,
                    1..=100_000,
                ),
                open_for: env.or("BREAKER_OPEN_FOR", breaker_defaults.open_for),
                half_open_probes: env.in_range(
                    "BREAKER_HALF_OPEN_PROBES",
                    breaker_defaults.half_open_probes,
                    1..=1000,
                ),
            },
            retry: RetryConfig {
                backoff_base: env.or("RETRY_BACKOFF_BASE", retry_defaults.backoff_base),
                backoff_max: env.or("RETRY_BACKOFF_MAX", retry_defaults.backoff_max),
                budget_ratio: env
                    .optional_with(
                        "RETRY_BUDGET_RATIO",
                        "a share between 0 and 1, such as 0.2",
                        |raw| raw.parse::<f32>().ok().filter(|r| (0.0..=1.0).contains(r)),
                    )
                    .unwrap_or(retry_defaults.budget_ratio),
                max_body_bytes: retry_defaults.max_body_bytes,
            },
            server,
        }
    }

    /// Tests: loopback, free port, the built-in routes with `upstreams` overriding services'
    /// URLs, no rate limit, a known token secret.
    pub fn for_tests(upstreams: &[(&str, &str)], jwt_secret: &str) -> Self {
        let (mut services, routes) = routes::build(&FileConfig::defaults()).unwrap_or_default();
        for (name, url) in upstreams {
            if let Some(service) = services.iter_mut().find(|s| s.name == *name) {
                service.upstreams = vec![((*url).to_owned(), 1)];
            }
        }
        Self {
            server: ServerConfig::for_tests(DEFAULTS.name),
            services,
            routes,
            proxy: ProxyConfig {
                timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_millis(500),
                ..ProxyConfig::default()
            },
            rate_limit_per_minute: None,
            rate_limit_prefix: DEFAULT_RATE_LIMIT_PREFIX.to_owned(),
            redis: None,
            jwt: JwtConfig::with_secret(jwt_secret),
            audit: None,
            events: None,
            cors: CorsConfig::from_env(&mut Env::from_pairs::<[(&str, &str); 0], &str, &str>([])),
            max_concurrent_requests: 1024,
            health_detail: false,
            fast_path: true,
            health_check_interval: Duration::from_secs(5),
            breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_and_balancers_come_from_the_environment() {
        let mut env = Env::from_pairs([
            ("USER_SERVICE_URL", "http://a:1, http://b:2@3"),
            ("USER_SERVICE_BALANCER", "round_robin"),
            ("PRODUCT_SERVICE_URL", "product-service:8082"),
            ("RATE_LIMIT_PER_MINUTE", "0"),
        ]);
        let config = GatewayConfig::from_env(&mut env);
        let users = config
            .services
            .iter()
            .find(|s| s.name == "user-service")
            .unwrap();
        assert_eq!(
            users.upstreams,
            [("http://a:1".to_owned(), 1), ("http://b:2".to_owned(), 3)]
        );
        assert_eq!(users.strategy, Strategy::RoundRobin);
        assert_eq!(
            config.rate_limit_per_minute, None,
            "0 disables rate limiting"
        );
        let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        assert_eq!(vars, ["PRODUCT_SERVICE_URL"]);
    }

    #[test]
    fn the_upstream_pool_keeps_as_many_connections_as_requests_may_be_in_flight() {
        let config = GatewayConfig::from_env(&mut Env::from_pairs([("JWT_SECRET", "x")]));
        assert_eq!(config.max_concurrent_requests, 4096);
        assert_eq!(config.proxy.max_idle_per_host, 4096);
        let mut env = Env::from_pairs([("GATEWAY_MAX_CONCURRENT_REQUESTS", "20000")]);
        assert_eq!(
            GatewayConfig::from_env(&mut env).proxy.max_idle_per_host,
            20_000
        );
        let mut env = Env::from_pairs([("GATEWAY_MAX_CONCURRENT_REQUESTS", "200000")]);
        assert_eq!(
            GatewayConfig::from_env(&mut env).proxy.max_idle_per_host,
            65_536
        );
        let mut env = Env::from_pairs([
            ("GATEWAY_MAX_CONCURRENT_REQUESTS", "20000"),
            ("UPSTREAM_MAX_IDLE", "64"),
        ]);
        let config = GatewayConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(config.proxy.max_idle_per_host, 64);
    }

    #[test]
    fn a_configuration_file_replaces_the_built_in_routes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, "[services.shop]\nupstreams = [\"http://shop:9000\"]\n[[routes]]\nprefix = \"/api/v2/shop\"\nservice = \"shop\"\nauth = \"public\"\n").unwrap();
        let mut env = Env::from_pairs([("GATEWAY_CONFIG", path.display().to_string())]);
        let config = GatewayConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(config.services.len(), 1);
        assert!(
            config
                .routes
                .find(&axum::http::Method::GET, "/api/v2/shop/cart")
                .is_some()
        );
        assert!(
            config
                .routes
                .find(&axum::http::Method::GET, "/api/v1/users")
                .is_none()
        );

        let mut env = Env::from_pairs([("GATEWAY_CONFIG", "/no/such/file.toml")]);
        let _ = GatewayConfig::from_env(&mut env);
        assert_eq!(env.issues()[0].variable, "GATEWAY_CONFIG");
    }
}
