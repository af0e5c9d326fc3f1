//! What the API returns: in-app notifications, delivery records and preferences.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::repo::NotificationRow;

/// Stored data is a JSON object we wrote ourselves; anything else reads as an empty object
/// rather than failing a whole page.
fn data_of(row: &NotificationRow) -> serde_json::Value {
    serde_json::from_str(&row.data).unwrap_or_else(|_| serde_json::json!({}))
}

/// One in-app notification, as the user's app shows it (and as SSE sends it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InAppView {
    pub id: Uuid,
    /// What it is about: an event type (`order.shipped`) or `direct`.
    #[schema(example = "order.shipped")]
    pub event_type: String,
    pub subject: String,
    pub body: String,
    /// Extras for the app, such as the order id to open.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

impl From<NotificationRow> for InAppView {
    fn from(row: NotificationRow) -> Self {
        Self {
            data: data_of(&row),
            id: row.id,
            event_type: row.topic,
            subject: row.subject,
            body: row.body,
            created_at: row.created_at,
            read_at: row.read_at,
        }
    }
}

/// One message and what became of it (administrators' view of the queue).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    pub user_id: Uuid,
    #[schema(example = "email")]
    pub channel: String,
    #[schema(example = "order.confirmed")]
    pub event_type: String,
    /// The event that caused it; absent for direct notifications.
    pub event_id: Option<Uuid>,
    /// The address it went to; absent for in-app, and while an event's email waits for the
    /// user's contact.
    pub recipient: Option<String>,
    pub subject: String,
    /// `queued`, `sent`, `failed` (a dead letter) or `suppressed`.
    #[schema(example = "sent")]
    pub status: String,
    /// Why it was suppressed (`opted_out`, `no_address`, `rate_limited`) or the last error;
    /// `awaiting_contact` while an event's email waits for the user's `user.registered`.
    pub reason: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub provider_message_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<NotificationRow> for DeliveryView {
    fn from(row: NotificationRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            channel: row.channel,
            event_type: row.topic,
            event_id: row.event_id,
            recipient: row.recipient,
            subject: row.subject,
            status: row.status,
            reason: row.reason,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            provider_message_id: row.provider_message_id,
            created_at: row.created_at,
            sent_at: row.sent_at,
        }
    }
}

/// A message created by `POST /api/v1/notifications`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedView {
    pub id: Uuid,
    pub channel: String,
    /// `queued` (delivered asynchronously), `sent` (in-app) or `suppressed`.
    pub status: String,
    pub reason: Option<String>,
}

/// The answer to `POST /api/v1/notifications`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AcceptedView {
    pub notifications: Vec<CreatedView>,
}

/// One channel's settings for the user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelPreferences {
    #[schema(example = "sms")]
    pub channel: String,
    /// Where it goes: the email on record or the one given, the phone number, the device
    /// token; absent for in-app and for channels without one.
    pub address: Option<String>,
    /// Whether each event type is on, after defaults (email and in-app on, SMS and push off
    /// until opted in).
    pub event_types: BTreeMap<String, bool>,
}

/// `GET /api/v1/notifications/preferences`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PreferencesView {
    pub channels: Vec<ChannelPreferences>,
}
