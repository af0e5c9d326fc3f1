//! The use cases: turning events and direct requests into messages (per preferences, through
//! templates, idempotently), the in-app inbox, preferences, and the administrators' view of
//! deliveries.
//!
//! Every message is a row written in one transaction with whatever caused it (for events:
//! with the event's idempotency record), so a crash loses nothing and a redelivery adds
//! nothing. In-app messages are complete once stored; email, SMS and push rows start
//! `queued` and the worker ([`crate::delivery`]) sends them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use platform_events::catalogue::{
    InventoryLow, OrderConfirmed, OrderFacts, OrderFailed, OrderShipped, PaymentFacts,
    PaymentRefunded, PaymentReviewDecided, PaymentReviewRequested, UserDeleted, UserRegistered,
};
use platform_events::{Envelope, Event, idempotency};
use platform_http::{Metrics, Page, PageRequest};
use platform_metrics::counter;
use platform_money::{Currency, Money};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

use crate::address::{DeviceToken, EmailAddress, PhoneNumber};
use crate::channels::{Channel, Recipient};
use crate::config::DeliverySettings;
use crate::domain::{DeliveryStatus, NotificationId, Suppression, Topic, enabled_by_default};
use crate::repo::{self, ContactRow, DeliveryFilter, NotificationRow, PreferenceRow};
use crate::templates::{Rendered, TemplateError, Templates};
use crate::view::{
    AcceptedView, ChannelPreferences, CreatedView, DeliveryView, InAppView, PreferencesView,
};

/// Where a preference applies to every topic.
pub const ALL_TOPICS: &str = "*";
/// The role whose holders receive `inventory.low` and `payment.review_requested`.
const ADMIN_ROLE: &str = "admin";

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

/// A direct notification (`POST /api/v1/notifications`).
#[derive(Debug, Clone)]
pub struct DirectCommand {
    pub user: Uuid,
    /// One channel only; all the user's enabled channels when `None`.
    pub channel: Option<Channel>,
    pub content: Content,
    /// A JSON object for the app.
    pub data: Value,
}

/// `POST /api/v1/notifications/subscribe`.
#[derive(Debug, Clone)]
pub struct SubscribeCommand {
    pub channel: Channel,
    /// Topics, or `None` for every topic (`*`).
    pub topics: Option<Vec<Topic>>,
    pub enabled: bool,
    pub address: Option<Recipient>,
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

    // --- events ------------------------------------------------------------------------------

