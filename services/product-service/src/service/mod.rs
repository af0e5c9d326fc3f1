//! The product service's use cases: the catalog (create, update, archive, read, list,
//! search), stock administration, and the reservations the order saga relies on. HTTP and
//! gRPC both call these; neither holds business rules.
//!
//! Every write commits its events through the outbox in the same transaction, then drops the
//! affected cache entries (here and, through Redis, on every other replica).
//!
//! This parent holds the service type, its errors, caches and settings, and what every write
//! shares (event envelopes, cache invalidation, inventory events); the use cases live in
//! `catalog` (reads, catalog writes, stock) and `reservations` (the saga's reserve, release,
//! commit and restock).

mod catalog;
mod reservations;

pub use catalog::{NewProduct, ProductChange};

use std::sync::Arc;
use std::time::Duration;

use platform_cache::LayeredCache;
use platform_events::catalogue::{InventoryChanged, InventoryLow};
use platform_events::{Envelope, Event};
use platform_http::Page;
use sea_orm::{DatabaseConnection, DbErr};

use crate::domain::{OrderId, Product, ProductId};
use crate::view::ProductView;

/// Everything a use case can fail with. `Clone`, because a cached load's error is handed to
/// every request waiting on that load.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CatalogError {
    #[error("a product with this SKU already exists")]
    SkuTaken,
    #[error("product not found")]
    NotFound,
    #[error("product {0} not found or archived")]
    UnknownProduct(ProductId),
    #[error("stock would fall below the {reserved} reserved units")]
    BelowReserved { reserved: i64 },
    #[error("stock cannot exceed {0} units")]
    AboveMaximum(i64),
    #[error("not enough units of product {0} available")]
    InsufficientStock(ProductId),
    #[error("the reservation for order {0} was already {1}")]
    AlreadySettled(OrderId, &'static str),
    #[error("no reservation for order {0}")]
    NoReservation(OrderId),
    #[error("a reservation needs at least one line")]
    EmptyReservation,
    #[error("database error: {0}")]
    Database(Arc<DbErr>),
    #[error("cannot encode an event: {0}")]
    Event(Arc<serde_json::Error>),
}

impl From<DbErr> for CatalogError {
    fn from(error: DbErr) -> Self {
        Self::Database(Arc::new(error))
    }
}

impl From<serde_json::Error> for CatalogError {
    fn from(error: serde_json::Error) -> Self {
        Self::Event(Arc::new(error))
    }
}

/// The caches reads go through.
#[derive(Clone)]
pub struct Caches {
    /// One product by id (`None` cached too: repeated probes of a missing id stay cheap).
    pub products: LayeredCache<Option<ProductView>>,
    /// List pages, keyed by filter and page; any write drops them all.
    pub lists: LayeredCache<Page<ProductView>>,
}

/// Tunables of the use cases.
#[derive(Debug, Clone, Copy)]
pub struct CatalogSettings {
    /// How long an uncommitted reservation holds stock.
    pub reservation_ttl: Duration,
    /// `inventory.low` fires when availability drops below this.
    pub low_stock_threshold: i64,
}

/// The use cases over one database. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    caches: Caches,
    settings: CatalogSettings,
    /// The `source` of the events this service emits.
    source: Arc<str>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Inventory events gathered inside a transaction.
#[derive(Default)]
struct InventoryEvents(Vec<Envelope>);

impl Catalog {
    pub fn new(
        db: DatabaseConnection,
        caches: Caches,
        settings: CatalogSettings,
        source: &str,
    ) -> Self {
        Self {
            db,
            caches,
            settings,
            source: Arc::from(source),
        }
    }

    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    /// A transaction that writes. On SQLite it takes the write lock at `BEGIN`, waiting for it
    /// up to the busy timeout: a deferred transaction only asks for the lock at its first
    /// write, after it has read (`update` does; so does an `INSERT` into the FTS-indexed
    /// products table), and SQLite then fails it at once with "database is locked" instead of
    /// waiting whenever another write is in progress. PostgreSQL ignores the mode.
    fn envelope<E: Event>(&self, event: &E) -> Result<Envelope, CatalogError> {
        Ok(Envelope::new(&self.source, event)?)
    }

    fn product_key(id: ProductId) -> String {
        id.to_string()
    }

    /// Drops what a write made stale: the products it touched and every list page.
    async fn invalidate(&self, ids: Vec<ProductId>) {
        for id in ids {
            self.caches
                .products
                .invalidate(&Self::product_key(id))
                .await;
        }
        self.caches.lists.invalidate_all().await;
    }

    /// `inventory.changed`, plus `inventory.low` when availability went down and is now
    /// below the threshold.
    fn inventory_events(
        &self,
        events: &mut InventoryEvents,
        product: &Product,
        reason: &str,
        order_id: Option<OrderId>,
        may_have_dropped: bool,
    ) -> Result<(), CatalogError> {
        events.0.push(self.envelope(&InventoryChanged {
            product_id: product.id.as_uuid(),
            stock: product.stock,
            reserved: product.reserved,
            available: product.available(),
            reason: reason.to_owned(),
            order_id: order_id.map(|id| id.as_uuid()),
        })?);
        if may_have_dropped && product.available() < self.settings.low_stock_threshold {
            events.0.push(self.envelope(&InventoryLow {
                product_id: product.id.as_uuid(),
                sku: product.sku.to_string(),
                available: product.available(),
                threshold: self.settings.low_stock_threshold,
            })?);
        }
        Ok(())
    }
}
