//! The payment service's configuration, read from the environment.

use std::sync::Arc;
use std::time::Duration;

use platform_config::{Env, Environment, ExposeSecret, SecretString};
use platform_db::DatabaseConfig;
use platform_http::{BoxError, ServerDefaults};
use platform_service::{CommonConfig, ports};

use crate::fraud::FraudConfig;
use crate::providers::adyen::{AdyenConfig, AdyenProvider};
use crate::providers::sandbox::{self, SandboxProvider};
use crate::providers::stripe::{StripeConfig, StripeProvider};
use crate::providers::{PaymentProvider, Providers};

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "payment-service",
    port: ports::PAYMENT.http,
    grpc_port: ports::PAYMENT.grpc,
    request_timeout: Duration::from_secs(30),
    per_core: false,
    edge: false,
};

/// Which providers, in which order, and their credentials.
#[derive(Debug, Clone)]
pub struct ProvidersConfig {
    /// `PAYMENT_PROVIDERS`: priority order, e.g. `stripe,adyen`. Default: the external
    /// providers that are configured (Stripe first), else `sandbox`.
    pub order: Vec<String>,
    /// `SANDBOX_WEBHOOK_SECRET`: the sandbox's webhook signing secret.
    pub sandbox_secret: SecretString,
    pub stripe: Option<StripeConfig>,
    pub adyen: Option<AdyenConfig>,
}

impl ProvidersConfig {
    pub fn from_env(env: &mut Env, environment: Environment) -> Self {
        let stripe = StripeConfig::from_env(env);
        let adyen = AdyenConfig::from_env(env);
        let sandbox_secret = env
            .secret("SANDBOX_WEBHOOK_SECRET")
            .unwrap_or_else(|| SecretString::from(sandbox::DEV_WEBHOOK_SECRET));
        let default_order: Vec<String> = [("stripe", stripe.is_some()), ("adyen", adyen.is_some())]
            .into_iter()
            .filter(|(_, configured)| *configured)
            .map(|(name, _)| name.to_owned())
            .collect();
        let order = match env.optional_with::<Vec<String>>(
            "PAYMENT_PROVIDERS",
            "a comma-separated list of sandbox, stripe, adyen",
            |raw| {
                let names: Vec<String> = raw
                    .split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
                    .filter(|n| !n.is_empty())
                    .collect();
                let known = names
                    .iter()
                    .all(|n| matches!(n.as_str(), "sandbox" | "stripe" | "adyen"));
                (known && !names.is_empty()).then_some(names)
            },
        ) {
            Some(order) => order,
            None if default_order.is_empty() => vec!["sandbox".to_owned()],
            None => default_order,
        };
        for name in &order {
            let missing = match name.as_str() {
                "stripe" => stripe.is_none().then_some("STRIPE_API_KEY"),
                "adyen" => adyen.is_none().then_some("ADYEN_API_KEY"),
                _ => None,
            };
            if let Some(variable) = missing {
                env.report(
                    variable,
                    format!("set, since PAYMENT_PROVIDERS names {name}"),
                );
            }
        }
        if environment.is_production() && order.iter().any(|n| n == "sandbox") {
            env.report(
                "PAYMENT_PROVIDERS",
                "real providers only in production (not sandbox)",
            );
        }
        Self {
            order,
            sandbox_secret,
            stripe,
            adyen,
        }
    }

    /// The providers, in order.
    pub fn build(&self) -> Result<Providers, BoxError> {
        let mut providers: Vec<Arc<dyn PaymentProvider>> = Vec::new();
        for name in &self.order {
            let provider: Arc<dyn PaymentProvider> = match name.as_str() {
                "stripe" => match &self.stripe {
                    Some(config) => Arc::new(StripeProvider::new(config.clone())?),
                    None => continue,
                },
                "adyen" => match &self.adyen {
                    Some(config) => Arc::new(AdyenProvider::new(config.clone())?),
                    None => continue,
                },
                _ => Arc::new(SandboxProvider::new(SecretString::from(
                    self.sandbox_secret.expose_secret(),
                ))),
            };
            providers.push(provider);
        }
        Ok(Providers::new(providers))
    }
}

