//! The payment service, declared: its configuration, schema and Redis use (the bus only),
//! and the parts it builds on the kit (the providers, the fraud rules, the client of the
//! order service, the use cases with their reconciler, the APIs).

use platform_http::BoxError;
use platform_service::{Apis, Declare, Kit, RedisUse};

use crate::config::{DEFAULTS, PaymentServiceConfig};
use crate::http::AppState;
use crate::orders::OrderBook;
use crate::service::Payments;

/// The payment service, and what others may need of it once built.
pub struct PaymentService {
    /// The order service's address can change after start-up (`platform up`).
    orders: OrderBook,
}

impl PaymentService {
    /// The client of the order service: `platform up` points it at the order service's
    /// gRPC address once that is bound.
    pub fn order_book(&self) -> &OrderBook {
        &self.orders
    }
}

/// A built, bound payment service.
pub type Application = platform_service::Application<PaymentService>;

impl Declare for PaymentService {
    type Config = PaymentServiceConfig;
    type Migrator = crate::migration::Migrator;
    const DEFAULTS: platform_http::ServerDefaults = DEFAULTS;
    const ENV_PREFIX: &'static str = "PAYMENT_SERVICE_";
    const REDIS: RedisUse = RedisUse::Bus;

    /// Builds the providers and the use cases; relays events and resolves unknown charge
    /// outcomes and unfinished refunds.
    async fn build(config: PaymentServiceConfig, kit: &mut Kit) -> Result<(Self, Apis), BoxError> {
        let providers = config.providers.build()?;
        tracing::info!(providers = ?providers.names(), "payment providers configured");
        let identity = kit.identity()?;
        let orders = OrderBook::new(&config.order_url, &identity)?;
        let payments = Payments::new(
            kit.db().clone(),
            providers,
            config.fraud,
            orders.clone(),
            kit.metrics(),
            kit.name(),
        )
        .with_review_ttl(config.review_ttl);
        kit.relay();
        let (reconciling, interval) = (payments.clone(), config.reconcile_interval);
        kit.task(move |stop| reconciling.reconcile(interval, stop));
        let http = crate::http::api(AppState {
            payments: payments.clone(),
            jwt: kit.jwt().clone(),
            direct_payments: config.direct_payments,
        });
        let grpc = Some(crate::grpc::api(payments, identity, kit.audit().clone()));
        Ok((Self { orders }, Apis { http, grpc }))
    }
}
