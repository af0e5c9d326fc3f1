//! The store's schema: the event table `platform-events` defines (its `store` module), so
//! that the admin tools and this service agree on it.

use platform_events::store;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// The store's schema.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(store::migration::CreateEventStore)]
    }
}
