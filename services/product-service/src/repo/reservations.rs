//! The `reservations` and `reservation_lines` tables.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::{reservation, reservation_line};
use crate::domain::{Line, OrderId, ProductId, Quantity, Reservation, ReservationState};

/// Inserts the reservation row. A second one for the same order fails with a unique
/// violation: that is what makes `Reserve` idempotent under concurrency.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    order_id: OrderId,
    state: ReservationState,
    expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    reservation::ActiveModel {
        order_id: Set(order_id.as_uuid()),
        state: Set(state.as_str().to_owned()),
        expires_at: Set(expires_at),
        created_at: Set(at),
        updated_at: Set(at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn insert_lines<C: ConnectionTrait>(
    conn: &C,
    order_id: OrderId,
    lines: &[Line],
) -> Result<(), DbErr> {
    if lines.is_empty() {
        return Ok(());
    }
    reservation_line::Entity::insert_many(lines.iter().map(|line| reservation_line::ActiveModel {
        order_id: Set(order_id.as_uuid()),
        product_id: Set(line.product_id.as_uuid()),
        quantity: Set(i64::from(line.quantity.get())),
    }))
    .exec(conn)
    .await?;
    Ok(())
}

/// The order's reservation with its lines (in product id order).
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    order_id: OrderId,
) -> Result<Option<Reservation>, DbErr> {
    match reservation::Entity::find_by_id(order_id.as_uuid())
        .one(conn)
        .await?
    {
        Some(row) => with_lines(conn, row).await.map(Some),
        None => Ok(None),
    }
}

/// `row` with its lines, read.
async fn with_lines<C: ConnectionTrait>(
    conn: &C,
    row: reservation::Model,
) -> Result<Reservation, DbErr> {
    let order_id = OrderId::from_uuid(row.order_id);
    let corrupt = |what: &str| {
        DbErr::Type(format!(
            "reservation {order_id} has an invalid {what} in the database"
        ))
    };
    let state = ReservationState::parse(&row.state).ok_or_else(|| corrupt("state"))?;
    let lines = reservation_line::Entity::find()
        .filter(reservation_line::Column::OrderId.eq(order_id.as_uuid()))
        .order_by_asc(reservation_line::Column::ProductId)
        .all(conn)
        .await?
        .into_iter()
        .map(|line| {
            let quantity = u32::try_from(line.quantity)
                .ok()
                .and_then(|q| Quantity::new(q).ok())
                .ok_or_else(|| corrupt("quantity"))?;
            Ok(Line {
                product_id: ProductId::from_uuid(line.product_id),
                quantity,
            })
        })
        .collect::<Result<_, DbErr>>()?;
    Ok(Reservation {
        order_id,
        state,
        lines,
        expires_at: row.expires_at,
    })
}

/// Moves the reservation from `from` to `to`, answering with it as it was (in `from`);
/// `None` when it is not in `from` (anymore). Conditional, so two concurrent settlements of
/// one reservation cannot both apply.
pub async fn transition<C: ConnectionTrait>(
    conn: &C,
    order_id: OrderId,
    from: ReservationState,
    to: ReservationState,
    at: DateTime<Utc>,
) -> Result<Option<Reservation>, DbErr> {
    let moved = reservation::Entity::update_many()
        .col_expr(reservation::Column::State, Expr::value(to.as_str()))
        .col_expr(reservation::Column::UpdatedAt, Expr::value(at))
        .filter(reservation::Column::OrderId.eq(order_id.as_uuid()))
        .filter(reservation::Column::State.eq(from.as_str()))
        .exec_with_returning(conn)
        .await?
        .pop();
    let Some(row) = moved else {
        return Ok(None);
    };
    let mut reservation = with_lines(conn, row).await?;
    reservation.state = from;
    Ok(Some(reservation))
}

/// Held reservations whose time is up, oldest first.
pub async fn expired<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<OrderId>, DbErr> {
    Ok(reservation::Entity::find()
        .filter(reservation::Column::State.eq(ReservationState::Reserved.as_str()))
        .filter(reservation::Column::ExpiresAt.lt(now))
        .order_by_asc(reservation::Column::ExpiresAt)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|row| OrderId::from_uuid(row.order_id))
        .collect())
}
