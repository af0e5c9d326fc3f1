//! The product service's configuration, read from the environment.

use std::time::Duration;

use platform_cache::{CacheConfig, LayeredCache};
use platform_config::Env;
use platform_db::DatabaseConfig;
use platform_http::{Metrics, ServerDefaults};
use platform_redis::RedisPool;
use platform_service::{CommonConfig, ports};

use crate::service::Caches;

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "product-service",
    port: ports::PRODUCT.http,
    grpc_port: ports::PRODUCT.grpc,
    request_timeout: Duration::from_secs(30),
    per_core: false,
    edge: false,
};

/// How reads are cached.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `CACHE_ENABLED`: `false` sends every read to the database (benchmarks, debugging).
    pub enabled: bool,
    /// `CACHE_TTL`: how long one product stays cached.
    pub product_ttl: Duration,
    /// `CACHE_LIST_TTL`: how long a list page stays cached (any write drops them all).
    pub list_ttl: Duration,
    /// `CACHE_L1_CAPACITY`: entries kept in process, per cache.
    pub l1_capacity: u64,
}

impl CacheSettings {
    /// The product and list caches of the service `name`, with `redis` as their second layer
    /// and invalidation channel when set.
    pub fn caches(&self, name: &str, redis: Option<&RedisPool>, metrics: &Metrics) -> Caches {
        let cache = |label: &'static str, ttl| {
            let mut cache = CacheConfig::new(label, ttl);
            cache.l1_capacity = self.l1_capacity;
            cache.l2 = redis.cloned();
            cache.key_prefix = format!("{name}:{label}");
            cache.enabled = self.enabled;
            cache
        };
        Caches {
            products: LayeredCache::new(cache("products", self.product_ttl), metrics),
            lists: LayeredCache::new(cache("product_lists", self.list_ttl), metrics),
        }
    }
}

/// The product service's settings: the common ones (it derefs to them) and its own.
#[derive(Debug, Clone)]
pub struct ProductServiceConfig {
    /// Server, database, Redis (the cache's second layer and invalidation channel when set;
    /// also the event bus then), JWT, service identity.
    pub common: CommonConfig,
    pub cache: CacheSettings,
    /// `RESERVATION_TTL`: how long an uncommitted reservation holds stock (default 15m).
    pub reservation_ttl: Duration,
    /// `RESERVATION_SWEEP_INTERVAL`: how often expired reservations are looked for.
    pub sweep_interval: Duration,
    /// `LOW_STOCK_THRESHOLD`: `inventory.low` fires below this many available units.
    pub low_stock_threshold: i64,
    /// `SEED_DEMO_DATA`: load the demo catalog into an empty database (default: on with the
    /// embedded SQLite database, off with `DATABASE_URL`).
    pub seed_demo_data: bool,
}

platform_service::extends_common!(ProductServiceConfig);

impl ProductServiceConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let common = CommonConfig::from_env(env, DEFAULTS);
        let seed_default = common.database.url.is_none();
        Self {
            common,
            cache: CacheSettings {
                enabled: env.or("CACHE_ENABLED", true),
                product_ttl: env.or("CACHE_TTL", Duration::from_secs(300)),
                list_ttl: env.or("CACHE_LIST_TTL", Duration::from_secs(60)),
                l1_capacity: env.in_range("CACHE_L1_CAPACITY", 10_000, 1..=10_000_000),
            },
            reservation_ttl: env.or("RESERVATION_TTL", Duration::from_secs(15 * 60)),
            sweep_interval: env.or("RESERVATION_SWEEP_INTERVAL", Duration::from_secs(30)),
            low_stock_threshold: env.in_range("LOW_STOCK_THRESHOLD", 5, 0..=1_000_000_000),
            seed_demo_data: env.or("SEED_DEMO_DATA", seed_default),
        }
    }

    /// A configuration for tests: loopback, free ports, a known JWT secret, no demo data.
    pub fn for_tests(database: DatabaseConfig, jwt_secret: &str) -> Self {
        Self {
            // Tests sign service tokens with the one test secret too.
            common: CommonConfig::for_tests(DEFAULTS, database, jwt_secret),
            cache: CacheSettings {
                enabled: true,
                product_ttl: Duration::from_secs(300),
                list_ttl: Duration::from_secs(60),
                l1_capacity: 10_000,
            },
            reservation_ttl: Duration::from_secs(15 * 60),
            sweep_interval: Duration::from_secs(30),
            low_stock_threshold: 5,
            seed_demo_data: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_specification() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = ProductServiceConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(config.server.port, 8082);
        assert_eq!(config.reservation_ttl, Duration::from_secs(900));
        assert!(config.cache.enabled);
        assert!(
            config.seed_demo_data,
            "embedded mode seeds the demo catalog"
        );
    }

    #[test]
    fn bad_values_are_reported() {
        let mut env = Env::from_pairs([
            ("RESERVATION_TTL", "soon"),
            ("LOW_STOCK_THRESHOLD", "-1"),
            ("CACHE_ENABLED", "maybe"),
        ]);
        let _ = ProductServiceConfig::from_env(&mut env);
        let variables: Vec<_> = env.issues().iter().map(|i| i.variable.as_str()).collect();
        assert!(variables.contains(&"RESERVATION_TTL"), "{variables:?}");
        assert!(variables.contains(&"LOW_STOCK_THRESHOLD"), "{variables:?}");
        assert!(variables.contains(&"CACHE_ENABLED"), "{variables:?}");
    }
}
