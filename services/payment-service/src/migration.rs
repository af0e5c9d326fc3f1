//! The payment database's schema, as versioned migrations applied at start-up.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreatePayments),
            Box::new(platform_events::outbox::migration::CreateOutbox),
            Box::new(UnknownOutcomes),
            Box::new(PaymentSources),
        ]
    }
}

struct CreatePayments;

impl MigrationName for CreatePayments {
    fn name(&self) -> &str {
        "m20261126_000001_create_payments"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePayments {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("payments")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("order_id"))
                    .col(uuid("user_id"))
                    .col(big_integer("amount"))
                    .col(string_len("currency", 3))
                    .col(string("status"))
                    // Empty until a provider answered.
                    .col(string("provider"))
                    .col(string_null("provider_payment_id"))
                    // SHA-256 of the card token: velocity per card without keeping the token.
                    .col(string("token_hash"))
                    .col(string_null("card_brand"))
                    .col(string_null("card_last4"))
                    .col(small_integer("risk_score"))
                    .col(string("risk_decision"))
                    // JSON array of reason codes.
                    .col(text("risk_reasons"))
                    .col(big_integer("refunded_amount"))
                    // The sum of refunds the provider reported by webhook (ours included),
                    // so a refund made at the provider (its dashboard) is counted once and
                    // ours are not counted twice: refunded = max(ours, reported).
                    .col(big_integer("provider_refunded"))
                    .col(string_null("failure_reason"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    // Refunds can never exceed what was paid, whatever the code does.
                    .check(Expr::col("refunded_amount").gte(0))
                    .check(Expr::col("refunded_amount").lte(Expr::col("amount")))
                    .to_owned(),
            )
            .await?;
        platform_db::create_indexes(
            manager,
            "payments",
            &[
                ("payments_user", &["user_id", "created_at"], false),
                ("payments_token", &["token_hash", "created_at"], false),
                ("payments_order", &["order_id"], false),
                (
                    "payments_provider_id",
                    &["provider", "provider_payment_id"],
                    true,
                ),
            ],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table("refunds")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("payment_id"))
                    .col(big_integer("amount"))
                    .col(string("reason"))
                    .col(string("status"))
                    .col(string_null("provider_refund_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("refunds_payment")
                            .from("refunds", "payment_id")
                            .to("payments", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("idempotency_keys")
                    .if_not_exists()
                    // `charge:<user id>` or `refund:<payment id>`: keys are per caller.
                    .col(string("scope"))
                    .col(string("key"))
                    // SHA-256 of the request: the same key with another request is refused.
                    .col(string("request_hash"))
                    .col(uuid("payment_id"))
                    // The response sent, replayed as it was; null while the request runs.
                    .col(text_null("response"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("scope").col("key"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("webhook_events")
                    .if_not_exists()
                    .col(string("provider"))
                    .col(string("event_id"))
                    .col(timestamp_with_time_zone("received_at"))
                    .primary_key(Index::create().col("provider").col("event_id"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["webhook_events", "idempotency_keys", "refunds", "payments"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Where each payment came from (`order` or `direct`): a payment for an order is refunded
/// through its order.
struct PaymentSources;

impl MigrationName for PaymentSources {
    fn name(&self) -> &str {
        "m20261205_000002_payment_sources"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PaymentSources {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let source = string("source").default("direct").to_owned();
        platform_db::add_columns(manager, "payments", [source]).await?;
        // The checkout saga always charged under `order-<id>-charge`.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE payments SET source = 'order' WHERE id IN \
                 (SELECT payment_id FROM idempotency_keys \
                  WHERE scope LIKE 'charge:%' AND key LIKE 'order-%-charge')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        platform_db::drop_columns(manager, "payments", &["source"]).await
    }
}

/// Charges whose outcome is unknown and the refunds under way: what the reconciler needs to
/// finish them after a timeout or a crash.
struct UnknownOutcomes;

impl MigrationName for UnknownOutcomes {
    fn name(&self) -> &str {
        "m20261205_000001_unknown_outcomes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for UnknownOutcomes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let payments: [ColumnDef; 3] = [
            // When the reconciler next asks the provider about an unknown outcome.
            timestamp_with_time_zone_null("next_check_at"),
            // How often it asked (the backoff grows with it).
            integer("checks").default(0).to_owned(),
            // The card token, kept only while the outcome is unknown: asking the provider
            // again means repeating the request exactly. Cleared once resolved.
            string_null("retry_token"),
        ];
        platform_db::add_columns(manager, "payments", payments).await?;
        let refunds: [ColumnDef; 2] = [
            // The refund's idempotency key (`{payment id}:{key}` at the provider): a refund
            // whose answer was lost is asked for again under it.
            string_null("idempotency_key"),
            timestamp_with_time_zone_null("updated_at"),
        ];
        platform_db::add_columns(manager, "refunds", refunds).await?;
        platform_db::create_indexes(
            manager,
            "payments",
            &[("payments_checks", &["status", "next_check_at"], false)],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        platform_db::drop_columns(
            manager,
            "payments",
            &["next_check_at", "checks", "retry_token"],
        )
        .await?;
        platform_db::drop_columns(manager, "refunds", &["idempotency_key", "updated_at"]).await
    }
}
