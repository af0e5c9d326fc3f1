//! The product service, declared: its configuration, schema and Redis use (a cache), and
//! the parts it builds on the kit (the caches, the catalog, the sweeper, the APIs).

use platform_http::BoxError;
use platform_service::{Apis, Declare, Kit, RedisUse};

use crate::config::{DEFAULTS, ProductServiceConfig};
use crate::http::AppState;
use crate::service::{Catalog, CatalogSettings};

/// The product service.
pub struct ProductService;

/// A built, bound product service.
pub type Application = platform_service::Application<ProductService>;

impl Declare for ProductService {
    type Config = ProductServiceConfig;
    type Migrator = crate::migration::Migrator;
    const DEFAULTS: platform_http::ServerDefaults = DEFAULTS;
    const ENV_PREFIX: &'static str = "PRODUCT_SERVICE_";
    const REDIS: RedisUse = RedisUse::Cache;

    /// Builds the catalog behind its caches, seeds the demo catalog when asked, relays
    /// events, listens for other replicas' cache invalidations and sweeps expired
    /// reservations.
    async fn build(config: ProductServiceConfig, kit: &mut Kit) -> Result<(Self, Apis), BoxError> {
        let caches = config.cache.caches(kit.name(), kit.redis(), kit.metrics());
        let settings = CatalogSettings {
            reservation_ttl: config.reservation_ttl,
            low_stock_threshold: config.low_stock_threshold,
        };
        let catalog = Catalog::new(kit.db().clone(), caches, settings, kit.name());
        if config.seed_demo_data {
            let created = catalog.seed(crate::seed::demo_catalog()).await?;
            if created > 0 {
                tracing::info!(products = created, "demo catalog loaded");
            }
        }
        kit.relay();
        let caches = catalog.caches().clone();
        kit.spawns(move |stop| {
            let listen = || stop.clone().cancelled_owned();
            [
                caches.products.start_invalidation_listener(listen()),
                caches.lists.start_invalidation_listener(listen()),
            ]
            .into_iter()
            .flatten()
        });
        let (sweeper, interval) = (catalog.clone(), config.sweep_interval);
        kit.task(move |stop| crate::sweep::run(sweeper, interval, stop));
        let http = crate::http::api(AppState {
            catalog: catalog.clone(),
            jwt: kit.jwt().clone(),
        });
        let grpc = Some(crate::grpc::api(catalog, kit.identity()?));
        Ok((Self, Apis { http, grpc }))
    }
}
