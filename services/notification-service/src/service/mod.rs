//! The use cases: turning events and direct requests into messages (per preferences, through
//! templates, idempotently), the in-app inbox, preferences, and the administrators' view of
//! deliveries.
//!
//! Every message is a row written in one transaction with whatever caused it (for events:
//! with the event's idempotency record), so a crash loses nothing and a redelivery adds
//! nothing. In-app messages are complete once stored; email, SMS and push rows start
//! `queued` and the worker ([`crate::delivery`]) sends them.
//!
//! This parent holds the service type, what the use cases share (errors, content, plans,
//! the after-commit wake-ups, the preference and address rules) and the administrators'
//! view; each use case lives in a child: `events` (bus events), `direct` (the API's sends),
//! `plan` (the core every message goes through: one plan, one row per channel), `inbox` and
//! `preferences`.

mod direct;
mod events;
mod inbox;
mod plan;
mod preferences;

pub use direct::DirectCommand;
pub use preferences::SubscribeCommand;

use std::collections::HashMap;
use std::sync::Arc;

use platform_http::{Metrics, Page, PageRequest};
use platform_metrics::counter;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

use crate::address::{DeviceToken, EmailAddress, PhoneNumber};
use crate::channels::{Channel, Recipient};
use crate::config::DeliverySettings;
use crate::domain::{DeliveryStatus, Topic};
use crate::repo::{self, ContactRow, DeliveryFilter, PreferenceRow};
use crate::templates::{TemplateError, Templates};
use crate::view::DeliveryView;

/// Where a preference applies to every topic.
pub const ALL_TOPICS: &str = "*";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("not found")]
    NotFound,
    /// The named template cannot render with the data given (a client's mistake on the API).
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// An event whose payload does not match its type: no retry will fix it.
    #[error("malformed {event_type} event: {reason}")]
    MalformedEvent { event_type: String, reason: String },
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// What a message says.
#[derive(Debug, Clone)]
pub enum Content {
    /// A named template and the variables the caller supplies (the recipient's `name` and
    /// `email` are added when not given).
    Template { name: String, context: Value },
    /// Text given as it is.
    Literal { subject: String, body: String },
}

/// What to create for one recipient.
struct Plan {
    topic: Topic,
    event_id: Option<Uuid>,
    user: Uuid,
    only: Option<Channel>,
    content: Content,
    data: Value,
}

/// A row created in a transaction, for what happens after commit.
#[derive(Debug, Clone)]
struct Created {
    id: Uuid,
    user: Uuid,
    channel: Channel,
    status: DeliveryStatus,
    reason: Option<&'static str>,
}

/// The use cases. Cheap to clone.
#[derive(Clone)]
pub struct Notifications {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    templates: Templates,
    delivery: DeliverySettings,
    metrics: Metrics,
    /// Consumer group name and idempotency scope.
    group: String,
    /// User ids with new in-app notifications, for open SSE streams.
    in_app: broadcast::Sender<Uuid>,
    /// Wakes the delivery worker when messages were queued.
    queued: Notify,
}

impl Notifications {
    pub fn new(
        db: DatabaseConnection,
        templates: Templates,
        delivery: DeliverySettings,
        metrics: Metrics,
        group: &str,
    ) -> Self {
        // Streams that fall behind by this many wake-ups re-read the database anyway.
        let (in_app, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                db,
                templates,
                delivery,
                metrics,
                group: group.to_owned(),
                in_app,
                queued: Notify::new(),
            }),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn settings(&self) -> &DeliverySettings {
        &self.inner.delivery
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Resolves when messages were queued since the last call (or at once if they were).
    pub async fn queued(&self) {
        self.inner.queued.notified().await;
    }

    /// Ids of users who just got an in-app notification.
    pub fn in_app_wakes(&self) -> broadcast::Receiver<Uuid> {
        self.inner.in_app.subscribe()
    }

    /// `notifications_sent_total{channel,outcome}`.
    pub fn count(&self, channel: Channel, outcome: &'static str) {
        self.inner.metrics.record(|| {
            counter!("notifications_sent_total", "channel" => channel.as_str(), "outcome" => outcome)
                .increment(1);
        });
    }

    /// Wakes SSE streams and the worker, counts what was decided at creation.
    fn after_commit(&self, created: &[Created]) {
        let mut queued = false;
        for row in created {
            match row.status {
                DeliveryStatus::Sent => {
                    self.count(row.channel, "sent");
                    // No receivers is fine: nobody is streaming.
                    let _ = self.inner.in_app.send(row.user);
                }
                DeliveryStatus::Suppressed => self.count(row.channel, "suppressed"),
                DeliveryStatus::Queued => queued = true,
                DeliveryStatus::Failed => {}
            }
        }
        if queued {
            self.inner.queued.notify_one();
        }
    }

    // --- administration --------------------------------------------------------------------

    pub async fn deliveries(
        &self,
        filter: DeliveryFilter,
        page: PageRequest,
    ) -> Result<Page<DeliveryView>, NotifyError> {
        let (rows, total) = repo::deliveries(&self.inner.db, &filter, page).await?;
        Ok(page.into_page(rows.into_iter().map(DeliveryView::from).collect(), total))
    }
}

/// The user's explicit choice for `channel` and `topic`: the exact topic over `*`.
fn preference(preferences: &[PreferenceRow], channel: Channel, topic: Topic) -> Option<bool> {
    let of = |name: &str| {
        preferences
            .iter()
            .find(|p| p.channel == channel.as_str() && p.topic == name)
            .map(|p| p.enabled)
    };
    of(topic.as_str()).or_else(|| of(ALL_TOPICS))
}

/// The addresses the user gave, by channel name.
async fn addresses_of<C: ConnectionTrait>(
    conn: &C,
    user: Uuid,
) -> Result<HashMap<String, String>, DbErr> {
    Ok(repo::addresses_of(conn, user).await?.into_iter().collect())
}

/// Where `channel` reaches the user: the address they gave, else (email) the one they
/// registered with. Stored values were validated when given; one that no longer parses is
/// treated as absent.
fn address(
    channel: Channel,
    addresses: &HashMap<String, String>,
    contact: Option<&ContactRow>,
) -> Option<Recipient> {
    let given = addresses.get(channel.as_str()).map(String::as_str);
    match channel {
        Channel::Email => given
            .or(contact.map(|c| c.email.as_str()))
            .and_then(|raw| EmailAddress::parse(raw).ok())
            .map(Recipient::Email),
        Channel::Sms => given
            .and_then(|raw| PhoneNumber::parse(raw).ok())
            .map(Recipient::Sms),
        Channel::Push => given
            .and_then(|raw| DeviceToken::parse(raw).ok())
            .map(Recipient::Push),
        Channel::InApp => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn exact_topics_win_over_the_wildcard() {
        let row = |topic: &str, enabled| PreferenceRow {
            user_id: Uuid::nil(),
            channel: "sms".into(),
            topic: topic.into(),
            enabled,
            updated_at: Utc::now(),
        };
        let prefs = [row("*", true), row("order.failed", false)];
        assert_eq!(
            preference(&prefs, Channel::Sms, Topic::OrderShipped),
            Some(true)
        );
        assert_eq!(
            preference(&prefs, Channel::Sms, Topic::OrderFailed),
            Some(false)
        );
        assert_eq!(preference(&prefs, Channel::Email, Topic::OrderFailed), None);
    }
}
