//! The tables and the queries over them. Every function takes any connection, so the use
//! cases choose what runs in one transaction.

use chrono::{DateTime, Utc};
use platform_http::PageRequest;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, ExprTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use crate::domain::{PaymentId, PaymentStatus, RefundStatus};

pub mod entities {
    pub mod payment {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "payments")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub order_id: Uuid,
            pub user_id: Uuid,
            pub amount: i64,
            pub currency: String,
            pub status: crate::domain::PaymentStatus,
            pub provider: String,
            pub provider_payment_id: Option<String>,
            pub token_hash: String,
            pub card_brand: Option<String>,
            pub card_last4: Option<String>,
            pub risk_score: i16,
            pub risk_decision: String,
            pub risk_reasons: String,
            pub refunded_amount: i64,
            pub provider_refunded: i64,
            pub failure_reason: Option<String>,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
            pub next_check_at: Option<DateTimeUtc>,
            pub checks: i32,
            pub retry_token: Option<String>,
            pub source: String,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod refund {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "refunds")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub payment_id: Uuid,
            pub amount: i64,
            pub reason: String,
            pub status: crate::domain::RefundStatus,
            pub provider_refund_id: Option<String>,
            pub created_at: DateTimeUtc,
            pub idempotency_key: Option<String>,
            pub updated_at: Option<DateTimeUtc>,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod idempotency_key {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "idempotency_keys")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub scope: String,
            #[sea_orm(primary_key, auto_increment = false)]
            pub key: String,
            pub request_hash: String,
            pub payment_id: Uuid,
            pub response: Option<String>,
            pub created_at: DateTimeUtc,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod webhook_event {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "webhook_events")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub provider: String,
            #[sea_orm(primary_key, auto_increment = false)]
            pub event_id: String,
            pub received_at: DateTimeUtc,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{idempotency_key, payment, refund, webhook_event};

pub use payment::Model as PaymentRow;

pub async fn insert_payment<C: ConnectionTrait>(conn: &C, row: PaymentRow) -> Result<(), DbErr> {
    payment::ActiveModel::from(row).insert(conn).await?;
    Ok(())
}

pub async fn find_payment<C: ConnectionTrait>(
    conn: &C,
    id: PaymentId,
) -> Result<Option<PaymentRow>, DbErr> {
    payment::Entity::find_by_id(id.as_uuid()).one(conn).await
}

/// The payment a provider's id names, locked until the transaction ends (the caller writes
/// the whole row back: nothing may change it meanwhile).
pub async fn find_by_provider_id<C: ConnectionTrait>(
    conn: &C,
    provider: &str,
    provider_payment_id: &str,
) -> Result<Option<PaymentRow>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::Provider.eq(provider))
        .filter(payment::Column::ProviderPaymentId.eq(provider_payment_id))
        .lock_exclusive()
        .one(conn)
        .await
}

/// A payment, locked until the transaction ends (`FOR UPDATE` on PostgreSQL; SQLite's write
/// transactions are exclusive already), to read it and write it back without losing a
/// concurrent change such as a refund reservation.
pub async fn lock_payment<C: ConnectionTrait>(
    conn: &C,
    id: PaymentId,
) -> Result<Option<PaymentRow>, DbErr> {
    payment::Entity::find_by_id(id.as_uuid())
        .lock_exclusive()
        .one(conn)
        .await
}

/// Writes the whole row (after a state change decided by the caller).
pub async fn save_payment<C: ConnectionTrait>(conn: &C, row: &PaymentRow) -> Result<(), DbErr> {
    let mut active: payment::ActiveModel = row.clone().into();
    active = active.reset_all();
    active.id = sea_orm::ActiveValue::Unchanged(row.id);
    active.update(conn).await?;
    Ok(())
}

/// One page of payments, newest first: one user's, or everyone's (`user = None`).
pub async fn list_payments<C: ConnectionTrait>(
    conn: &C,
    user: Option<Uuid>,
    status: Option<PaymentStatus>,
    page: PageRequest,
) -> Result<(Vec<PaymentRow>, u64), DbErr> {
    let mut query = payment::Entity::find();
    if let Some(user) = user {
        query = query.filter(payment::Column::UserId.eq(user));
    }
    if let Some(status) = status {
        query = query.filter(payment::Column::Status.eq(status));
    }
    let total = query.clone().count(conn).await?;
    let rows = query
        .order_by_desc(payment::Column::CreatedAt)
        .order_by_desc(payment::Column::Id)
        .offset(page.offset())
        .limit(page.per_page())
        .all(conn)
        .await?;
    Ok((rows, total))
}

/// What the fraud rules need to know about recent activity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Activity {
    pub user_payments: u64,
    pub card_payments: u64,
    pub user_declines: u64,
    /// Captured payments of the user in the same currency, and their average amount.
    pub history_count: u64,
    pub history_average: i64,
}

