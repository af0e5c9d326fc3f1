//! The order service, declared: its configuration, schema and Redis use (the bus only), and
//! the parts it builds on the kit (the clients of product and payment, the saga with its
//! recovery task, the reconciler, the consumer of payment events, the APIs).

use platform_events::retention::Table;
use platform_http::BoxError;
use platform_service::{Apis, Declare, Kit, RedisUse};

use crate::clients::Clients;
use crate::config::{DEFAULTS, OrderServiceConfig};
use crate::http::AppState;
use crate::reconcile::Reconciler;
use crate::saga::Saga;
use crate::service::Orders;

/// The order service.
pub struct OrderService;

/// A built, bound order service.
pub type Application = platform_service::Application<OrderService>;

impl Declare for OrderService {
    type Config = OrderServiceConfig;
    type Migrator = crate::migration::Migrator;
    const DEFAULTS: platform_http::ServerDefaults = DEFAULTS;
    const ENV_PREFIX: &'static str = "ORDER_SERVICE_";
    const REDIS: RedisUse = RedisUse::Bus;

    /// Builds the clients, the saga and the reconciler; relays events, recovers stalled
    /// sagas, reconciles orders with payments and consumes payment events.
    async fn build(config: OrderServiceConfig, kit: &mut Kit) -> Result<(Self, Apis), BoxError> {
        let (db, metrics) = (kit.db().clone(), kit.metrics().clone());
        let identity = kit.identity()?;
        let clients = Clients::new(&config.clients, &identity, &metrics)?;
        let window = config.reconcile_window;
        let reconciler = Reconciler::new(db.clone(), clients.clone(), window, &metrics);
        let saga = Saga::new(
            db.clone(),
            clients,
            config.saga.clone(),
            &metrics,
            kit.name(),
        );
        let orders = Orders::new(db.clone(), saga.clone(), kit.name(), kit.audit().clone());
        let consumer_config = kit.consumer_config();
        let group = consumer_config.group.clone();
        let consumer = kit.consumer(consumer_config);
        kit.relay();
        kit.task(move |stop| saga.recover(stop));
        let (interval, reconciling) = (config.reconcile_interval, reconciler.clone());
        kit.task(move |stop| reconciling.run(interval, stop));
        kit.consume(crate::consumers::payment_events(consumer, &orders, group));
        kit.prune(Table::ProcessedEvents);
        let http = crate::http::api(AppState {
            orders,
            reconciler,
            jwt: kit.jwt().clone(),
        });
        let grpc = Some(crate::grpc::api(db, identity));
        Ok((Self, Apis { http, grpc }))
    }
}
