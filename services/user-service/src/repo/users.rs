//! The `users` table.

use chrono::{DateTime, Utc};
use platform_http::PageRequest;
use sea_orm::ExprTrait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use platform_auth::TokenVersion;

use super::entities::user;
use crate::domain::{Email, Role, User, UserId, UserName};

/// A user with the hash needed to check their password and the version their tokens carry.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub user: User,
    pub password_hash: String,
    pub token_version: TokenVersion,
}

fn corrupt(what: &str, id: uuid::Uuid) -> DbErr {
    DbErr::Type(format!("user {id} has an invalid {what} in the database"))
}

impl TryFrom<user::Model> for StoredUser {
    type Error = DbErr;

    fn try_from(row: user::Model) -> Result<Self, DbErr> {
        Ok(StoredUser {
            user: User {
                id: UserId::from_uuid(row.id),
                email: Email::parse(&row.email).map_err(|_| corrupt("email", row.id))?,
                name: UserName::parse(&row.name).map_err(|_| corrupt("name", row.id))?,
                role: Role::parse(&row.role).ok_or_else(|| corrupt("role", row.id))?,
                created_at: row.created_at,
                updated_at: row.updated_at,
            },
            password_hash: row.password_hash,
            token_version: TokenVersion::new(
                u64::try_from(row.token_version).map_err(|_| corrupt("token version", row.id))?,
            ),
        })
    }
}

/// Inserts a new user. A duplicate email fails with a unique violation
/// (see `platform_db::is_unique_violation`).
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    user: &User,
    password_hash: &str,
) -> Result<(), DbErr> {
    user::ActiveModel {
        id: Set(user.id.as_uuid()),
        email: Set(user.email.as_str().to_owned()),
        name: Set(user.name.as_str().to_owned()),
        password_hash: Set(password_hash.to_owned()),
        role: Set(user.role.as_str().to_owned()),
        created_at: Set(user.created_at),
        updated_at: Set(user.updated_at),
        token_version: Set(0),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn find_by_id<C: ConnectionTrait>(
    conn: &C,
    id: UserId,
) -> Result<Option<StoredUser>, DbErr> {
    user::Entity::find_by_id(id.as_uuid())
        .one(conn)
        .await?
        .map(StoredUser::try_from)
        .transpose()
}

pub async fn find_by_email<C: ConnectionTrait>(
    conn: &C,
    email: &Email,
) -> Result<Option<StoredUser>, DbErr> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(conn)
        .await?
        .map(StoredUser::try_from)
        .transpose()
}

/// What an update changes; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub name: Option<&'a UserName>,
    pub password_hash: Option<&'a str>,
    pub role: Option<Role>,
}

/// Applies `changes`; `false` when there is no such user.
pub async fn update<C: ConnectionTrait>(
    conn: &C,
    id: UserId,
    changes: Changes<'_>,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut update = user::Entity::update_many()
        .col_expr(user::Column::UpdatedAt, Expr::value(at))
        .filter(user::Column::Id.eq(id.as_uuid()));
    if let Some(name) = changes.name {
        update = update.col_expr(user::Column::Name, Expr::value(name.as_str()));
    }
    if let Some(hash) = changes.password_hash {
        update = update.col_expr(user::Column::PasswordHash, Expr::value(hash));
    }
    if let Some(role) = changes.role {
        update = update.col_expr(user::Column::Role, Expr::value(role.as_str()));
    }
    Ok(update.exec(conn).await?.rows_affected == 1)
}

/// Raises the user's token version by one and returns the new one; `None` when there is no
/// such user. A write first, so on SQLite it takes the write lock before anything is read.
pub async fn bump_token_version<C: ConnectionTrait>(
    conn: &C,
    id: UserId,
) -> Result<Option<TokenVersion>, DbErr> {
    let bumped = user::Entity::update_many()
        .col_expr(
            user::Column::TokenVersion,
            Expr::col(user::Column::TokenVersion).add(1),
        )
        .filter(user::Column::Id.eq(id.as_uuid()))
        .exec(conn)
        .await?;
    if bumped.rows_affected != 1 {
        return Ok(None);
    }
    Ok(find_by_id(conn, id)
        .await?
        .map(|stored| stored.token_version))
}

/// Deletes the user; `false` when there was none.
pub async fn delete<C: ConnectionTrait>(conn: &C, id: UserId) -> Result<bool, DbErr> {
    Ok(user::Entity::delete_by_id(id.as_uuid())
        .exec(conn)
        .await?
        .rows_affected
        == 1)
}

/// One page of users in creation order, and the total count.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    page: PageRequest,
) -> Result<(Vec<User>, u64), DbErr> {
    let total = user::Entity::find().count(conn).await?;
    let rows = user::Entity::find()
        .order_by_asc(user::Column::CreatedAt)
        .order_by_asc(user::Column::Id)
        .offset(page.offset())
        .limit(page.per_page())
        .all(conn)
        .await?;
    let users = rows
        .into_iter()
        .map(|row| StoredUser::try_from(row).map(|s| s.user))
        .collect::<Result<_, _>>()?;
    Ok((users, total))
}
