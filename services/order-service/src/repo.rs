//! The tables and the queries over them. Every function takes any connection, so the use
//! cases choose what runs in one transaction. Saga writes are conditional on the lease, so a
//! process that lost its lease (it stalled past it) can never overwrite the new owner's work.

use chrono::{DateTime, Utc};
use platform_http::PageRequest;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, ExprTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::domain::{OrderId, OrderStatus, Step};

pub mod entities {
    pub mod order {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "orders")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub user_id: Uuid,
            pub status: crate::domain::OrderStatus,
            pub step: crate::domain::Step,
            pub total: i64,
            pub currency: String,
            pub shipping_address: String,
            pub payment_token: Option<String>,
            pub payment_id: Option<Uuid>,
            pub charge_unresolved: bool,
            pub refunded: i64,
            pub failure_reason: Option<String>,
            pub cancel_requested: bool,
            pub idempotency_key: String,
            pub request_hash: String,
            pub deadline: DateTimeUtc,
            pub lease_owner: Option<String>,
            pub lease_until: Option<DateTimeUtc>,
            pub attempts: i32,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod order_item {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "order_items")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub order_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub line: i32,
            pub product_id: Uuid,
            pub name: String,
            pub quantity: i32,
            pub unit_price: i64,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{order, order_item};

pub use order::Model as OrderRow;
pub use order_item::Model as ItemRow;

/// Inserts an order with its lines. Fails with a unique violation when the user already
/// used the idempotency key.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    row: OrderRow,
    items: Vec<ItemRow>,
) -> Result<(), DbErr> {
    order::ActiveModel::from(row).insert(conn).await?;
    order_item::Entity::insert_many(items.into_iter().map(order_item::ActiveModel::from))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub async fn find<C: ConnectionTrait>(conn: &C, id: OrderId) -> Result<Option<OrderRow>, DbErr> {
    order::Entity::find_by_id(id.as_uuid()).one(conn).await
}

pub async fn find_by_key<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
    key: &str,
) -> Result<Option<OrderRow>, DbErr> {
    order::Entity::find()
        .filter(order::Column::UserId.eq(user))
        .filter(order::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await
}

/// The lines of `orders`, in line order.
pub async fn items<C: ConnectionTrait>(conn: &C, orders: &[Uuid]) -> Result<Vec<ItemRow>, DbErr> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    order_item::Entity::find()
        .filter(order_item::Column::OrderId.is_in(orders.iter().copied()))
        .order_by_asc(order_item::Column::OrderId)
        .order_by_asc(order_item::Column::Line)
        .all(conn)
        .await
}

/// One page of orders, newest first: one user's, or everyone's (`user = None`).
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    user: Option<Uuid>,
    status: Option<OrderStatus>,
    page: PageRequest,
) -> Result<(Vec<OrderRow>, u64), DbErr> {
    let mut query = order::Entity::find();
    if let Some(user) = user {
        query = query.filter(order::Column::UserId.eq(user));
    }
    if let Some(status) = status {
        query = query.filter(order::Column::Status.eq(status.as_str()));
    }
    let total = query.clone().count(conn).await?;
    let rows = query
        .order_by_desc(order::Column::CreatedAt)
        .order_by_desc(order::Column::Id)
        .offset(page.offset())
        .limit(page.per_page())
        .all(conn)
        .await?;
    Ok((rows, total))
}

/// Takes the saga's lease for `owner` until `until`, if the saga is unfinished and nobody
/// else holds a live lease on it; answers with the row as claimed.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    id: OrderId,
    owner: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<OrderRow>, DbErr> {
    let mut claimed = order::Entity::update_many()
        .col_expr(order::Column::LeaseOwner, Expr::value(owner))
        .col_expr(order::Column::LeaseUntil, Expr::value(until))
        .col_expr(
            order::Column::Attempts,
            Expr::col(order::Column::Attempts).add(1),
        )
        .filter(order::Column::Id.eq(id.as_uuid()))
        .filter(order::Column::Step.ne(Step::Done.as_str()))
        .filter(
            order::Column::LeaseUntil
                .is_null()
                .or(order::Column::LeaseUntil.lt(now))
                .or(order::Column::LeaseOwner.eq(owner)),
        )
        .exec_with_returning(conn)
        .await?;
    Ok(claimed.pop())
}

/// How a saga write is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Only while `owner` holds the lease.
    Lease,
    /// Only while `owner` holds the lease and no cancellation was requested: a step forward
    /// must not overwrite a cancellation that arrived while it ran.
    LeaseAndNotCancelled,
}

