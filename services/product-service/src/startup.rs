//! Wiring: builds the service from its configuration and runs it.

use platform_auth::service_identity::ServiceIdentity;
use platform_auth::{Jwt, Revocations};
use platform_cache::{CacheConfig, LayeredCache};
use platform_config::Env;
use platform_db::DatabaseCheck;
use platform_events::Relay;
use platform_events::audit::AuditPublisher;
use platform_http::{BoxError, CancellationToken, Metrics, Readiness, Server, ServiceParts};
use platform_redis::{RedisCheck, RedisPool};
use sea_orm::DatabaseConnection;

use crate::config::ProductServiceConfig;
use crate::http::AppState;
use crate::migration::Migrator;
use crate::service::{Caches, Catalog, CatalogSettings};

/// A built, bound product service.
pub struct Application {
    server: Server,
    db: DatabaseConnection,
    relay: Relay,
    /// Publishes the service's audit records to the event bus.
    audit_publisher: AuditPublisher,
    catalog: Catalog,
    /// Applies the other services' token revocations while the service runs.
    revocations: Revocations,
    sweep_interval: std::time::Duration,
}

fn caches(config: &ProductServiceConfig, redis: Option<&RedisPool>, metrics: &Metrics) -> Caches {
    let name = &config.server.service_name;
    let cache = |label: &'static str, ttl| {
        let mut cache = CacheConfig::new(label, ttl);
        cache.l1_capacity = config.cache.l1_capacity;
        cache.l2 = redis.cloned();
        cache.key_prefix = format!("{name}:{label}");
        cache.enabled = config.cache.enabled;
        cache
    };
    Caches {
        products: LayeredCache::new(cache("products", config.cache.product_ttl), metrics),
        lists: LayeredCache::new(cache("product_lists", config.cache.list_ttl), metrics),
    }
}

impl Application {
    /// Connects and migrates the database, seeds the demo catalog when asked, binds HTTP and
    /// gRPC.
    pub async fn build(config: ProductServiceConfig) -> Result<Self, BoxError> {
        let name = config.server.service_name.clone();
        let mut db = platform_db::connect(&config.database, &name).await?;
        let metrics = Metrics::new(&name);
        platform_db::observe(&mut db, &metrics);
        platform_db::migrate::<Migrator>(&db).await?;

        let redis = config.redis.as_ref().map(RedisPool::new).transpose()?;
        let caches = caches(&config, redis.as_ref(), &metrics);
        let mut readiness = Readiness::new().with("database", DatabaseCheck(db.clone()));
        if let Some(redis) = &redis {
            // Optional: with Redis down the cache reads from the database (`degraded`).
            readiness.add_optional("cache", RedisCheck(redis.clone()));
        }
        let transport = config.events.connect().await?;
        let (audit, audit_publisher) =
            platform_events::audit::bus_audit(&name, transport.clone(), Some(metrics.clone()));
        let relay = Relay::new(db.clone(), transport, &config.events).with_metrics(metrics.clone());
        let catalog = Catalog::new(
            db.clone(),
            caches,
            CatalogSettings {
                reservation_ttl: config.reservation_ttl,
                low_stock_threshold: config.low_stock_threshold,
            },
            &name,
        );
        if config.seed_demo_data {
            let created = catalog.seed(crate::seed::demo_catalog()).await?;
            if created > 0 {
                tracing::info!(products = created, "demo catalog loaded");
            }
        }

        let jwt = Jwt::connect(config.jwt, config.redis.as_ref())?;
        let identity = ServiceIdentity::new(&name, &config.internal)?;
        let server = Server::bind(
            &config.server,
            ServiceParts {
                http: crate::http::api(AppState {
                    catalog: catalog.clone(),
                    jwt: jwt.clone(),
                }),
                grpc: Some(crate::grpc::api(catalog.clone(), identity)),
                readiness,
                metrics,
                audit,
            },
        )
        .await?;
        Ok(Self {
            server,
            db,
            relay,
            audit_publisher,
            catalog,
            sweep_interval: config.sweep_interval,
            revocations: jwt.revocations().clone(),
        })
    }

    /// Releases reservations past their expiry, every `interval`, until `shutdown`.
    async fn sweep(catalog: Catalog, interval: std::time::Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // Batches until none are left, so a backlog clears in one round.
            loop {
                match catalog.release_expired(100).await {
                    Ok(100) => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "releasing expired reservations failed");
                        break;
                    }
                }
            }
        }
    }
}

impl platform_http::Service for Application {
    type Config = ProductServiceConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "PRODUCT_SERVICE_";

    fn config_from_env(env: &mut Env) -> ProductServiceConfig {
        ProductServiceConfig::from_env(env)
    }

    async fn migrate(config: &ProductServiceConfig) -> Result<(), BoxError> {
        Ok(
            platform_db::migrate_only::<Migrator>(&config.database, &config.server.service_name)
                .await?,
        )
    }

    async fn build(config: ProductServiceConfig) -> Result<Self, BoxError> {
        Application::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    /// Serves, relays events, listens for other replicas' cache invalidations and sweeps
    /// expired reservations until `shutdown`, then closes the pool.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        let caches = self.catalog.caches();
        let mut tasks: Vec<_> = [
            caches
                .products
                .start_invalidation_listener(shutdown.clone().cancelled_owned()),
            caches
                .lists
                .start_invalidation_listener(shutdown.clone().cancelled_owned()),
        ]
        .into_iter()
        .flatten()
        .collect();
        tasks.push(tokio::spawn(self.relay.run(shutdown.clone())));
        tasks.extend(self.revocations.start(shutdown.clone().cancelled_owned()));
        tasks.push(tokio::spawn(self.audit_publisher.run(shutdown.clone())));
        tasks.push(tokio::spawn(Self::sweep(
            self.catalog.clone(),
            self.sweep_interval,
            shutdown.clone(),
        )));
        let served = self.server.run_with(shutdown, tasks).await;
        platform_db::close(self.db).await;
        Ok(served?)
    }
}
