//! The transactional outbox.
//!
//! Each producing service includes [`migration::CreateOutbox`] in its migrator and calls
//! [`enqueue`] inside the transaction that changes state. Rows are ordered by `seq` (a
//! database-assigned sequence), which is the publication order.

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set};

use crate::envelope::Envelope;

/// The `outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// Publication order.
        #[sea_orm(primary_key)]
        pub seq: i64,
        /// The event id (`Envelope::id`).
        #[sea_orm(unique)]
        pub event_id: Uuid,
        pub event_type: String,
        pub subject: String,
        /// The whole envelope as JSON.
        pub envelope: Json,
        pub created_at: DateTimeUtc,
        /// Set by the relay once the bus has the event.
        pub published_at: Option<DateTimeUtc>,
        /// Publication attempts so far (for backoff and alerting).
        pub attempts: i32,
        pub last_error: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Writes `envelope` to the outbox through `conn` (pass the open transaction).
pub async fn enqueue<C: ConnectionTrait>(conn: &C, envelope: &Envelope) -> Result<(), DbErr> {
    let json = serde_json::to_value(envelope).map_err(|e| DbErr::Json(e.to_string()))?;
    entity::ActiveModel {
        event_id: Set(envelope.id),
        event_type: Set(envelope.event_type.clone()),
        subject: Set(envelope.subject.clone()),
        envelope: Set(json),
        created_at: Set(envelope.time),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Migrations of the outbox table, to be listed in each producing service's migrator.
pub mod migration {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct CreateOutbox;

    impl MigrationName for CreateOutbox {
        fn name(&self) -> &str {
            "m20261126_000100_create_outbox"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateOutbox {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("outbox")
                        .if_not_exists()
                        .col(big_pk_auto("seq"))
                        .col(uuid_uniq("event_id"))
                        .col(string("event_type"))
                        .col(string("subject"))
                        .col(json_binary("envelope"))
                        .col(timestamp_with_time_zone("created_at"))
                        .col(timestamp_with_time_zone_null("published_at"))
                        .col(integer("attempts").default(0))
                        .col(text_null("last_error"))
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("outbox_pending")
                        .table("outbox")
                        .col("published_at")
                        .col("seq")
                        .if_not_exists()
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("outbox").to_owned())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::UserRegistered;
    use sea_orm::{EntityTrait, QueryOrder, TransactionTrait};
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(migration::CreateOutbox)]
        }
    }

    fn event(n: u8) -> Envelope {
        Envelope::new(
            "test-service",
            &UserRegistered {
                user_id: uuid::Uuid::now_v7(),
                email: format!("u{n}@example.com"),
                name: "U".into(),
                role: "user".into(),
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn enqueued_events_keep_order_and_roll_back_with_their_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = platform_db::connect(&platform_db::DatabaseConfig::sqlite(dir.path()), "outbox")
            .await
            .unwrap();
        Migrator::up(&db, None).await.unwrap();

        let (a, b, c) = (event(1), event(2), event(3));
        let txn = db.begin().await.unwrap();
        enqueue(&txn, &a).await.unwrap();
        enqueue(&txn, &b).await.unwrap();
        txn.commit().await.unwrap();

        let txn = db.begin().await.unwrap();
        enqueue(&txn, &c).await.unwrap();
        txn.rollback().await.unwrap();

        let rows = entity::Entity::find()
            .order_by_asc(entity::Column::Seq)
            .all(&db)
            .await
            .unwrap();
        let ids: Vec<_> = rows.iter().map(|r| r.event_id).collect();
        assert_eq!(ids, [a.id, b.id]);
        let stored: Envelope = serde_json::from_value(rows[0].envelope.clone()).unwrap();
        assert_eq!(stored, a);
        assert_eq!(stored.event_type, "user.registered");
        assert!(rows.iter().all(|r| r.published_at.is_none()));
    }

    #[test]
    fn envelope_serialises_cloudevents_names() {
        let json = serde_json::to_value(event(1)).unwrap();
        for key in [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "subject",
            "datacontenttype",
            "data",
            "schema_version",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        let envelope: Envelope = serde_json::from_value(json).unwrap();
        let payload = envelope.decode::<UserRegistered>().unwrap().unwrap();
        assert_eq!(payload.email, "u1@example.com");
    }
}