/// The payment service's settings: the common ones (it derefs to them) and its own.
#[derive(Debug, Clone)]
pub struct PaymentServiceConfig {
    /// Server, database, Redis (the event bus only), JWT, service identity.
    pub common: CommonConfig,
    pub providers: ProvidersConfig,
    pub fraud: FraudConfig,
    /// `PAYMENT_RECONCILE_INTERVAL` (default 5s): how often the reconciler looks for charges
    /// whose outcome is unknown and refunds left unfinished.
    pub reconcile_interval: Duration,
    /// `PAYMENT_REVIEW_TTL` (default 10m): a payment held by the fraud rules and not decided
    /// by then is declined (keep it below the product service's `RESERVATION_TTL`, so an
    /// approved order still has its stock).
    pub review_ttl: Duration,
    /// `DIRECT_PAYMENTS` (default `true`, `false` in production): whether
    /// `POST /api/v1/payments` charges without an order.
    pub direct_payments: bool,
    /// `ORDER_GRPC_URL` (default `http://127.0.0.1:9083`): the order service, which a direct
    /// charge naming an order is checked against.
    pub order_url: String,
}

platform_service::extends_common!(PaymentServiceConfig);

impl PaymentServiceConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let common = CommonConfig::from_env(env, DEFAULTS);
        let environment = common.server.environment;
        Self {
            common,
            providers: ProvidersConfig::from_env(env, environment),
            fraud: FraudConfig::from_env(env),
            reconcile_interval: env.or("PAYMENT_RECONCILE_INTERVAL", Duration::from_secs(5)),
            review_ttl: env.or("PAYMENT_REVIEW_TTL", crate::service::DEFAULT_REVIEW_TTL),
            direct_payments: env.or("DIRECT_PAYMENTS", !environment.is_production()),
            order_url: env.or("ORDER_GRPC_URL", ports::ORDER.local_grpc()),
        }
    }

    /// A configuration for tests: loopback, free ports, a known JWT secret, the sandbox.
    pub fn for_tests(database: DatabaseConfig, jwt_secret: &str) -> Self {
        Self {
            // Tests sign service tokens with the one test secret too.
            common: CommonConfig::for_tests(DEFAULTS, database, jwt_secret),
            providers: ProvidersConfig {
                order: vec!["sandbox".to_owned()],
                sandbox_secret: SecretString::from(sandbox::DEV_WEBHOOK_SECRET),
                stripe: None,
                adyen: None,
            },
            fraud: FraudConfig::default(),
            reconcile_interval: Duration::from_millis(200),
            review_ttl: crate::service::DEFAULT_REVIEW_TTL,
            direct_payments: true,
            // Nothing listens on the discard port: a test that needs the order service
            // points this at one.
            order_url: "http://127.0.0.1:9".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_sandbox() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = PaymentServiceConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(config.server.port, 8084);
        assert_eq!(config.providers.order, ["sandbox"]);
        assert_eq!(config.providers.build().unwrap().names(), ["sandbox"]);
    }

    #[test]
    fn a_named_provider_must_be_configured_and_known() {
        let mut env = Env::from_pairs([("PAYMENT_PROVIDERS", "stripe,sandbox")]);
        let _ = PaymentServiceConfig::from_env(&mut env);
        assert_eq!(env.issues()[0].variable, "STRIPE_API_KEY");

        let mut env = Env::from_pairs([("PAYMENT_PROVIDERS", "paypal")]);
        let _ = PaymentServiceConfig::from_env(&mut env);
        assert_eq!(env.issues()[0].variable, "PAYMENT_PROVIDERS");
    }

    #[test]
    fn production_refuses_the_sandbox() {
        let mut env = Env::from_pairs([
            ("ENVIRONMENT", "production"),
            (
                "JWT_SECRET",
                "a-production-secret-of-enough-length-0123456789",
            ),
        ]);
        let _ = PaymentServiceConfig::from_env(&mut env);
        assert!(
            env.issues()
                .iter()
                .any(|i| i.variable == "PAYMENT_PROVIDERS"),
            "{:?}",
            env.issues()
        );
    }
}
