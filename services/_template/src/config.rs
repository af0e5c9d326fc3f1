//! The template service's configuration: the common settings, and one of its own.

use std::time::Duration;

use platform_config::Env;
use platform_db::DatabaseConfig;
use platform_http::ServerDefaults;
use platform_service::CommonConfig;

/// Its name and ports. A real service takes its ports from `platform_service::ports`; the
/// template listens on the next free pair and has no gRPC side.
pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "template-service",
    port: 8087,
    grpc_port: 0,
    request_timeout: Duration::from_secs(30),
    per_core: false,
    edge: false,
};

/// The template service's settings: the common ones (it derefs to them) and its own.
#[derive(Debug, Clone)]
pub struct TemplateServiceConfig {
    /// Server, database, Redis (the event bus only), JWT.
    pub common: CommonConfig,
    /// `TEMPLATE_MAX_NAME` (default 100): the longest item name accepted, in characters.
    pub max_name: usize,
}

platform_service::extends_common!(TemplateServiceConfig);

impl TemplateServiceConfig {
    /// Reads the configuration, recording every problem in `env`.
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            common: CommonConfig::from_env(env, DEFAULTS),
            max_name: env.in_range("TEMPLATE_MAX_NAME", 100, 1..=1000),
        }
    }

    /// For tests: loopback, free port, `database`, a known JWT secret.
    pub fn for_tests(database: DatabaseConfig, jwt_secret: &str) -> Self {
        Self {
            common: CommonConfig::for_tests(DEFAULTS, database, jwt_secret),
            max_name: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_own_setting_is_read_and_checked() {
        let mut env = Env::from_pairs([("TEMPLATE_MAX_NAME", "20")]);
        assert_eq!(TemplateServiceConfig::from_env(&mut env).max_name, 20);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        let mut env = Env::from_pairs([("TEMPLATE_MAX_NAME", "0")]);
        let _ = TemplateServiceConfig::from_env(&mut env);
        assert_eq!(env.issues()[0].variable, "TEMPLATE_MAX_NAME");
    }
}