/// Writes the saga's progress (every field of `row` but the identity, the lines and the
/// cancellation flag); `false` when the guard did not hold.
pub async fn save<C: ConnectionTrait>(
    conn: &C,
    row: &OrderRow,
    owner: &str,
    guard: Guard,
) -> Result<bool, DbErr> {
    let mut active: order::ActiveModel = row.clone().into();
    active = active.reset_all();
    for unchanged in [
        order::Column::Id,
        order::Column::UserId,
        order::Column::IdempotencyKey,
        order::Column::RequestHash,
        order::Column::CancelRequested,
        order::Column::CreatedAt,
    ] {
        active.not_set(unchanged);
    }
    let mut update = order::Entity::update_many()
        .set(active)
        .filter(order::Column::Id.eq(row.id))
        .filter(order::Column::LeaseOwner.eq(owner));
    if guard == Guard::LeaseAndNotCancelled {
        update = update.filter(order::Column::CancelRequested.eq(false));
    }
    Ok(update.exec(conn).await?.rows_affected == 1)
}

/// Gives the lease up, leaving the saga to whoever claims it after `retry_at` (now: at once).
pub async fn release<C: ConnectionTrait>(
    conn: &C,
    id: OrderId,
    owner: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), DbErr> {
    order::Entity::update_many()
        .col_expr(
            order::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(order::Column::LeaseUntil, Expr::value(retry_at))
        .filter(order::Column::Id.eq(id.as_uuid()))
        .filter(order::Column::LeaseOwner.eq(owner))
        .exec(conn)
        .await?;
    Ok(())
}

/// Asks for the order to be cancelled: an unfinished saga switches to compensation at its next
/// step; a confirmed order starts compensating now. `false` when the order cannot be
/// cancelled (anymore).
pub async fn request_cancel<C: ConnectionTrait>(
    conn: &C,
    id: OrderId,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let running = order::Entity::update_many()
        .col_expr(order::Column::CancelRequested, Expr::value(true))
        .col_expr(order::Column::UpdatedAt, Expr::value(at))
        .filter(order::Column::Id.eq(id.as_uuid()))
        .filter(order::Column::Step.ne(Step::Done.as_str()))
        .exec(conn)
        .await?;
    if running.rows_affected == 1 {
        return Ok(true);
    }
    let confirmed = order::Entity::update_many()
        .col_expr(order::Column::CancelRequested, Expr::value(true))
        .col_expr(order::Column::Step, Expr::value(Step::Compensate.as_str()))
        .col_expr(
            order::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            order::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(order::Column::UpdatedAt, Expr::value(at))
        .filter(order::Column::Id.eq(id.as_uuid()))
        .filter(order::Column::Step.eq(Step::Done.as_str()))
        .filter(order::Column::Status.eq(OrderStatus::Confirmed.as_str()))
        .exec(conn)
        .await?;
    Ok(confirmed.rows_affected == 1)
}

/// Moves a finished order from `from` to `to` (an administrator's shipping updates); `false`
/// when it is not in `from` (anymore).
pub async fn set_status<C: ConnectionTrait>(
    conn: &C,
    id: OrderId,
    from: OrderStatus,
    to: OrderStatus,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to.as_str()))
        .col_expr(order::Column::UpdatedAt, Expr::value(at))
        .filter(order::Column::Id.eq(id.as_uuid()))
        .filter(order::Column::Step.eq(Step::Done.as_str()))
        .filter(order::Column::Status.eq(from.as_str()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Unfinished sagas nobody holds a live lease on, the longest-waiting first.
pub async fn stalled<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<OrderId>, DbErr> {
    Ok(order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .filter(order::Column::Step.ne(Step::Done.as_str()))
        .filter(
            order::Column::LeaseUntil
                .is_null()
                .or(order::Column::LeaseUntil.lt(now)),
        )
        .order_by_asc(order::Column::UpdatedAt)
        .limit(limit)
        .into_tuple::<Uuid>()
        .all(conn)
        .await?
        .into_iter()
        .map(OrderId::from_uuid)
        .collect())
}

/// Records what the payment service reports as refunded for `payment_id` (refunds made
/// outside the saga, e.g. at the provider's dashboard). Never lowers the figure.
pub async fn record_refunded<C: ConnectionTrait>(
    conn: &C,
    payment_id: Uuid,
    refunded_total: i64,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = order::Entity::update_many()
        .col_expr(order::Column::Refunded, Expr::value(refunded_total))
        .col_expr(order::Column::UpdatedAt, Expr::value(at))
        .filter(order::Column::PaymentId.eq(payment_id))
        .filter(order::Column::Refunded.lt(refunded_total))
        .filter(order::Column::Total.gte(refunded_total))
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Orders whose saga ended (step `done`) since `since`, the most recent first.
pub async fn ended_since<C: ConnectionTrait>(
    conn: &C,
    since: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<OrderRow>, DbErr> {
    order::Entity::find()
        .filter(order::Column::Step.eq(Step::Done.as_str()))
        .filter(order::Column::UpdatedAt.gte(since))
        .order_by_desc(order::Column::UpdatedAt)
        .limit(limit)
        .all(conn)
        .await
}
