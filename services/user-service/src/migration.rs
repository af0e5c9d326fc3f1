//! The user database's schema, as versioned migrations applied at start-up.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateUsers),
            Box::new(CreateRefreshTokens),
            Box::new(platform_events::outbox::migration::CreateOutbox),
            Box::new(AddTokenVersion),
        ]
    }
}

struct CreateUsers;

impl MigrationName for CreateUsers {
    fn name(&self) -> &str {
        "m20261126_000001_create_users"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    // Stored normalised (lower-case), so a plain unique index is case-insensitive.
                    .col(string_uniq("email"))
                    .col(string("name"))
                    .col(string("password_hash"))
                    .col(string("role"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        // Listing pages through users in creation order.
        manager
            .create_index(
                Index::create()
                    .name("users_created_at")
                    .table("users")
                    .col("created_at")
                    .col("id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("users").to_owned())
            .await
    }
}

struct CreateRefreshTokens;

impl MigrationName for CreateRefreshTokens {
    fn name(&self) -> &str {
        "m20261126_000002_create_refresh_tokens"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateRefreshTokens {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("refresh_tokens")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    // Every token descending from one login; reuse of a rotated token revokes all.
                    .col(uuid("family_id"))
                    // SHA-256 of the token: a database leak does not leak usable tokens.
                    .col(string_uniq("token_hash"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("rotated_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("refresh_tokens_user")
                            .from("refresh_tokens", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("refresh_tokens_family", "family_id"),
            ("refresh_tokens_user", "user_id"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("refresh_tokens")
                        .col(column)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("refresh_tokens").to_owned())
            .await
    }
}

struct AddTokenVersion;

impl MigrationName for AddTokenVersion {
    fn name(&self) -> &str {
        "m20261204_000001_add_users_token_version"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddTokenVersion {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Access tokens carry it as `ver`; raising it (logout, password or role change) makes
        // the user's older tokens fail. Existing accounts start at 0, what unversioned tokens
        // count as.
        let version = big_integer("token_version").default(0).to_owned();
        platform_db::add_columns(manager, "users", [version]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        platform_db::drop_columns(manager, "users", &["token_version"]).await
    }
}
