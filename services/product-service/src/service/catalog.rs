//! The catalog as administrators and shoppers see it: cached reads, full-text search, and the
//! writes (create, update, archive, stock) that emit their events and drop stale cache
//! entries.

use platform_events::catalogue::{ProductArchived, ProductCreated, ProductUpdated};
use platform_events::outbox;
use platform_http::{Page, PageRequest};
use platform_money::Money;
use sea_orm::DbErr;

use super::{Catalog, CatalogError, InventoryEvents};
use crate::domain::{
    Category, Description, ImageUrl, Product, ProductFilter, ProductId, ProductName, SearchTerms,
    Sku, Stock, now,
};
use crate::repo::products::{self, StockChange};
use crate::view::ProductView;

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

impl Catalog {
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