pub async fn activity<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
    token_hash: &str,
    currency: &str,
    since: DateTime<Utc>,
) -> Result<Activity, DbErr> {
    use sea_orm::sea_query::{
        Alias, Asterisk, Func, Query, QueryStatementBuilder, SelectStatement,
    };
    use sea_orm::{QueryTrait, Select};
    // Every figure is a scalar subquery over its own index, all in one statement: a charge
    // asks the database once, not five times.
    let scalar =
        |query: SelectStatement| Expr::SubQuery(None, Box::new(query.into_sub_query_statement()));
    let count = |select: Select<payment::Entity>| {
        scalar(
            select
                .select_only()
                .expr(Func::count(Expr::col(Asterisk)))
                .into_query(),
        )
    };
    let recent = || payment::Entity::find().filter(payment::Column::CreatedAt.gte(since));
    let captured = [
        PaymentStatus::Captured,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
    ];
    // The user's last 100 captured payments in this currency.
    let history = payment::Entity::find()
        .select_only()
        .column(payment::Column::Amount)
        .filter(payment::Column::UserId.eq(user))
        .filter(payment::Column::Currency.eq(currency))
        .filter(payment::Column::Status.is_in(captured))
        .order_by_desc(payment::Column::CreatedAt)
        .limit(100)
        .into_query();
    let over_history = |figure: Expr| {
        scalar(
            Query::select()
                .expr(figure)
                .from_subquery(history.clone(), Alias::new("history"))
                .to_owned(),
        )
    };
    let query = Query::select()
        .expr_as(
            count(recent().filter(payment::Column::UserId.eq(user))),
            Alias::new("user_payments"),
        )
        .expr_as(
            count(recent().filter(payment::Column::TokenHash.eq(token_hash))),
            Alias::new("card_payments"),
        )
        .expr_as(
            count(
                recent()
                    .filter(payment::Column::UserId.eq(user))
                    .filter(payment::Column::Status.eq(PaymentStatus::Failed)),
            ),
            Alias::new("user_declines"),
        )
        .expr_as(
            over_history(Func::count(Expr::col(Asterisk)).into()),
            Alias::new("history_count"),
        )
        // The average in the database, never the sum: a hundred amounts near the largest
        // one may not add up within a BIGINT. (PostgreSQL rounds it, SQLite truncates: a
        // minor unit either way, against a multiple of it.)
        .expr_as(
            over_history(
                Func::coalesce([
                    Func::avg(Expr::col(Alias::new("amount"))).cast_as("BIGINT"),
                    Expr::val(0i64),
                ])
                .into(),
            ),
            Alias::new("history_average"),
        )
        .to_owned();
    let row = conn
        .query_one(&query)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the activity query returned no row".into()))?;
    let figure = |name: &str| -> Result<u64, DbErr> {
        Ok(u64::try_from(row.try_get::<i64>("", name)?).unwrap_or(0))
    };
    Ok(Activity {
        user_payments: figure("user_payments")?,
        card_payments: figure("card_payments")?,
        user_declines: figure("user_declines")?,
        history_count: figure("history_count")?,
        history_average: row.try_get::<i64>("", "history_average")?,
    })
}

