//! The core every message goes through, whatever caused it: one plan becomes one row per
//! channel, each decided once (preferences, address, rate limit, quiet hours) inside the
//! caller's transaction; and emails that waited for their user's contact get their address.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    Content, Created, Notifications, NotifyError, Plan, address, addresses_of, preference,
};
use crate::channels::Channel;
use crate::domain::{DeliveryStatus, NotificationId, Suppression, enabled_by_default};
use crate::repo::{self, ContactRow, NotificationRow};
use crate::templates::Rendered;

impl Notifications {
    pub(super) async fn create<C: ConnectionTrait>(
        &self,
        conn: &C,
        plan: Plan,
    ) -> Result<Vec<Created>, NotifyError> {
        let contact = repo::find_contact(conn, plan.user).await?;
        let preferences = repo::preferences_of(conn, plan.user).await?;
        let addresses = addresses_of(conn, plan.user).await?;
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
    pub(super) async fn address_waiting<C: ConnectionTrait>(
        &self,
        conn: &C,
        contact: &ContactRow,
    ) -> Result<Vec<Created>, NotifyError> {
        let now = Utc::now();
        let waiting = repo::awaiting_contact(conn, contact.user_id, now).await?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let addresses = addresses_of(conn, contact.user_id).await?;
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
