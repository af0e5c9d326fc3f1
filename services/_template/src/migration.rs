//! The template service's schema: one table of items.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{pk_uuid, string, timestamp_with_time_zone, uuid};

/// Every migration of the service, oldest first; applied at start-up and by `migrate`.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateItems)]
    }
}

/// Creates `items`.
struct CreateItems;

impl MigrationName for CreateItems {
    fn name(&self) -> &str {
        "m20261206_000001_create_items"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateItems {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("items")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("owner"))
                    .col(string("name"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await
    }
}
