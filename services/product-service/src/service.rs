//! The product service's use cases: the catalog (create, update, archive, read, list,
//! search), stock administration, and the reservations the order saga relies on. HTTP and
//! gRPC both call these; neither holds business rules.
//!
//! Every write commits its events through the outbox in the same transaction, then drops the
//! affected cache entries (here and, through Redis, on every other replica).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use platform_cache::LayeredCache;
use platform_events::catalogue::{
    InventoryChanged, InventoryLow, ProductArchived, ProductCreated, ProductUpdated,
};
use platform_events::{Envelope, Event, outbox};
use platform_http::{Page, PageRequest};
use platform_money::Money;
use sea_orm::{DatabaseConnection, DbErr};

use crate::domain::{
    Category, Description, ImageUrl, Line, OrderId, Product, ProductFilter, ProductId, ProductName,
    Quantity, Reservation, ReservationState, SearchTerms, Sku, Stock, now,
};
use crate::repo::products::{self, Settlement, StockChange};
use crate::repo::reservations;
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

/// A new product, validated.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub category: Category,
    pub price: Money,
    pub stock: Stock,
    pub image_url: Option<ImageUrl>,
}

/// A change of catalog fields, validated; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProductChange {
    pub sku: Option<Sku>,
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub category: Option<Category>,
    pub price: Option<Money>,
    /// `Some(None)` removes the image.
    pub image_url: Option<Option<ImageUrl>>,
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

    // --- reads ---

    /// An active product.
    pub async fn get(&self, id: ProductId) -> Result<ProductView, CatalogError> {
        let db = &self.db;
        self.caches
            .products
            .get_or_load(&Self::product_key(id), || async move {
                let product = products::find(db, id).await?;
                Ok::<_, CatalogError>(
                    product
                        .filter(|p| !p.archived)
                        .map(|p| ProductView::from(&p)),
                )
            })
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// One page of the active catalog.
    pub async fn list(
        &self,
        filter: &ProductFilter,
        page: PageRequest,
    ) -> Result<Page<ProductView>, CatalogError> {
        let key = format!(
            "{}&page={}&per_page={}",
            filter.cache_key(),
            page.page(),
            page.per_page()
        );
        let db = &self.db;
        self.caches
            .lists
            .get_or_load(&key, || async move {
                let (items, total) = products::list(db, filter, page).await?;
                Ok::<_, CatalogError>(
                    page.into_page(items.iter().map(ProductView::from).collect(), total),
                )
            })
            .await
    }

    /// Full-text search; not cached (the query space is unbounded).
    pub async fn search(
        &self,
        terms: &SearchTerms,
        page: PageRequest,
    ) -> Result<Page<ProductView>, CatalogError> {
        // Nothing to look for (no letter or digit): nothing matches.
        if terms.is_empty() {
            return Ok(page.into_page(Vec::new(), 0));
        }
        let (items, total) = products::search(&self.db, terms, page).await?;
        Ok(page.into_page(items.iter().map(ProductView::from).collect(), total))
    }

    /// Current products by id, archived included, straight from the database (prices for
    /// an order must not be stale).
    pub async fn products(&self, ids: &[ProductId]) -> Result<Vec<Product>, CatalogError> {
        Ok(products::find_many(&self.db, ids).await?)
    }

    // --- catalog writes ---

    pub async fn create(&self, new: NewProduct) -> Result<ProductView, CatalogError> {
        let at = now();
        let product = Product {
            id: ProductId::generate(),
            sku: new.sku,
            name: new.name,
            description: new.description,
            category: new.category,
            price: new.price,
            stock: new.stock.get(),
            reserved: 0,
            image_url: new.image_url,
            archived: false,
            created_at: at,
            updated_at: at,
        };
        let event = self.envelope(&ProductCreated {
            product_id: product.id.as_uuid(),
            sku: product.sku.to_string(),
            name: product.name.to_string(),
            category: product.category.to_string(),
            price_amount: product.price.amount(),
            currency: product.price.currency().to_string(),
            stock: product.stock,
        })?;
        let txn = platform_db::begin_write(&self.db).await?;
        products::insert(&txn, &product)
            .await
            .map_err(sku_conflict)?;
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        self.invalidate(vec![product.id]).await;
        tracing::info!(product_id = %product.id, sku = %product.sku, "product created");
        Ok(ProductView::from(&product))
    }

    pub async fn update(
        &self,
        id: ProductId,
        change: ProductChange,
    ) -> Result<ProductView, CatalogError> {
        let txn = platform_db::begin_write(&self.db).await?;
        if !products::lock(&txn, id).await? {
            return Err(CatalogError::NotFound);
        }
        let mut product = products::find(&txn, id)
            .await?
            .filter(|p| !p.archived)
            .ok_or(CatalogError::NotFound)?;
        let mut changed = Vec::new();
        macro_rules! apply {
            ($field:ident) => {
                if let Some(value) = change.$field {
                    if product.$field != value {
                        product.$field = value;
                        changed.push(stringify!($field).to_owned());
                    }
                }
            };
        }
        apply!(sku);
        apply!(name);
        apply!(description);
        apply!(category);
        apply!(price);
        apply!(image_url);
        if changed.is_empty() {
            return Ok(ProductView::from(&product));
        }
        product.updated_at = now();
        if !products::update_details(&txn, &product)
            .await
            .map_err(sku_conflict)?
        {
            return Err(CatalogError::NotFound);
        }
        let event = self.envelope(&ProductUpdated {
            product_id: product.id.as_uuid(),
            sku: product.sku.to_string(),
            name: product.name.to_string(),
            category: product.category.to_string(),
            price_amount: product.price.amount(),
            currency: product.price.currency().to_string(),
            changed,
        })?;
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        self.invalidate(vec![id]).await;
        tracing::info!(product_id = %id, "product updated");
        Ok(ProductView::from(&product))
    }

    /// Withdraws a product from the catalog. Archiving twice is not an error.
    pub async fn archive(&self, id: ProductId) -> Result<(), CatalogError> {
        let txn = platform_db::begin_write(&self.db).await?;
        if !products::archive(&txn, id, now()).await? {
            return match products::find(&txn, id).await? {
                Some(_) => Ok(()),
                None => Err(CatalogError::NotFound),
            };
        }
        outbox::enqueue(
            &txn,
            &self.envelope(&ProductArchived {
                product_id: id.as_uuid(),
            })?,
        )
        .await?;
        txn.commit().await?;
        self.invalidate(vec![id]).await;
        tracing::info!(product_id = %id, "product archived");
        Ok(())
    }

    /// Sets or adjusts stock; never below what is reserved.
    pub async fn change_stock(
        &self,
        id: ProductId,
        change: StockChange,
    ) -> Result<ProductView, CatalogError> {
        let txn = platform_db::begin_write(&self.db).await?;
        // Availability before, so that only a drop raises `inventory.low`.
        let before = products::find(&txn, id).await?.map(|p| p.available());
        let changed = products::change_stock(&txn, id, change, now()).await?;
        let product = products::find(&txn, id)
            .await?
            .filter(|p| !p.archived)
            .ok_or(CatalogError::NotFound)?;
        if !changed {
            let wanted = match change {
                StockChange::Set(stock) => stock,
                StockChange::Adjust(delta) => product.stock.saturating_add(delta),
            };
            if wanted > Stock::MAX {
                return Err(CatalogError::AboveMaximum(Stock::MAX));
            }
            return Err(CatalogError::BelowReserved {
                reserved: product.reserved,
            });
        }
        let reason = match change {
            StockChange::Set(_) => "set",
            StockChange::Adjust(_) => "adjusted",
        };
        let dropped = before.is_none_or(|available| product.available() < available);
        let mut events = InventoryEvents::default();
        self.inventory_events(&mut events, &product, reason, None, dropped)?;
        for event in &events.0 {
            outbox::enqueue(&txn, event).await?;
        }
        txn.commit().await?;
        self.invalidate(vec![id]).await;
        tracing::info!(product_id = %id, stock = product.stock, "stock changed");
        Ok(ProductView::from(&product))
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

    // --- reservations ---

    /// Reserves every line or none. Idempotent per order: a repeat returns the existing
    /// reservation. Lines naming one product twice are merged.
    pub async fn reserve(
        &self,
        order_id: OrderId,
        lines: &[Line],
    ) -> Result<Reservation, CatalogError> {
        let lines = merge_lines(lines)?;
        let at = now();
        let expires_at = at
            + chrono::Duration::from_std(self.settings.reservation_ttl)
                .unwrap_or(chrono::Duration::minutes(15));
        let txn = platform_db::begin_write(&self.db).await?;
        // The reservation row first: its primary key makes a concurrent duplicate fail here.
        if let Err(error) =
            reservations::insert(&txn, order_id, ReservationState::Reserved, expires_at, at).await
        {
            drop(txn);
            if !platform_db::is_unique_violation(&error) {
                return Err(error.into());
            }
            let existing = reservations::find(&self.db, order_id)
                .await?
                .ok_or(CatalogError::NoReservation(order_id))?;
            return match existing.state {
                ReservationState::Reserved => Ok(existing),
                settled => Err(CatalogError::AlreadySettled(order_id, settled.as_str())),
            };
        }
        // The lines before the products: a product's row stays locked from its update to the
        // commit, and every checkout of it waits for that lock.
        reservations::insert_lines(&txn, order_id, &lines).await?;
        let mut events = InventoryEvents::default();
        for line in &lines {
            let quantity = i64::from(line.quantity.get());
            let Some(product) =
                products::reserve_units(&txn, line.product_id, quantity, at).await?
            else {
                let exists = products::find(&txn, line.product_id)
                    .await?
                    .is_some_and(|p| !p.archived);
                return Err(if exists {
                    CatalogError::InsufficientStock(line.product_id)
                } else {
                    CatalogError::UnknownProduct(line.product_id)
                });
            };
            self.inventory_events(&mut events, &product, "reserved", Some(order_id), true)?;
        }
        for event in &events.0 {
            outbox::enqueue(&txn, event).await?;
        }
        txn.commit().await?;
        let touched = lines.iter().map(|l| l.product_id).collect();
        self.invalidate(touched).await;
        tracing::info!(order_id = %order_id, lines = lines.len(), "stock reserved");
        Ok(Reservation {
            order_id,
            state: ReservationState::Reserved,
            lines,
            expires_at,
        })
    }

    /// Gives the reserved units back. Idempotent; releasing an order never reserved records
    /// the release, so a Reserve arriving late for it is refused instead of holding stock.
    pub async fn release(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.settle(order_id, ReservationState::Released, "released")
            .await
    }

    /// Turns the reservation into a sale. Idempotent.
    pub async fn commit(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.settle(order_id, ReservationState::Committed, "committed")
            .await
    }

    /// Takes a committed sale back: its units return to stock (an order cancelled before it
    /// shipped). Idempotent.
    pub async fn restock(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.settle(order_id, ReservationState::Returned, "returned")
            .await
    }

    async fn settle(
        &self,
        order_id: OrderId,
        to: ReservationState,
        reason: &str,
    ) -> Result<Reservation, CatalogError> {
        let at = now();
        let (from, settlement) = match to {
            ReservationState::Committed => (ReservationState::Reserved, Settlement::Sell),
            ReservationState::Returned => (ReservationState::Committed, Settlement::Return),
            _ => (ReservationState::Reserved, Settlement::Release),
        };
        let txn = platform_db::begin_write(&self.db).await?;
        let Some(mut reservation) = reservations::transition(&txn, order_id, from, to, at).await?
        else {
            // Not held (anymore): a repeat, a conflicting settlement, or an unknown order.
            drop(txn);
            return match reservations::find(&self.db, order_id).await? {
                Some(existing) => match existing.state.transition(to) {
                    Ok(_) => Ok(existing),
                    Err(state) => Err(CatalogError::AlreadySettled(order_id, state.as_str())),
                },
                None if to == ReservationState::Released => {
                    self.record_early_release(order_id, at).await
                }
                None => Err(CatalogError::NoReservation(order_id)),
            };
        };
        let mut events = InventoryEvents::default();
        for line in &reservation.lines {
            let quantity = i64::from(line.quantity.get());
            let Some(product) =
                products::settle_units(&txn, line.product_id, quantity, settlement, at).await?
            else {
                return Err(CatalogError::Database(Arc::new(DbErr::Custom(format!(
                    "reservation {order_id} holds more of {} than is reserved",
                    line.product_id
                )))));
            };
            self.inventory_events(&mut events, &product, reason, Some(order_id), false)?;
        }
        for event in &events.0 {
            outbox::enqueue(&txn, event).await?;
        }
        txn.commit().await?;
        let touched = reservation.lines.iter().map(|l| l.product_id).collect();
        self.invalidate(touched).await;
        reservation.state = to;
        tracing::info!(order_id = %order_id, state = to.as_str(), "reservation settled");
        Ok(reservation)
    }

    async fn record_early_release(
        &self,
        order_id: OrderId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Reservation, CatalogError> {
        match reservations::insert(&self.db, order_id, ReservationState::Released, at, at).await {
            Ok(()) => Ok(Reservation {
                order_id,
                state: ReservationState::Released,
                lines: Vec::new(),
                expires_at: at,
            }),
            // A Reserve or another Release got there first: answer from what it stored.
            Err(error) if platform_db::is_unique_violation(&error) => {
                Box::pin(self.release(order_id)).await
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Releases up to `limit` reservations past their expiry; returns how many.
    pub async fn release_expired(&self, limit: u64) -> Result<usize, CatalogError> {
        let expired = reservations::expired(&self.db, now(), limit).await?;
        let mut released = 0;
        for order_id in expired {
            match self
                .settle(order_id, ReservationState::Released, "expired")
                .await
            {
                Ok(_) => released += 1,
                // Committed or released meanwhile: nothing to do.
                Err(CatalogError::AlreadySettled(..)) => {}
                Err(error) => return Err(error),
            }
        }
        if released > 0 {
            tracing::info!(released, "expired reservations released");
        }
        Ok(released)
    }

    /// Loads `products` when the catalog is empty (the demo data of embedded mode).
    pub async fn seed(&self, products: Vec<NewProduct>) -> Result<usize, CatalogError> {
        if products::count(&self.db).await? > 0 {
            return Ok(0);
        }
        let mut created = 0;
        for product in products {
            match self.create(product).await {
                Ok(_) => created += 1,
                // Another replica is seeding too.
                Err(CatalogError::SkuTaken) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(created)
    }
}

fn sku_conflict(error: DbErr) -> CatalogError {
    if platform_db::is_unique_violation(&error) {
        CatalogError::SkuTaken
    } else {
        error.into()
    }
}

/// One line per product (quantities added), in product id order: rows are then always
/// locked in the same order, so two reservations can never deadlock on PostgreSQL.
fn merge_lines(lines: &[Line]) -> Result<Vec<Line>, CatalogError> {
    if lines.is_empty() {
        return Err(CatalogError::EmptyReservation);
    }
    let mut merged: BTreeMap<ProductId, u32> = BTreeMap::new();
    for line in lines {
        let total = merged.entry(line.product_id).or_default();
        *total = total.saturating_add(line.quantity.get());
    }
    Ok(merged
        .into_iter()
        .filter_map(|(product_id, units)| {
            Quantity::new(units).ok().map(|quantity| Line {
                product_id,
                quantity,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_merged_per_product_and_ordered() {
        let a = ProductId::generate();
        let b = ProductId::generate();
        let line = |product_id, units| Line {
            product_id,
            quantity: Quantity::new(units).unwrap(),
        };
        let merged = merge_lines(&[line(b, 1), line(a, 2), line(b, 3)]).unwrap();
        assert_eq!(merged, vec![line(a, 2), line(b, 4)]);
        assert!(matches!(
            merge_lines(&[]),
            Err(CatalogError::EmptyReservation)
        ));
    }
}
