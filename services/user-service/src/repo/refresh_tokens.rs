//! The `refresh_tokens` table: hashed, rotating, revocable by family.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};
use uuid::Uuid;

use super::entities::refresh_token;
use crate::domain::UserId;

pub use refresh_token::Model as RefreshTokenRow;

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub user_id: UserId,
    pub family_id: Uuid,
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert<C: ConnectionTrait>(conn: &C, token: NewRefreshToken) -> Result<(), DbErr> {
    refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(token.user_id.as_uuid()),
        family_id: Set(token.family_id),
        token_hash: Set(token.token_hash),
        created_at: Set(token.created_at),
        expires_at: Set(token.expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Marks the live token with `token_hash` as used, atomically: of two concurrent attempts to
/// rotate one token, exactly one gets `true`. Being a write, it is also the first statement of
/// its transaction, so SQLite takes the write lock before reading anything.
pub async fn rotate<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RotatedAt, Expr::value(now))
        .filter(refresh_token::Column::TokenHash.eq(token_hash))
        .filter(refresh_token::Column::RotatedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .filter(refresh_token::Column::ExpiresAt.gt(now))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn find_by_hash<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
) -> Result<Option<RefreshTokenRow>, DbErr> {
    refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(token_hash))
        .one(conn)
        .await
}

/// Revokes every live token of a family.
pub async fn revoke_family<C: ConnectionTrait>(
    conn: &C,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// Revokes the family of the token with `token_hash`, whatever its state; its user, or
/// `None` when no such token exists.
pub async fn revoke_family_of<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<UserId>, DbErr> {
    match find_by_hash(conn, token_hash).await? {
        Some(row) => {
            revoke_family(conn, row.family_id, now).await?;
            Ok(Some(UserId::from_uuid(row.user_id)))
        }
        None => Ok(None),
    }
}

/// Revokes every live token of a user (password change, deletion).
pub async fn revoke_user<C: ConnectionTrait>(
    conn: &C,
    user_id: UserId,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::UserId.eq(user_id.as_uuid()))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}
