//! The gateway's configuration.

use std::num::NonZeroU32;
use std::time::Duration;

use platform_config::Env;
use platform_http::{ServerConfig, ServerDefaults};
use platform_proxy::{ProxyConfig, Upstream};

use crate::routes::SERVICES;

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "api-gateway",
    port: 8080,
    grpc_port: 0,
    request_timeout: Duration::from_secs(35),
};

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    /// One per entry of the route table, from `<SERVICE>_URL`.
    pub upstreams: Vec<Upstream>,
    /// `UPSTREAM_TIMEOUT` (response headers) and `UPSTREAM_CONNECT_TIMEOUT`.
    pub proxy: ProxyConfig,
    /// `RATE_LIMIT_PER_MINUTE`: API requests per client IP per minute; `None` (set to 0) means
    /// unlimited.
    pub rate_limit_per_minute: Option<NonZeroU32>,
}

impl GatewayConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let server = ServerConfig::from_env(env, DEFAULTS);
        let upstreams = SERVICES
            .iter()
            .filter_map(|routes| {
                let url = env.or(routes.url_variable, routes.default_url.to_owned());
                match Upstream::parse(routes.service, &url) {
                    Ok(upstream) => Some(upstream),
                    Err(_) => {
                        env.report(routes.url_variable, "an http://host:port URL");
                        None
                    }
                }
            })
            .collect();
        let defaults = ProxyConfig::default();
        let proxy = ProxyConfig {
            timeout: env.or("UPSTREAM_TIMEOUT", defaults.timeout),
            connect_timeout: env.or("UPSTREAM_CONNECT_TIMEOUT", defaults.connect_timeout),
            ..defaults
        };
        let rate_limit_per_minute = NonZeroU32::new(env.or("RATE_LIMIT_PER_MINUTE", 100u32));
        Self {
            server,
            upstreams,
            proxy,
            rate_limit_per_minute,
        }
    }

    /// Tests: loopback, a free port, upstreams given explicitly.
    pub fn for_tests(upstreams: Vec<Upstream>) -> Self {
        Self {
            server: ServerConfig::for_tests(DEFAULTS.name),
            upstreams,
            proxy: ProxyConfig {
                timeout: Duration::from_secs(10),
                ..ProxyConfig::default()
            },
            rate_limit_per_minute: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_validated() {
        let mut env = Env::from_pairs([("USER_SERVICE_URL", "user-service:8081")]);
        let config = GatewayConfig::from_env(&mut env);
        assert_eq!(config.upstreams.len(), 1, "only the valid one");
        assert_eq!(env.issues()[0].variable, "USER_SERVICE_URL");

        let mut env = Env::from_pairs([("USER_SERVICE_URL", "http://users:9000")]);
        let config = GatewayConfig::from_env(&mut env);
        assert_eq!(config.upstreams[0].base_url(), "http://users:9000");
        assert_eq!(config.rate_limit_per_minute, NonZeroU32::new(100));
    }

    #[test]
    fn rate_limit_is_validated_and_zero_disables_it() {
        let mut env = Env::from_pairs([("RATE_LIMIT_PER_MINUTE", "0")]);
        assert_eq!(
            GatewayConfig::from_env(&mut env).rate_limit_per_minute,
            None
        );
        let mut env = Env::from_pairs([("RATE_LIMIT_PER_MINUTE", "lots")]);
        let _ = GatewayConfig::from_env(&mut env);
        assert_eq!(env.issues()[0].variable, "RATE_LIMIT_PER_MINUTE");
    }
}