/// Takes `amount` off what is left to refund, only if that much is left and the payment is
/// captured: concurrent refunds can never add up to more than was paid.
pub async fn reserve_refund<C: ConnectionTrait>(
    conn: &C,
    id: PaymentId,
    amount: i64,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let captured = [PaymentStatus::Captured, PaymentStatus::PartiallyRefunded];
    let result = payment::Entity::update_many()
        .col_expr(
            payment::Column::RefundedAmount,
            Expr::col(payment::Column::RefundedAmount).add(amount),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(at))
        .filter(payment::Column::Id.eq(id.as_uuid()))
        .filter(payment::Column::Status.is_in(captured))
        .filter(
            Expr::col(payment::Column::RefundedAmount)
                .add(amount)
                .lte(Expr::col(payment::Column::Amount)),
        )
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Gives a reserved refund amount back (the provider refused the refund).
pub async fn unreserve_refund<C: ConnectionTrait>(
    conn: &C,
    id: PaymentId,
    amount: i64,
) -> Result<(), DbErr> {
    payment::Entity::update_many()
        .col_expr(
            payment::Column::RefundedAmount,
            Expr::col(payment::Column::RefundedAmount).sub(amount),
        )
        .filter(payment::Column::Id.eq(id.as_uuid()))
        .filter(payment::Column::RefundedAmount.gte(amount))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn insert_refund<C: ConnectionTrait>(conn: &C, row: refund::Model) -> Result<(), DbErr> {
    refund::ActiveModel::from(row).insert(conn).await?;
    Ok(())
}

pub use refund::Model as RefundRow;

/// Records what became of a refund (its status, and the provider's id once it has one).
pub async fn mark_refund<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
    status: RefundStatus,
    provider_refund_id: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut update = refund::Entity::update_many()
        .col_expr(refund::Column::Status, Expr::value(status))
        .col_expr(refund::Column::UpdatedAt, Expr::value(Some(at)));
    if let Some(provider_refund_id) = provider_refund_id {
        update = update.col_expr(
            refund::Column::ProviderRefundId,
            Expr::value(Some(provider_refund_id)),
        );
    }
    update.filter(refund::Column::Id.eq(id)).exec(conn).await?;
    Ok(())
}

/// Forgets a refund the provider definitely did not make.
pub async fn delete_refund<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<(), DbErr> {
    refund::Entity::delete_by_id(id).exec(conn).await?;
    Ok(())
}

/// The refund asked for under a provider idempotency key.
pub async fn find_refund_by_key<C: ConnectionTrait>(
    conn: &C,
    payment: PaymentId,
    provider_key: &str,
) -> Result<Option<RefundRow>, DbErr> {
    refund::Entity::find()
        .filter(refund::Column::PaymentId.eq(payment.as_uuid()))
        .filter(refund::Column::IdempotencyKey.eq(provider_key))
        .one(conn)
        .await
}

/// Refunds still waiting for their provider's answer since before `before`.
pub async fn stale_refunds<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<RefundRow>, DbErr> {
    refund::Entity::find()
        .filter(refund::Column::Status.is_in([RefundStatus::Requested, RefundStatus::Unknown]))
        .filter(refund::Column::UpdatedAt.lte(before))
        .order_by_asc(refund::Column::UpdatedAt)
        .limit(limit)
        .all(conn)
        .await
}

/// Claims an idempotency key for a request; `Err` with a unique violation when it exists.
pub async fn claim_key<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
    request_hash: &str,
    payment_id: PaymentId,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    idempotency_key::ActiveModel {
        scope: Set(scope.to_owned()),
        key: Set(key.to_owned()),
        request_hash: Set(request_hash.to_owned()),
        payment_id: Set(payment_id.as_uuid()),
        response: Set(None),
        created_at: Set(at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub use idempotency_key::Model as KeyRow;

pub async fn find_key<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
) -> Result<Option<KeyRow>, DbErr> {
    idempotency_key::Entity::find_by_id((scope.to_owned(), key.to_owned()))
        .one(conn)
        .await
}

/// Records the response a key's request produced, to replay it, unless the key has one
/// already: the first answer stands. `false` when it had one (an earlier attempt committed
/// it). Conditional in one statement, so two attempts racing cannot both record theirs.
pub async fn complete_key<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
    response: &str,
) -> Result<bool, DbErr> {
    let result = idempotency_key::Entity::update_many()
        .col_expr(idempotency_key::Column::Response, Expr::value(response))
        .filter(idempotency_key::Column::Scope.eq(scope))
        .filter(idempotency_key::Column::Key.eq(key))
        .filter(idempotency_key::Column::Response.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Forgets a key whose request failed before doing anything, so it may be retried.
pub async fn release_key<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
) -> Result<(), DbErr> {
    idempotency_key::Entity::delete_by_id((scope.to_owned(), key.to_owned()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Records a provider event as seen; `Err` with a unique violation when it already was.
pub async fn record_webhook_event<C: ConnectionTrait>(
    conn: &C,
    provider: &str,
    event_id: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    webhook_event::ActiveModel {
        provider: Set(provider.to_owned()),
        event_id: Set(event_id.to_owned()),
        received_at: Set(at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Payments whose outcome is unknown and due for another question to their provider.
pub async fn due_checks<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<PaymentRow>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::Status.eq(PaymentStatus::Unknown))
        .filter(payment::Column::NextCheckAt.lte(now))
        .order_by_asc(payment::Column::NextCheckAt)
        .limit(limit)
        .all(conn)
        .await
}

/// The first payment the checkout made for `order`, if any.
pub async fn order_charge<C: ConnectionTrait>(
    conn: &C,
    order: Uuid,
) -> Result<Option<PaymentRow>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::OrderId.eq(order))
        .filter(payment::Column::Source.eq("order"))
        .order_by_asc(payment::Column::CreatedAt)
        .one(conn)
        .await
}

/// Payments held by the fraud rules for a person, oldest first.
pub async fn reviews<C: ConnectionTrait>(
    conn: &C,
    page: PageRequest,
) -> Result<(Vec<PaymentRow>, u64), DbErr> {
    let query =
        payment::Entity::find().filter(payment::Column::Status.eq(PaymentStatus::RequiresReview));
    let total = query.clone().count(conn).await?;
    let rows = query
        .order_by_asc(payment::Column::CreatedAt)
        .order_by_asc(payment::Column::Id)
        .offset(page.offset())
        .limit(page.per_page())
        .all(conn)
        .await?;
    Ok((rows, total))
}

/// Reviews the fraud rules started before `before` and nobody decided.
pub async fn expired_reviews<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<PaymentRow>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::Status.eq(PaymentStatus::RequiresReview))
        .filter(payment::Column::Provider.eq(""))
        .filter(payment::Column::CreatedAt.lte(before))
        .order_by_asc(payment::Column::CreatedAt)
        .limit(limit)
        .all(conn)
        .await
}

/// Approved payments no provider answered for since before `before` (their process died).
pub async fn stalled_approvals<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<PaymentRow>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::Status.eq(PaymentStatus::Pending))
        .filter(payment::Column::Provider.eq(""))
        .filter(payment::Column::RetryToken.is_not_null())
        .filter(payment::Column::UpdatedAt.lte(before))
        .limit(limit)
        .all(conn)
        .await
}
