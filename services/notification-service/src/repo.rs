//! The tables and the queries over them. Every function takes any connection, so the use
//! cases choose what runs in one transaction. One code path for SQLite and PostgreSQL: the
//! worker's claim is a conditional `UPDATE` per row rather than `FOR UPDATE SKIP LOCKED`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use platform_http::PageRequest;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use crate::channels::Channel;
use crate::domain::{DeliveryStatus, NotificationId};

pub mod entities {
    pub mod contact {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "contacts")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: Uuid,
            pub email: String,
            pub name: String,
            pub role: String,
            pub updated_at: DateTimeUtc,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod preference {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "preferences")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub channel: String,
            #[sea_orm(primary_key, auto_increment = false)]
            pub topic: String,
            pub enabled: bool,
            pub updated_at: DateTimeUtc,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod address {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "addresses")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub channel: String,
            pub address: String,
            pub updated_at: DateTimeUtc,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod notification {
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "notifications")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub user_id: Uuid,
            pub channel: String,
            pub topic: String,
            pub event_id: Option<Uuid>,
            pub recipient: Option<String>,
            pub subject: String,
            pub body: String,
            pub html: Option<String>,
            pub data: String,
            pub status: String,
            pub reason: Option<String>,
            pub attempts: i32,
            pub next_attempt_at: DateTimeUtc,
            pub claimed_until: Option<DateTimeUtc>,
            pub provider_message_id: Option<String>,
            pub created_at: DateTimeUtc,
            pub sent_at: Option<DateTimeUtc>,
            pub read_at: Option<DateTimeUtc>,
            /// `{"name": …, "context": …}` while an email waits for its user's contact.
            pub template: Option<String>,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{address, contact, notification, preference};

pub use contact::Model as ContactRow;
pub use notification::Model as NotificationRow;
pub use preference::Model as PreferenceRow;

// --- contacts ------------------------------------------------------------------------------

/// Inserts or replaces the contact (a re-registration after deletion, a replayed event).
pub async fn upsert_contact<C: ConnectionTrait>(conn: &C, row: ContactRow) -> Result<(), DbErr> {
    contact::Entity::insert(contact::ActiveModel::from(row))
        .on_conflict(
            OnConflict::column(contact::Column::UserId)
                .update_columns([
                    contact::Column::Email,
                    contact::Column::Name,
                    contact::Column::Role,
                    contact::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub async fn find_contact<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
) -> Result<Option<ContactRow>, DbErr> {
    contact::Entity::find_by_id(user).one(conn).await
}

/// Everyone with `role`, oldest id first (bounded: administrators are few).
pub async fn contacts_with_role<C: ConnectionTrait>(
    conn: &C,
    role: &str,
) -> Result<Vec<ContactRow>, DbErr> {
    contact::Entity::find()
        .filter(contact::Column::Role.eq(role))
        .order_by_asc(contact::Column::UserId)
        .limit(1000)
        .all(conn)
        .await
}

/// Forgets a user: contact, preferences, addresses and messages.
pub async fn delete_user<C: ConnectionTrait>(conn: &C, user: Uuid) -> Result<(), DbErr> {
    contact::Entity::delete_by_id(user).exec(conn).await?;
    preference::Entity::delete_many()
        .filter(preference::Column::UserId.eq(user))
        .exec(conn)
        .await?;
    address::Entity::delete_many()
        .filter(address::Column::UserId.eq(user))
        .exec(conn)
        .await?;
    notification::Entity::delete_many()
        .filter(notification::Column::UserId.eq(user))
        .exec(conn)
        .await?;
    Ok(())
}

// --- preferences and addresses -----------------------------------------------------------

pub async fn preferences_of<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
) -> Result<Vec<PreferenceRow>, DbErr> {
    preference::Entity::find()
        .filter(preference::Column::UserId.eq(user))
        .order_by_asc(preference::Column::Channel)
        .order_by_asc(preference::Column::Topic)
        .all(conn)
        .await
}

pub async fn set_preference<C: ConnectionTrait>(conn: &C, row: PreferenceRow) -> Result<(), DbErr> {
    preference::Entity::insert(preference::ActiveModel::from(row))
        .on_conflict(
            OnConflict::columns([
                preference::Column::UserId,
                preference::Column::Channel,
                preference::Column::Topic,
            ])
            .update_columns([preference::Column::Enabled, preference::Column::UpdatedAt])
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The user's addresses by channel name.
pub async fn addresses_of<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
) -> Result<Vec<(String, String)>, DbErr> {
    address::Entity::find()
        .select_only()
        .column(address::Column::Channel)
        .column(address::Column::Address)
        .filter(address::Column::UserId.eq(user))
        .into_tuple()
        .all(conn)
        .await
}

pub async fn set_address<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
    channel: Channel,
    value: &str,
) -> Result<(), DbErr> {
    address::Entity::insert(address::ActiveModel {
        user_id: Set(user),
        channel: Set(channel.as_str().to_owned()),
        address: Set(value.to_owned()),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([address::Column::UserId, address::Column::Channel])
            .update_columns([address::Column::Address, address::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

// --- notifications ---------------------------------------------------------------------------

pub async fn insert_notification<C: ConnectionTrait>(
    conn: &C,
    row: NotificationRow,
) -> Result<(), DbErr> {
    notification::ActiveModel::from(row).insert(conn).await?;
    Ok(())
}

/// How many queued or sent notifications `user` has had since `since`, per channel (a channel
/// with none is absent): one grouped query for every channel a plan may use.
pub async fn count_recent_by_channel<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
    since: DateTime<Utc>,
) -> Result<HashMap<Channel, u64>, DbErr> {
    let rows: Vec<(String, i64)> = notification::Entity::find()
        .select_only()
        .column(notification::Column::Channel)
        .column_as(notification::Column::Id.count(), "n")
        .filter(notification::Column::UserId.eq(user))
        .filter(notification::Column::CreatedAt.gte(since))
        .filter(notification::Column::Status.is_in([
            DeliveryStatus::Queued.as_str(),
            DeliveryStatus::Sent.as_str(),
        ]))
        .group_by(notification::Column::Channel)
        .into_tuple()
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|(channel, n)| {
            let channel = Channel::parse(&channel)
                .map_err(|e| DbErr::Type(format!("notifications.channel: {e}")))?;
            Ok((channel, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

/// One page of a user's in-app notifications, newest first.
pub async fn inbox<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
    unread_only: bool,
    page: PageRequest,
) -> Result<(Vec<NotificationRow>, u64), DbErr> {
    let mut query = in_app_of(user);
    if unread_only {
        query = query.filter(notification::Column::ReadAt.is_null());
    }
    let total = query.clone().count(conn).await?;
    let rows = query
        .order_by_desc(notification::Column::Id)
        .offset(page.offset())
        .limit(page.per_page())
        .all(conn)
        .await?;
    Ok((rows, total))
}

fn in_app_of(user: Uuid) -> sea_orm::Select<notification::Entity> {
    notification::Entity::find()
        .filter(notification::Column::UserId.eq(user))
        .filter(notification::Column::Channel.eq(Channel::InApp.as_str()))
        .filter(notification::Column::Status.eq(DeliveryStatus::Sent.as_str()))
}

/// A user's in-app notifications after `after` (all when `None`), oldest first: what an SSE
/// stream sends next.
pub async fn inbox_after<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
    after: Option<NotificationId>,
    limit: u64,
) -> Result<Vec<NotificationRow>, DbErr> {
    let mut query = in_app_of(user);
    if let Some(after) = after {
        query = query.filter(notification::Column::Id.gt(after.as_uuid()));
    }
    query
        .order_by_asc(notification::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// The id of the user's newest in-app notification: where a fresh stream starts.
pub async fn newest_in_app<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
) -> Result<Option<NotificationId>, DbErr> {
    let id: Option<Uuid> = in_app_of(user)
        .select_only()
        .column(notification::Column::Id)
        .order_by_desc(notification::Column::Id)
        .limit(1)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(id.map(NotificationId::from_uuid))
}

/// Marks the user's in-app notification read; `false` when they have none with that id.
/// Reading twice keeps the first time.
pub async fn mark_read<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
    id: NotificationId,
) -> Result<bool, DbErr> {
    let mine = || {
        notification::Entity::find_by_id(id.as_uuid())
            .filter(notification::Column::UserId.eq(user))
            .filter(notification::Column::Channel.eq(Channel::InApp.as_str()))
    };
    if mine().count(conn).await? == 0 {
        return Ok(false);
    }
    notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(Utc::now()))
        .filter(notification::Column::Id.eq(id.as_uuid()))
        .filter(notification::Column::UserId.eq(user))
        .filter(notification::Column::ReadAt.is_null())
        .exec(conn)
        .await?;
    Ok(true)
}

/// Filters of the administrators' delivery list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub user: Option<Uuid>,
    pub status: Option<DeliveryStatus>,
    pub channel: Option<Channel>,
    pub topic: Option<String>,
}

/// One page of messages, newest first.
pub async fn deliveries<C: ConnectionTrait>(
    conn: &C,
    filter: &DeliveryFilter,
    page: PageRequest,
) -> Result<(Vec<NotificationRow>, u64), DbErr> {
    let mut query = notification::Entity::find();
    if let Some(user) = filter.user {
        query = query.filter(notification::Column::UserId.eq(user));
    }
    if let Some(status) = filter.status {
        query = query.filter(notification::Column::Status.eq(status.as_str()));
    }
    if let Some(channel) = filter.channel {
        query = query.filter(notification::Column::Channel.eq(channel.as_str()));
    }
    if let Some(topic) = &filter.topic {
        query = query.filter(notification::Column::Topic.eq(topic.as_str()));
    }
    let total = query.clone().count(conn).await?;
    let rows = query
        .order_by_desc(notification::Column::Id)
        .offset(page.offset())
        .limit(page.per_page())
        .all(conn)
        .await?;
    Ok((rows, total))
}

// --- the delivery queue ----------------------------------------------------------------------

/// Up to `limit` queued messages that are due and not leased, oldest first. Candidates only:
/// [`claim`] decides which this worker gets.
pub async fn due<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<NotificationRow>, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::Status.eq(DeliveryStatus::Queued.as_str()))
        .filter(notification::Column::NextAttemptAt.lte(now))
        .filter(unleased(now))
        .order_by_asc(notification::Column::NextAttemptAt)
        .limit(limit)
        .all(conn)
        .await
}

fn unleased(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(notification::Column::ClaimedUntil.is_null())
        .add(notification::Column::ClaimedUntil.lt(now))
}

/// Leases a queued message until `until`; `false` when another worker got it first. One
/// conditional `UPDATE`: two workers can never both match.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = notification::Entity::update_many()
        .col_expr(notification::Column::ClaimedUntil, Expr::value(until))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::Status.eq(DeliveryStatus::Queued.as_str()))
        .filter(unleased(now))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The outcome of one attempt, written back with the lease released.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub reason: Option<String>,
    pub provider_message_id: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Writes an attempt's outcome, only while the row is still queued (a finished message is
/// never moved back) and addressed as when `row` was read (a waiting email given its address
/// meanwhile is sent, not written off on a stale read). `false` when nothing was written.
pub async fn record_attempt<C: ConnectionTrait>(
    conn: &C,
    row: &NotificationRow,
    record: AttemptRecord,
) -> Result<bool, DbErr> {
    let addressed = match &row.recipient {
        Some(recipient) => notification::Column::Recipient.eq(recipient.as_str()),
        None => notification::Column::Recipient.is_null(),
    };
    let result = notification::Entity::update_many()
        .col_expr(
            notification::Column::Status,
            Expr::value(record.status.as_str()),
        )
        .col_expr(notification::Column::Attempts, Expr::value(record.attempts))
        .col_expr(notification::Column::Reason, Expr::value(record.reason))
        .col_expr(
            notification::Column::ProviderMessageId,
            Expr::value(record.provider_message_id),
        )
        .col_expr(
            notification::Column::NextAttemptAt,
            Expr::value(record.next_attempt_at),
        )
        .col_expr(notification::Column::SentAt, Expr::value(record.sent_at))
        .col_expr(
            notification::Column::ClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(notification::Column::Id.eq(row.id))
        .filter(notification::Column::Status.eq(DeliveryStatus::Queued.as_str()))
        .filter(addressed)
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The emails to `user` that wait for the user's contact: queued, with nowhere to go yet,
/// and not being handled by a worker (whose wait ended).
pub async fn awaiting_contact<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<NotificationRow>, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::UserId.eq(user))
        .filter(notification::Column::Channel.eq(Channel::Email.as_str()))
        .filter(notification::Column::Status.eq(DeliveryStatus::Queued.as_str()))
        .filter(notification::Column::Recipient.is_null())
        .filter(unleased(now))
        .all(conn)
        .await
}

/// A waiting email's address and text, now that its user's contact is known; due at once.
pub async fn address_waiting<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
    recipient: &str,
    rendered: &crate::templates::Rendered,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(notification::Column::Recipient, Expr::value(recipient))
        .col_expr(
            notification::Column::Subject,
            Expr::value(rendered.subject.as_str()),
        )
        .col_expr(
            notification::Column::Body,
            Expr::value(rendered.text.as_str()),
        )
        .col_expr(
            notification::Column::Html,
            Expr::value(rendered.html.clone()),
        )
        .col_expr(
            notification::Column::Template,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            notification::Column::Reason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(notification::Column::NextAttemptAt, Expr::value(now))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::Status.eq(DeliveryStatus::Queued.as_str()))
        .filter(notification::Column::Recipient.is_null())
        .filter(unleased(now))
        .exec(conn)
        .await?;
    Ok(())
}
