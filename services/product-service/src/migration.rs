//! The product database's schema, as versioned migrations applied at start-up. Full-text
//! search is the one backend-specific part: a weighted `tsvector` column with a GIN index on
//! PostgreSQL, an FTS5 table kept in step by triggers on SQLite.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateProducts),
            Box::new(CreateSearch),
            Box::new(CreateReservations),
            Box::new(platform_events::outbox::migration::CreateOutbox),
        ]
    }
}

struct CreateProducts;

impl MigrationName for CreateProducts {
    fn name(&self) -> &str {
        "m20261126_000001_create_products"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateProducts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("products")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    // Stored upper-case, so the unique index is case-insensitive.
                    .col(string_uniq("sku"))
                    .col(string("name"))
                    .col(text("description"))
                    .col(string("category"))
                    .col(big_integer("price_amount"))
                    .col(string_len("currency", 3))
                    .col(big_integer("stock"))
                    .col(big_integer("reserved"))
                    .col(string_null("image_url"))
                    .col(timestamp_with_time_zone_null("archived_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    // The invariant behind "never oversell", enforced by the database itself
                    // whatever the code does: available = stock - reserved >= 0.
                    .check(Expr::col("reserved").gte(0))
                    .check(Expr::col("stock").gte(Expr::col("reserved")))
                    .to_owned(),
            )
            .await?;
        platform_db::create_indexes(
            manager,
            "products",
            &[
                ("products_category", &["category", "created_at"], false),
                ("products_created_at", &["created_at", "id"], false),
                ("products_price", &["price_amount", "id"], false),
                ("products_name", &["name", "id"], false),
            ],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("products").to_owned())
            .await
    }
}

struct CreateSearch;

impl MigrationName for CreateSearch {
    fn name(&self) -> &str {
        "m20261126_000002_create_product_search"
    }
}

/// Name and SKU weigh most, then category, then description. The `simple` configuration (no
/// stemming, no stop words) behaves like SQLite's `unicode61` tokenizer, so both backends
/// find the same products for the same words.
const POSTGRES_SEARCH: &[&str] = &[
    "ALTER TABLE products ADD COLUMN IF NOT EXISTS search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', coalesce(name, '')), 'A') ||
        setweight(to_tsvector('simple', coalesce(sku, '')), 'A') ||
        setweight(to_tsvector('simple', coalesce(category, '')), 'B') ||
        setweight(to_tsvector('simple', coalesce(description, '')), 'C')
    ) STORED",
    "CREATE INDEX IF NOT EXISTS products_search ON products USING GIN (search)",
];

/// The FTS5 rows share the products' rowids, so keeping them in step is by key, not a scan.
const SQLITE_SEARCH: &[&str] = &[
    "CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(
        name, sku, category, description, tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS products_fts_insert AFTER INSERT ON products BEGIN
        INSERT INTO products_fts(rowid, name, sku, category, description)
        VALUES (new.rowid, new.name, new.sku, new.category, new.description);
    END",
    "CREATE TRIGGER IF NOT EXISTS products_fts_update
        AFTER UPDATE OF name, sku, category, description ON products BEGIN
        DELETE FROM products_fts WHERE rowid = old.rowid;
        INSERT INTO products_fts(rowid, name, sku, category, description)
        VALUES (new.rowid, new.name, new.sku, new.category, new.description);
    END",
    "CREATE TRIGGER IF NOT EXISTS products_fts_delete AFTER DELETE ON products BEGIN
        DELETE FROM products_fts WHERE rowid = old.rowid;
    END",
];

#[async_trait::async_trait]
impl MigrationTrait for CreateSearch {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements = match db.get_database_backend() {
            DbBackend::Postgres => POSTGRES_SEARCH,
            _ => SQLITE_SEARCH,
        };
        for statement in statements {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements: &[&str] = match db.get_database_backend() {
            DbBackend::Postgres => &[
                "DROP INDEX IF EXISTS products_search",
                "ALTER TABLE products DROP COLUMN IF EXISTS search",
            ],
            _ => &[
                "DROP TRIGGER IF EXISTS products_fts_insert",
                "DROP TRIGGER IF EXISTS products_fts_update",
                "DROP TRIGGER IF EXISTS products_fts_delete",
                "DROP TABLE IF EXISTS products_fts",
            ],
        };
        for statement in statements {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

struct CreateReservations;

impl MigrationName for CreateReservations {
    fn name(&self) -> &str {
        "m20261126_000003_create_reservations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateReservations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("reservations")
                    .if_not_exists()
                    // One reservation per order: the primary key makes Reserve idempotent.
                    .col(pk_uuid("order_id"))
                    .col(string("state"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        // The sweeper looks for held reservations past their expiry.
        manager
            .create_index(
                Index::create()
                    .name("reservations_expiry")
                    .table("reservations")
                    .col("state")
                    .col("expires_at")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("reservation_lines")
                    .if_not_exists()
                    .col(uuid("order_id"))
                    .col(uuid("product_id"))
                    .col(big_integer("quantity"))
                    .primary_key(Index::create().col("order_id").col("product_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("reservation_lines_reservation")
                            .from("reservation_lines", "order_id")
                            .to("reservations", "order_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("reservation_lines").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("reservations").to_owned())
            .await
    }
}