    /// Applies one event at most once: its messages and its idempotency record commit
    /// together.
    pub async fn handle_event(&self, envelope: &Envelope) -> Result<(), NotifyError> {
        let txn = platform_db::begin_write(&self.inner.db).await?;
        if !idempotency::first_time(&txn, &self.inner.group, envelope.id).await? {
            tracing::debug!(id = %envelope.id, r#type = %envelope.event_type, "event already handled");
            return Ok(());
        }
        let mut created = Vec::new();
        match envelope.event_type.as_str() {
            UserRegistered::TYPE => {
                let event: UserRegistered = decode(envelope)?;
                let contact = ContactRow {
                    user_id: event.user_id,
                    email: event.email,
                    name: event.name,
                    role: event.role,
                    updated_at: Utc::now(),
                };
                repo::upsert_contact(&txn, contact.clone()).await?;
                created.extend(self.address_waiting(&txn, &contact).await?);
                let plan = self.event_plan(
                    Topic::UserRegistered,
                    envelope,
                    event.user_id,
                    json!({}),
                    json!({}),
                );
                created.extend(self.create(&txn, plan).await?);
            }
            UserDeleted::TYPE => {
                let event: UserDeleted = decode(envelope)?;
                repo::delete_user(&txn, event.user_id).await?;
            }
            OrderConfirmed::TYPE => {
                let event: OrderConfirmed = decode(envelope)?;
                created.extend(
                    self.order(
                        &txn,
                        Topic::OrderConfirmed,
                        envelope,
                        &event.order,
                        json!({}),
                    )
                    .await?,
                );
            }
            OrderFailed::TYPE => {
                let event: OrderFailed = decode(envelope)?;
                // The template mentions a refund only when money was taken and given back;
                // whether anything was charged otherwise is the reason's to say.
                let refunded_display = if event.refunded > 0 {
                    display_money(event.refunded, &event.order.currency)
                } else {
                    String::new()
                };
                let extra = json!({
                    "reason": event.reason,
                    "refunded": event.refunded,
                    "refunded_display": refunded_display,
                });
                created.extend(
                    self.order(&txn, Topic::OrderFailed, envelope, &event.order, extra)
                        .await?,
                );
            }
            OrderShipped::TYPE => {
                let event: OrderShipped = decode(envelope)?;
                created.extend(
                    self.order(&txn, Topic::OrderShipped, envelope, &event.order, json!({}))
                        .await?,
                );
            }
            PaymentRefunded::TYPE => {
                let event: PaymentRefunded = decode(envelope)?;
                let facts = &event.payment;
                let context = json!({
                    "refund_display": display_money(event.refund_amount, &facts.currency),
                    "refunded_total_display": display_money(event.refunded_total, &facts.currency),
                });
                let data = payment_data(facts);
                let plan = self.event_plan(
                    Topic::PaymentRefunded,
                    envelope,
                    facts.user_id,
                    context,
                    data,
                );
                created.extend(self.create(&txn, plan).await?);
            }
            PaymentReviewRequested::TYPE => {
                let event: PaymentReviewRequested = decode(envelope)?;
                let facts = &event.payment;
                let context = json!({
                    "amount_display": display_money(facts.amount, &facts.currency),
                    "reasons_display": event.reasons.join(", "),
                });
                let data = payment_data(facts);
                let plan = self.event_plan(
                    Topic::PaymentReviewRequested,
                    envelope,
                    facts.user_id,
                    context.clone(),
                    data.clone(),
                );
                created.extend(self.create(&txn, plan).await?);
                for admin in repo::contacts_with_role(&txn, ADMIN_ROLE).await? {
                    // One message per event, user and channel: an administrator whose own
                    // payment is held got the customer's message (and should not review it).
                    if admin.user_id == facts.user_id {
                        continue;
                    }
                    let plan = self.event_plan_with(
                        Topic::PaymentReviewRequested,
                        REVIEW_WAITING_TEMPLATE,
                        envelope,
                        admin.user_id,
                        context.clone(),
                        data.clone(),
                    );
                    created.extend(self.create(&txn, plan).await?);
                }
            }
            PaymentReviewDecided::TYPE => {
                let event: PaymentReviewDecided = decode(envelope)?;
                let facts = &event.payment;
                let context = json!({
                    "amount_display": display_money(facts.amount, &facts.currency),
                });
                let plan = self.event_plan(
                    Topic::PaymentReviewDecided,
                    envelope,
                    facts.user_id,
                    context,
                    payment_data(facts),
                );
                created.extend(self.create(&txn, plan).await?);
            }
            InventoryLow::TYPE => {
                let event: InventoryLow = decode(envelope)?;
                let data = json!({ "product_id": event.product_id, "sku": event.sku });
                for admin in repo::contacts_with_role(&txn, ADMIN_ROLE).await? {
                    let plan = self.event_plan(
                        Topic::InventoryLow,
                        envelope,
                        admin.user_id,
                        json!({}),
                        data.clone(),
                    );
                    created.extend(self.create(&txn, plan).await?);
                }
            }
            // Subscribed families carry other types too; they are not ours.
            _ => {}
        }
        txn.commit().await?;
        self.after_commit(&created);
        Ok(())
    }

    async fn order<C: ConnectionTrait>(
        &self,
        conn: &C,
        topic: Topic,
        envelope: &Envelope,
        order: &OrderFacts,
        mut context: Value,
    ) -> Result<Vec<Created>, NotifyError> {
        if let Value::Object(map) = &mut context {
            map.insert(
                "total_display".to_owned(),
                Value::String(display_money(order.total, &order.currency)),
            );
        }
        let data = json!({ "order_id": order.order_id });
        let plan = self.event_plan(topic, envelope, order.user_id, context, data);
        self.create(conn, plan).await
    }

    /// A plan for an event: its topic's template gets the payload, `extra` and the recipient.
    fn event_plan(
        &self,
        topic: Topic,
        envelope: &Envelope,
        user: Uuid,
        extra: Value,
        data: Value,
    ) -> Plan {
        self.event_plan_with(topic, template_of(topic), envelope, user, extra, data)
    }

    /// [`Self::event_plan`] with another template than the topic's.
    fn event_plan_with(
        &self,
        topic: Topic,
        template: &str,
        envelope: &Envelope,
        user: Uuid,
        extra: Value,
        data: Value,
    ) -> Plan {
        let mut context = match &envelope.data {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        if let Value::Object(extra) = extra {
            context.extend(extra);
        }
        Plan {
            topic,
            event_id: Some(envelope.id),
            user,
            only: None,
            content: Content::Template {
                name: template.to_owned(),
                context: Value::Object(context),
            },
            data,
        }
    }

    // --- direct notifications --------------------------------------------------------------

    /// Queues a direct notification; rendering problems are the caller's (422).
    pub async fn send_direct(&self, command: DirectCommand) -> Result<AcceptedView, NotifyError> {
        let txn = platform_db::begin_write(&self.inner.db).await?;
        let created = self
            .create(
                &txn,
                Plan {
                    topic: Topic::Direct,
                    event_id: None,
                    user: command.user,
                    only: command.channel,
                    content: command.content,
                    data: command.data,
                },
            )
            .await?;
        txn.commit().await?;
        self.after_commit(&created);
        Ok(AcceptedView {
            notifications: created
                .into_iter()
                .map(|c| CreatedView {
                    id: c.id,
                    channel: c.channel.as_str().to_owned(),
                    status: c.status.as_str().to_owned(),
                    reason: c.reason.map(str::to_owned),
                })
                .collect(),
        })
    }

    // --- the core: one plan → one row per channel -------------------------------------------

    async fn create<C: ConnectionTrait>(
        &self,
        conn: &C,
        plan: Plan,
    ) -> Result<Vec<Created>, NotifyError> {
        let contact = repo::find_contact(conn, plan.user).await?;
        let preferences = repo::preferences_of(conn, plan.user).await?;
        let addresses: HashMap<String, String> = repo::addresses_of(conn, plan.user)
            .await?
            .into_iter()
            .collect();
        let rendered = self.render(&plan.content, contact.as_ref())?;
        let data = serde_json::to_string(&plan.data)
            .map_err(|e| DbErr::Json(format!("notification data: {e}")))?;
        let now = Utc::now();
        let channels: Vec<Channel> = match plan.only {
            Some(channel) => vec![channel],
            None => vec![Channel::InApp, Channel::Email, Channel::Sms, Channel::Push],
        };
        let mut created = Vec::new();
        // The rate limit's counts, asked once for every channel when the first needs them.
        let mut recent = None;
        for channel in channels {
            let explicit = preference(&preferences, channel, plan.topic);
            let enabled = explicit.unwrap_or_else(|| enabled_by_default(channel));
            let recipient = match channel {
                Channel::InApp => None,
                _ => address(channel, &addresses, contact.as_ref()),
            };
            // An event's email to a user whose `user.registered` has not been seen yet (it
            // travels on another stream) waits for it rather than being dropped.
            let waits = channel == Channel::Email
                && recipient.is_none()
                && contact.is_none()
                && plan.event_id.is_some();
            let decision = if !enabled {
                // A default-off channel nobody asked for is not worth a row per event.
                if explicit.is_none() && plan.only.is_none() {
                    continue;
                }
                Err(Suppression::OptedOut)
            } else if channel != Channel::InApp && recipient.is_none() && !waits {
                Err(Suppression::NoAddress)
            } else {
                self.within_rate(conn, &mut recent, plan.user, channel, now)
                    .await?
            };
            let (status, reason, next_attempt_at, sent_at) = match decision {
                Err(why) => (DeliveryStatus::Suppressed, Some(why.as_str()), now, None),
                // Stored is delivered, for in-app.
                Ok(()) if channel == Channel::InApp => (DeliveryStatus::Sent, None, now, Some(now)),
                // Due when the wait ends; the contact's arrival makes it due at once.
                Ok(()) if waits => (
                    DeliveryStatus::Queued,
                    Some(AWAITING_CONTACT),
                    now + chrono::Duration::from_std(self.inner.delivery.contact_wait)
                        .unwrap_or(chrono::Duration::MAX),
                    None,
                ),
                Ok(()) => {
                    let due = self
                        .inner
                        .delivery
                        .quiet_hours
                        .filter(|_| crate::domain::QuietHours::applies_to(channel))
                        .and_then(|quiet| quiet.deferral(now))
                        .unwrap_or(now);
                    (DeliveryStatus::Queued, None, due, None)
                }
            };
            let id = NotificationId::generate().as_uuid();
            repo::insert_notification(
                conn,
                NotificationRow {
                    id,
                    user_id: plan.user,
                    channel: channel.as_str().to_owned(),
                    topic: plan.topic.as_str().to_owned(),
                    event_id: plan.event_id,
                    recipient: recipient.as_ref().map(|r| r.as_str().to_owned()),
                    subject: rendered.subject.clone(),
                    body: rendered.text.clone(),
                    html: rendered.html.clone().filter(|_| channel == Channel::Email),
                    data: data.clone(),
                    status: status.as_str().to_owned(),
                    reason: reason.map(str::to_owned),
                    attempts: 0,
                    next_attempt_at,
                    claimed_until: None,
                    provider_message_id: None,
                    created_at: now,
                    sent_at,
                    read_at: None,
                    template: waits.then(|| stored_template(&plan.content)).flatten(),
                },
            )
            .await?;
            created.push(Created {
                id,
                user: plan.user,
                channel,
                status,
                reason,
            });
        }
        Ok(created)
    }

    fn render(
        &self,
        content: &Content,
        contact: Option<&ContactRow>,
    ) -> Result<Rendered, NotifyError> {
        match content {
            Content::Literal { subject, body } => Ok(Rendered {
                subject: subject.clone(),
                text: body.clone(),
                html: None,
            }),
            Content::Template { name, context } => {
                let mut context = match context {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                let name_of = contact.map_or("there", |c| c.name.as_str());
                context
                    .entry("name")
                    .or_insert_with(|| Value::String(name_of.to_owned()));
                if let Some(contact) = contact {
                    context
                        .entry("email")
                        .or_insert_with(|| Value::String(contact.email.clone()));
                }
                Ok(self.inner.templates.render(name, &Value::Object(context))?)
            }
        }
    }

    /// Gives the emails that waited for this user's contact their address, rendered again for
    /// the user (their name, not "there"). An address that does not parse leaves them waiting,
    /// to be suppressed when the wait ends.
    async fn address_waiting<C: ConnectionTrait>(
        &self,
        conn: &C,
        contact: &ContactRow,
    ) -> Result<Vec<Created>, NotifyError> {
        let now = Utc::now();
        let waiting = repo::awaiting_contact(conn, contact.user_id, now).await?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let addresses: HashMap<String, String> = repo::addresses_of(conn, contact.user_id)
            .await?
            .into_iter()
            .collect();
        let Some(recipient) = address(Channel::Email, &addresses, Some(contact)) else {
            return Ok(Vec::new());
        };
        let mut addressed = Vec::new();
        for row in waiting {
            let stored = Rendered {
                subject: row.subject.clone(),
                text: row.body.clone(),
                html: row.html.clone(),
            };
            let rendered = match row.template.as_deref().and_then(content_of) {
                // The text it was created with is kept if its template no longer renders.
                Some(content) => self.render(&content, Some(contact)).unwrap_or(stored),
                None => stored,
            };
            repo::address_waiting(conn, row.id, recipient.as_str(), &rendered, now).await?;
            addressed.push(Created {
                id: row.id,
                user: contact.user_id,
                channel: Channel::Email,
                status: DeliveryStatus::Queued,
                reason: None,
            });
        }
        tracing::info!(user_id = %contact.user_id, count = addressed.len(), "emails that waited for the user's contact are on their way");
        Ok(addressed)
    }

    /// `Err(RateLimited)` when the user already had their share of `channel` in the window.
    async fn within_rate<C: ConnectionTrait>(
        &self,
        conn: &C,
        recent: &mut Option<HashMap<Channel, u64>>,
        user: Uuid,
        channel: Channel,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Suppression>, DbErr> {
        let Some(limit) = self.inner.delivery.rate_limit else {
            return Ok(Ok(()));
        };
        let window = chrono::Duration::from_std(limit.window).unwrap_or(chrono::Duration::MAX);
        let since = now
            .checked_sub_signed(window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let counts = match recent {
            Some(counts) => counts,
            None => recent.insert(repo::count_recent_by_channel(conn, user, since).await?),
        };
        let recent = counts.get(&channel).copied().unwrap_or(0);
        Ok(if recent >= u64::from(limit.max) {
            Err(Suppression::RateLimited)
        } else {
            Ok(())
        })
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

    // --- the inbox ------------------------------------------------------------------------

    pub async fn inbox(
        &self,
        user: Uuid,
        unread_only: bool,
        page: PageRequest,
    ) -> Result<Page<InAppView>, NotifyError> {
        let (rows, total) = repo::inbox(&self.inner.db, user, unread_only, page).await?;
        Ok(page.into_page(rows.into_iter().map(InAppView::from).collect(), total))
    }

    pub async fn mark_read(&self, user: Uuid, id: NotificationId) -> Result<(), NotifyError> {
        if repo::mark_read(&self.inner.db, user, id).await? {
            Ok(())
        } else {
            Err(NotifyError::NotFound)
        }
    }

    /// In-app notifications after `after`, oldest first (an SSE stream's next batch).
    pub async fn in_app_after(
        &self,
        user: Uuid,
        after: Option<NotificationId>,
        limit: u64,
    ) -> Result<Vec<InAppView>, NotifyError> {
        let rows = repo::inbox_after(&self.inner.db, user, after, limit).await?;
        Ok(rows.into_iter().map(InAppView::from).collect())
    }

    pub async fn newest_in_app(&self, user: Uuid) -> Result<Option<NotificationId>, NotifyError> {
        Ok(repo::newest_in_app(&self.inner.db, user).await?)
    }

    // --- preferences -----------------------------------------------------------------------

    pub async fn subscribe(
        &self,
        user: Uuid,
        command: SubscribeCommand,
    ) -> Result<PreferencesView, NotifyError> {
        let txn = platform_db::begin_write(&self.inner.db).await?;
        let topics: Vec<String> = match &command.topics {
            Some(topics) => topics.iter().map(|t| t.as_str().to_owned()).collect(),
            None => vec![ALL_TOPICS.to_owned()],
        };
        let now = Utc::now();
        for topic in topics {
            repo::set_preference(
                &txn,
                PreferenceRow {
                    user_id: user,
                    channel: command.channel.as_str().to_owned(),
                    topic,
                    enabled: command.enabled,
                    updated_at: now,
                },
            )
            .await?;
        }
        if let Some(address) = &command.address {
            repo::set_address(&txn, user, command.channel, address.as_str()).await?;
        }
        txn.commit().await?;
        self.preferences(user).await
    }

    /// Whether the user has an address for `channel` (their own, or the email on record).
    pub async fn has_address(&self, user: Uuid, channel: Channel) -> Result<bool, NotifyError> {
        if channel == Channel::InApp {
            return Ok(true);
        }
        let addresses: HashMap<String, String> = repo::addresses_of(&self.inner.db, user)
            .await?
            .into_iter()
            .collect();
        let contact = repo::find_contact(&self.inner.db, user).await?;
        Ok(address(channel, &addresses, contact.as_ref()).is_some())
    }

    pub async fn preferences(&self, user: Uuid) -> Result<PreferencesView, NotifyError> {
        let db = &self.inner.db;
        let preferences = repo::preferences_of(db, user).await?;
        let addresses: HashMap<String, String> =
            repo::addresses_of(db, user).await?.into_iter().collect();
        let contact = repo::find_contact(db, user).await?;
        let channels = [Channel::Email, Channel::Sms, Channel::Push, Channel::InApp]
            .into_iter()
            .map(|channel| ChannelPreferences {
                channel: channel.as_str().to_owned(),
                address: address(channel, &addresses, contact.as_ref())
                    .map(|r| r.as_str().to_owned()),
                event_types: Topic::ALL
                    .into_iter()
                    .map(|topic| {
                        let enabled = preference(&preferences, channel, topic)
                            .unwrap_or_else(|| enabled_by_default(channel));
                        (topic.as_str().to_owned(), enabled)
                    })
                    .collect(),
            })
            .collect();
        Ok(PreferencesView { channels })
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

fn decode<E: Event>(envelope: &Envelope) -> Result<E, NotifyError> {
    serde_json::from_value(envelope.data.clone()).map_err(|e| NotifyError::MalformedEvent {
        event_type: envelope.event_type.clone(),
        reason: e.to_string(),
    })
}

/// What the app gets with a payment's messages.
fn payment_data(facts: &PaymentFacts) -> Value {
    json!({ "order_id": facts.order_id, "payment_id": facts.payment_id })
}

/// What administrators get for `payment.review_requested` (the customer gets the topic's own).
const REVIEW_WAITING_TEMPLATE: &str = "payment_review_waiting";

/// The built-in template of each event topic (for its customer, where a topic has several
/// audiences).
fn template_of(topic: Topic) -> &'static str {
    match topic {
        Topic::UserRegistered => "welcome",
        Topic::OrderConfirmed => "order_confirmed",
        Topic::OrderFailed => "order_failed",
        Topic::OrderShipped => "order_shipped",
        Topic::PaymentRefunded => "payment_refunded",
        Topic::PaymentReviewRequested => "payment_review_requested",
        Topic::PaymentReviewDecided => "payment_review_decided",
        Topic::InventoryLow => "inventory_low",
        // Direct notifications name their template (or give their text).
        Topic::Direct => "",
    }
}

/// `4999, EUR` → `49.99 EUR`; an unknown currency shows the raw minor units.
fn display_money(amount: i64, currency: &str) -> String {
    Currency::parse(currency)
        .ok()
        .and_then(|c| Money::new(amount, c).ok())
        .map_or_else(|| format!("{amount} {currency}"), |money| money.to_string())
}

/// The reason a queued email shows while it waits for its user's contact.
const AWAITING_CONTACT: &str = "awaiting_contact";

/// What a waiting email keeps to be rendered again: its template and variables.
fn stored_template(content: &Content) -> Option<String> {
    match content {
        Content::Template { name, context } => {
            Some(json!({"name": name, "context": context}).to_string())
        }
        Content::Literal { .. } => None,
    }
}

/// [`stored_template`] read back.
fn content_of(stored: &str) -> Option<Content> {
    let value: Value = serde_json::from_str(stored).ok()?;
    Some(Content::Template {
        name: value.get("name")?.as_str()?.to_owned(),
        context: value.get("context").cloned().unwrap_or(Value::Null),
    })
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
    use super::*;

    #[test]
    fn money_is_shown_in_major_units() {
        assert_eq!(display_money(4999, "EUR"), "49.99 EUR");
        assert_eq!(display_money(500, "JPY"), "500 JPY");
        assert_eq!(display_money(12, "XXX?"), "12 XXX?");
    }

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
