//! Idempotent consumers: each effect of an event is applied once, however often it arrives.
//!
//! Delivery is at least once, so a consumer records the ids of the events it has handled in
//! its own database, **in the same transaction as the handler's effect**: either both commit,
//! or neither does and the redelivery does the work. [`first_time`] is that record.
//!
//! ```ignore
//! let txn = db.begin().await?;
//! if idempotency::first_time(&txn, "notification-service", envelope.id).await? {
//!     apply_the_effect(&txn, &envelope).await?;
//! }
//! txn.commit().await?;
//! ```

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, TryInsertResult,
};
use uuid::Uuid;

/// The `processed_events` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One event a consumer has handled.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processed_events")]
    pub struct Model {
        /// Who handled it: the name passed to [`super::first_time`], usually the service's.
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        /// The envelope's `id`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: Uuid,
        /// When it was first handled.
        pub processed_at: DateTimeUtc,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Records that `consumer` handles `event_id`; `false` when it already did (skip the effect).
/// Call it inside the transaction that applies the effect.
pub async fn first_time<C: ConnectionTrait>(
    conn: &C,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, DbErr> {
    let inserted = entity::Entity::insert(entity::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(event_id),
        processed_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(conn)
    .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
}

/// Deletes the records of events first handled before `before`; how many. An event
/// redelivered after that would be handled again, so `before` must lie further back than any
/// redelivery can (`EVENTS_RETENTION`, at least an hour).
pub async fn prune<C: ConnectionTrait>(conn: &C, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let deleted = entity::Entity::delete_many()
        .filter(entity::Column::ProcessedAt.lt(before))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected)
}

/// The migration of `processed_events`, to be listed in each consuming service's migrator.
pub mod migration {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    /// Creates the `processed_events` table, keyed by consumer and event id.
    pub struct CreateProcessedEvents;

    impl MigrationName for CreateProcessedEvents {
        fn name(&self) -> &str {
            "m20261126_000101_create_processed_events"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateProcessedEvents {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("processed_events")
                        .if_not_exists()
                        .col(string("consumer"))
                        .col(uuid("event_id"))
                        .col(timestamp_with_time_zone("processed_at"))
                        .primary_key(Index::create().col("consumer").col("event_id"))
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("processed_events").to_owned())
                .await
        }
    }
}
