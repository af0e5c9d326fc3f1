//! The event store: an append-only audit trail of every published event.
//!
//! Fed by a consumer group that reads every family (the event-store service), queryable by
//! subject, type and time range. Appending is idempotent on the event id, so redeliveries and
//! replays never duplicate an entry; nothing is ever updated or deleted.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TryInsertResult,
};

use crate::envelope::Envelope;

/// The `event_store` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One stored event, with the attributes it is queried by.
    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "event_store")]
    pub struct Model {
        /// The envelope's `id`: appending the same event twice stores it once.
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: Uuid,
        /// The CloudEvents `type`, e.g. `order.created` or `audit.auth.login`.
        pub event_type: String,
        /// The producing service.
        pub source: String,
        /// The aggregate the event is about.
        pub subject: String,
        /// The event's own time.
        pub occurred_at: DateTimeUtc,
        /// When the store received it.
        pub stored_at: DateTimeUtc,
        /// The whole envelope as JSON.
        pub envelope: Json,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Appends an event; `false` when it was already stored.
pub async fn append<C: ConnectionTrait>(conn: &C, envelope: &Envelope) -> Result<bool, DbErr> {
    Ok(append_many(conn, std::slice::from_ref(envelope)).await? > 0)
}

/// Appends events in one statement; how many were new (those already stored are skipped).
pub async fn append_many<C: ConnectionTrait>(
    conn: &C,
    envelopes: &[Envelope],
) -> Result<u64, DbErr> {
    if envelopes.is_empty() {
        return Ok(0);
    }
    let stored_at = Utc::now();
    let rows = envelopes
        .iter()
        .map(|envelope| {
            let json = serde_json::to_value(envelope).map_err(|e| DbErr::Json(e.to_string()))?;
            Ok(entity::ActiveModel {
                event_id: Set(envelope.id),
                event_type: Set(envelope.event_type.clone()),
                source: Set(envelope.source.clone()),
                subject: Set(envelope.subject.clone()),
                occurred_at: Set(envelope.time),
                stored_at: Set(stored_at),
                envelope: Set(json),
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let inserted = entity::Entity::insert_many(rows)
        .on_conflict_do_nothing()
        .exec_without_returning(conn)
        .await?;
    Ok(match inserted {
        TryInsertResult::Inserted(n) => n,
        TryInsertResult::Empty | TryInsertResult::Conflicted => 0,
    })
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events about this aggregate (exact match).
    pub subject: Option<String>,
    /// Only events of this type (exact match, e.g. `order.created`).
    pub event_type: Option<String>,
    /// Only events of this family (`audit`: types `audit.*`).
    pub family: Option<String>,
    /// Inclusive lower bound of the event's time.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound of the event's time.
    pub until: Option<DateTime<Utc>>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

/// One page of matching events in time order (oldest first unless asked otherwise), and the
/// total count.
pub async fn query<C: ConnectionTrait>(
    conn: &C,
    filter: &Filter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<Envelope>, u64), DbErr> {
    let mut select = entity::Entity::find();
    if let Some(subject) = &filter.subject {
        select = select.filter(entity::Column::Subject.eq(subject.as_str()));
    }
    if let Some(event_type) = &filter.event_type {
        select = select.filter(entity::Column::EventType.eq(event_type.as_str()));
    }
    if let Some(family) = &filter.family {
        select = select.filter(entity::Column::EventType.starts_with(format!("{family}.")));
    }
    if let Some(since) = filter.since {
        select = select.filter(entity::Column::OccurredAt.gte(since));
    }
    if let Some(until) = filter.until {
        select = select.filter(entity::Column::OccurredAt.lt(until));
    }
    let total = select.clone().count(conn).await?;
    let order = if filter.newest_first {
        sea_orm::Order::Desc
    } else {
        sea_orm::Order::Asc
    };
    let rows = select
        .order_by(entity::Column::OccurredAt, order.clone())
        .order_by(entity::Column::EventId, order)
        .offset(offset)
        .limit(limit)
        .all(conn)
        .await?;
    let events = rows
        .into_iter()
        .map(|row| serde_json::from_value(row.envelope).map_err(|e| DbErr::Json(e.to_string())))
        .collect::<Result<_, _>>()?;
    Ok((events, total))
}

/// The migration of `event_store`.
pub mod migration {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    /// Creates the `event_store` table with its indexes for the queries of [`super::query`].
    pub struct CreateEventStore;

    impl MigrationName for CreateEventStore {
        fn name(&self) -> &str {
            "m20261126_000102_create_event_store"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateEventStore {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("event_store")
                        .if_not_exists()
                        .col(pk_uuid("event_id"))
                        .col(string("event_type"))
                        .col(string("source"))
                        .col(string("subject"))
                        .col(timestamp_with_time_zone("occurred_at"))
                        .col(timestamp_with_time_zone("stored_at"))
                        .col(json_binary("envelope"))
                        .to_owned(),
                )
                .await?;
            for (name, column) in [
                ("event_store_subject", "subject"),
                ("event_store_type", "event_type"),
            ] {
                manager
                    .create_index(
                        Index::create()
                            .name(name)
                            .table("event_store")
                            .col(column)
                            .col("occurred_at")
                            .if_not_exists()
                            .to_owned(),
                    )
                    .await?;
            }
            manager
                .create_index(
                    Index::create()
                        .name("event_store_time")
                        .table("event_store")
                        .col("occurred_at")
                        .if_not_exists()
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("event_store").to_owned())
                .await
        }
    }
}
