//! The order service's configuration, read from the environment.

use std::time::Duration;

use platform_config::Env;
use platform_db::DatabaseConfig;
use platform_http::ServerDefaults;
use platform_resilience::BreakerConfig;
use platform_service::{CommonConfig, ports};

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "order-service",
    port: ports::ORDER.http,
    grpc_port: ports::ORDER.grpc,
    request_timeout: Duration::from_secs(30),
    per_core: false,
    edge: false,
};

/// Where the services the saga calls listen, and how calls to them behave.
#[derive(Debug, Clone)]
pub struct ClientsConfig {
    /// `PRODUCT_GRPC_URL` (default `http://127.0.0.1:9082`).
    pub product_url: String,
    /// `PAYMENT_GRPC_URL` (default `http://127.0.0.1:9084`).
    pub payment_url: String,
    /// `ORDER_CALL_TIMEOUT` (default 5s): each gRPC call's deadline.
    pub call_timeout: Duration,
    /// `ORDER_CALL_ATTEMPTS` (default 3): tries of a call that failed transiently, within the
    /// retry budget.
    pub attempts: u32,
    /// Each client's circuit breaker.
    pub breaker: BreakerConfig,
}

/// How checkout sagas run.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// `ORDER_SAGA_DEADLINE` (default 2m): a saga still running forward after this long is
    /// compensated.
    pub deadline: Duration,
    /// `ORDER_SAGA_LEASE` (default 30s): how long a process may go without progress before
    /// another (or its own restart) takes the saga over.
    pub lease: Duration,
    /// `ORDER_SAGA_SCAN_INTERVAL` (default 2s): how often the recovery task looks for
    /// stalled sagas.
    pub scan_interval: Duration,
    /// `ORDER_CHECKOUT_WAIT` (default 10s): how long `POST /orders` waits for the saga before
    /// answering 202 with the order still in progress.
    pub checkout_wait: Duration,
    /// Test hook: the saga stops dead at this point, as if the process died there.
    #[doc(hidden)]
    pub halt_at: Option<HaltAt>,
}

/// Where a test makes the saga stop dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltAt {
    /// The payment service charged, and nothing of it is recorded yet.
    AfterChargeCall,
}

/// The order service's settings: the common ones (it derefs to them) and its own.
#[derive(Debug, Clone)]
pub struct OrderServiceConfig {
    /// Server, database, Redis (the event bus only), JWT, service identity.
    pub common: CommonConfig,
    pub clients: ClientsConfig,
    pub saga: SagaConfig,
    /// `ORDER_RECONCILE_INTERVAL` (default 5m): how often orders are reconciled with their
    /// payments.
    pub reconcile_interval: Duration,
    /// `ORDER_RECONCILE_WINDOW` (default 24h): how far back ended orders are reconciled.
    pub reconcile_window: Duration,
}

platform_service::extends_common!(OrderServiceConfig);

impl OrderServiceConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let common = CommonConfig::from_env(env, DEFAULTS);
        let clients = ClientsConfig {
            product_url: env.or("PRODUCT_GRPC_URL", ports::PRODUCT.local_grpc()),
            payment_url: env.or("PAYMENT_GRPC_URL", ports::PAYMENT.local_grpc()),
            call_timeout: env.or("ORDER_CALL_TIMEOUT", Duration::from_secs(5)),
            attempts: env.in_range("ORDER_CALL_ATTEMPTS", 3u32, 1..=10),
            breaker: BreakerConfig::default(),
        };
        let saga = SagaConfig {
            deadline: env.or("ORDER_SAGA_DEADLINE", Duration::from_secs(120)),
            lease: env.or("ORDER_SAGA_LEASE", Duration::from_secs(30)),
            scan_interval: env.or("ORDER_SAGA_SCAN_INTERVAL", Duration::from_secs(2)),
            checkout_wait: env.or("ORDER_CHECKOUT_WAIT", Duration::from_secs(10)),
            halt_at: None,
        };
        Self {
            common,
            clients,
            saga,
            reconcile_interval: env.or("ORDER_RECONCILE_INTERVAL", Duration::from_secs(300)),
            reconcile_window: env.or("ORDER_RECONCILE_WINDOW", Duration::from_secs(24 * 3600)),
        }
    }

    /// A configuration for tests: loopback, free ports, a known JWT secret, the given
    /// product and payment gRPC addresses, a short lease and scan interval.
    pub fn for_tests(
        database: DatabaseConfig,
        jwt_secret: &str,
        product_url: String,
        payment_url: String,
    ) -> Self {
        Self {
            // Tests sign service tokens with the one test secret too.
            common: CommonConfig::for_tests(DEFAULTS, database, jwt_secret),
            clients: ClientsConfig {
                product_url,
                payment_url,
                call_timeout: Duration::from_secs(5),
                attempts: 3,
                breaker: BreakerConfig {
                    window: Duration::from_secs(10),
                    window_size: 20,
                    min_requests: 3,
                    failure_rate: 0.5,
                    open_for: Duration::from_secs(5),
                    half_open_probes: 1,
                },
            },
            saga: SagaConfig {
                deadline: Duration::from_secs(60),
                lease: Duration::from_secs(2),
                scan_interval: Duration::from_millis(200),
                checkout_wait: Duration::from_secs(10),
                halt_at: None,
            },
            // Tests run passes themselves (`POST /api/v1/admin/orders/reconciliation`).
            reconcile_interval: Duration::from_secs(3600),
            reconcile_window: Duration::from_secs(24 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_the_local_services() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = OrderServiceConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(config.server.port, 8083);
        assert_eq!(config.clients.product_url, "http://127.0.0.1:9082");
        assert_eq!(config.clients.payment_url, "http://127.0.0.1:9084");
        assert_eq!(config.saga.lease, Duration::from_secs(30));
    }

    #[test]
    fn durations_are_read_and_checked() {
        let mut env = Env::from_pairs([("ORDER_SAGA_LEASE", "5s"), ("ORDER_CALL_TIMEOUT", "soon")]);
        let config = OrderServiceConfig::from_env(&mut env);
        assert_eq!(config.saga.lease, Duration::from_secs(5));
        assert_eq!(env.issues()[0].variable, "ORDER_CALL_TIMEOUT");
    }
}
