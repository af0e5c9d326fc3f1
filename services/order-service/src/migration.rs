//! The order database's schema, as versioned migrations applied at start-up.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOrders),
            Box::new(platform_events::outbox::migration::CreateOutbox),
            Box::new(platform_events::idempotency::migration::CreateProcessedEvents),
        ]
    }
}

struct CreateOrders;

impl MigrationName for CreateOrders {
    fn name(&self) -> &str {
        "m20261126_000001_create_orders"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOrders {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("orders")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(string("status"))
                    // The saga's next step (`domain::Step`).
                    .col(string("step"))
                    .col(big_integer("total"))
                    .col(string_len("currency", 3))
                    // JSON of `domain::ShippingAddress`.
                    .col(text("shipping_address"))
                    // Kept only while the saga may still need to charge (or resolve a charge);
                    // cleared when it ends.
                    .col(string_null("payment_token"))
                    .col(uuid_null("payment_id"))
                    // A charge was sent and its outcome is not known yet: compensation must
                    // find out (under the same key) before it may say "nothing was charged".
                    .col(boolean("charge_unresolved"))
                    .col(big_integer("refunded"))
                    .col(text_null("failure_reason"))
                    .col(boolean("cancel_requested"))
                    .col(string("idempotency_key"))
                    // SHA-256 of the request: the same key with another request is refused.
                    .col(string("request_hash"))
                    // Past it, a saga still running forward is compensated.
                    .col(timestamp_with_time_zone("deadline"))
                    // Which process drives the saga, and until when (renewed at every step).
                    // A lease that ran out belongs to a process that died or gave up for now.
                    .col(string_null("lease_owner"))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(integer("attempts"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .check(Expr::col("total").gt(0))
                    .check(Expr::col("refunded").gte(0))
                    .check(Expr::col("refunded").lte(Expr::col("total")))
                    .to_owned(),
            )
            .await?;
        platform_db::create_indexes(
            manager,
            "orders",
            &[
                ("orders_key", &["user_id", "idempotency_key"], true),
                ("orders_user", &["user_id", "created_at"], false),
                ("orders_saga", &["step", "lease_until"], false),
                ("orders_payment", &["payment_id"], false),
            ],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table("order_items")
                    .if_not_exists()
                    .col(uuid("order_id"))
                    .col(integer("line"))
                    .col(uuid("product_id"))
                    .col(string("name"))
                    .col(integer("quantity"))
                    .col(big_integer("unit_price"))
                    .primary_key(Index::create().col("order_id").col("line"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("order_items_order")
                            .from("order_items", "order_id")
                            .to("orders", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .check(Expr::col("quantity").gt(0))
                    .check(Expr::col("unit_price").gt(0))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["order_items", "orders"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
