//! The notification database's schema, as versioned migrations applied at start-up.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateNotifications),
            Box::new(platform_events::idempotency::migration::CreateProcessedEvents),
            Box::new(AddTemplate),
        ]
    }
}

struct CreateNotifications;

impl MigrationName for CreateNotifications {
    fn name(&self) -> &str {
        "m20261201_000001_create_notifications"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotifications {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The read model of users fed by `user.registered` / `user.deleted`: how to reach a
        // user by email, and who the administrators are. Never read from user-service.
        manager
            .create_table(
                Table::create()
                    .table("contacts")
                    .if_not_exists()
                    .col(pk_uuid("user_id"))
                    .col(string("email"))
                    .col(string("name"))
                    .col(string("role"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("contacts_role")
                    .table("contacts")
                    .col("role")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Opt-ins and opt-outs; `topic` is an event type, `direct` or `*` (every topic, the
        // exact topic winning over it).
        manager
            .create_table(
                Table::create()
                    .table("preferences")
                    .if_not_exists()
                    .col(uuid("user_id"))
                    .col(string("channel"))
                    .col(string("topic"))
                    .col(boolean("enabled"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("user_id").col("channel").col("topic"))
                    .to_owned(),
            )
            .await?;
        // Addresses the user gave for a channel (phone, device token, another email).
        manager
            .create_table(
                Table::create()
                    .table("addresses")
                    .if_not_exists()
                    .col(uuid("user_id"))
                    .col(string("channel"))
                    .col(string("address"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("user_id").col("channel"))
                    .to_owned(),
            )
            .await?;
        // Every message, whatever became of it: the delivery queue (status `queued`), the
        // in-app inbox (channel `in_app`) and the record of what was sent or suppressed.
        manager
            .create_table(
                Table::create()
                    .table("notifications")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(string("channel"))
                    .col(string("topic"))
                    // The event that caused it; null for direct notifications.
                    .col(uuid_null("event_id"))
                    // The address it goes to (null for in-app).
                    .col(string_null("recipient"))
                    .col(text("subject"))
                    .col(text("body"))
                    .col(text_null("html"))
                    // A JSON object for the app (push `data`, in-app links).
                    .col(text("data"))
                    .col(string("status"))
                    // Why it was suppressed, or the last delivery error.
                    .col(text_null("reason"))
                    .col(integer("attempts"))
                    .col(timestamp_with_time_zone("next_attempt_at"))
                    // A worker's lease on a queued row; expired leases are taken over, so a
                    // crash mid-delivery only delays the message.
                    .col(timestamp_with_time_zone_null("claimed_until"))
                    .col(string_null("provider_message_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("sent_at"))
                    .col(timestamp_with_time_zone_null("read_at"))
                    .to_owned(),
            )
            .await?;
        platform_db::create_indexes(
            manager,
            "notifications",
            &[
                // One event → at most one message per user and channel, whatever the code does.
                // (Direct notifications have no event id; NULLs never collide.)
                (
                    "notifications_event",
                    &["event_id", "user_id", "channel"],
                    true,
                ),
                // The inbox, and the rate limit's count.
                (
                    "notifications_user",
                    &["user_id", "channel", "created_at"],
                    false,
                ),
                // The worker's queue.
                ("notifications_due", &["status", "next_attempt_at"], false),
            ],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["notifications", "addresses", "preferences", "contacts"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// An email that waits for the user's contact keeps its template and variables (JSON), so it
/// is rendered again, with the user's name, when the contact arrives. Null otherwise.
struct AddTemplate;

impl MigrationName for AddTemplate {
    fn name(&self) -> &str {
        "m20261205_000001_notifications_template"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddTemplate {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        platform_db::add_columns(manager, "notifications", [text_null("template")]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        platform_db::drop_columns(manager, "notifications", &["template"]).await
    }
}
