//! The delivery worker: takes due `queued` messages (each leased by one conditional
//! `UPDATE`, so replicas never send the same row at once and a crashed replica's leases
//! expire), sends them through the channel's [`Sender`](crate::channels::Sender), and writes
//! back the outcome through the [`DeliveryStatus`] state machine: `sent`; `queued` again with
//! backoff after a transient failure; `failed` after a permanent one or the last attempt (the
//! dead letter, kept with its error for the administrators' delivery list).
//!
//! Delivery is at least once: a replica that dies after the provider accepted a message but
//! before recording it sends it again when the lease expires.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use platform_http::CancellationToken;
use platform_metrics::histogram;
use platform_resilience::Backoff;

use crate::address::{DeviceToken, EmailAddress, PhoneNumber};
use crate::channels::{Channel, Message, Recipient, SendError, Senders};
use crate::domain::{Attempt, DeliveryStatus, QuietHours, Suppression};
use crate::repo::{self, AttemptRecord, NotificationRow};
use crate::service::Notifications;

/// Rows looked at per round.
const BATCH: u64 = 50;

pub struct Worker {
    notifications: Notifications,
    senders: Senders,
}

impl Worker {
    pub fn new(notifications: Notifications, senders: Senders) -> Self {
        Self {
            notifications,
            senders,
        }
    }

    /// Delivers until `shutdown`. A round in progress finishes first (each send is bounded by
    /// the provider timeout), so nothing is left half-recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = self.notifications.settings().poll_interval;
        loop {
            let handled = match self.round().await {
                Ok(handled) => handled,
                Err(error) => {
                    tracing::warn!(%error, "delivery round failed; retrying");
                    0
                }
            };
            if shutdown.is_cancelled() {
                return;
            }
            // A full batch means more may be due: go again at once.
            if handled as u64 >= BATCH {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.notifications.queued() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One round: claims what is due and delivers it, a few at a time.
    pub async fn round(&self) -> Result<usize, sea_orm::DbErr> {
        let db = self.notifications.db();
        let settings = self.notifications.settings();
        let now = Utc::now();
        let lease = chrono::Duration::from_std(settings.lease).unwrap_or(chrono::Duration::MAX);
        let mut claimed = Vec::new();
        for row in repo::due(db, now, BATCH).await? {
            if repo::claim(db, row.id, now, now + lease).await? {
                claimed.push(row);
            }
        }
        let count = claimed.len();
        futures::stream::iter(claimed)
            .for_each_concurrent(settings.concurrency, |row| self.deliver(row))
            .await;
        Ok(count)
    }

    async fn deliver(&self, row: NotificationRow) {
        let id = row.id;
        let Ok(channel) = Channel::parse(&row.channel) else {
            self.finish(
                &row,
                Attempt::GiveUp,
                Some("unknown channel".to_owned()),
                None,
            )
            .await;
            return;
        };
        if channel != Channel::InApp && row.recipient.is_none() {
            // An event's email that waited for its user's contact is due only when the wait
            // ends (the contact's arrival gives it an address and makes it due at once).
            let reason = Some(Suppression::NoAddress.as_str().to_owned());
            self.finish(&row, Attempt::Unreachable, reason, None).await;
            return;
        }
        let now = Utc::now();
        // Re-checked here: a retry may have become due inside the quiet hours.
        if QuietHours::applies_to(channel)
            && let Some(until) = self
                .notifications
                .settings()
                .quiet_hours
                .and_then(|quiet| quiet.deferral(now))
        {
            self.postpone(&row, until).await;
            return;
        }
        let message = match message_of(&row, channel) {
            Ok(message) => message,
            Err(reason) => {
                self.finish(&row, Attempt::GiveUp, Some(reason), None).await;
                return;
            }
        };
        let attempts = u32::try_from(row.attempts).unwrap_or(0) + 1;
        let max = self.notifications.settings().max_attempts;
        match self.senders.send(&message).await {
            Ok(delivery) => {
                tracing::info!(%id, %channel, "notification sent");
                self.finish(&row, Attempt::Delivered, None, delivery.provider_message_id)
                    .await;
            }
            Err(SendError::Transient(reason)) if attempts < max => {
                tracing::warn!(%id, %channel, attempts, %reason, "delivery failed; will retry");
                self.finish(&row, Attempt::Retry, Some(reason), None).await;
            }
            Err(error) => {
                let reason = match &error {
                    SendError::Transient(reason) => {
                        format!("gave up after {attempts} attempts: {reason}")
                    }
                    SendError::Permanent(reason) => reason.clone(),
                };
                tracing::error!(%id, %channel, attempts, %reason, "delivery failed for good; dead-lettered");
                self.finish(&row, Attempt::GiveUp, Some(reason), None).await;
            }
        }
    }

    /// Records an attempt's outcome through the state machine.
    async fn finish(
        &self,
        row: &NotificationRow,
        attempt: Attempt,
        reason: Option<String>,
        provider_message_id: Option<String>,
    ) {
        let Some(current) = DeliveryStatus::parse(&row.status) else {
            return;
        };
        let status = match current.after(attempt) {
            Ok(status) => status,
            Err(error) => {
                tracing::error!(id = %row.id, %error, "refusing an impossible transition");
                return;
            }
        };
        let attempts = row.attempts.saturating_add(1);
        let now = Utc::now();
        let settings = self.notifications.settings();
        let next_attempt_at = match attempt {
            Attempt::Retry => {
                let backoff = Backoff {
                    base: settings.retry_base,
                    max: settings.retry_max,
                };
                let wait = backoff.delay(u32::try_from(attempts).unwrap_or(1));
                now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero())
            }
            _ => now,
        };
        let sent_at = (status == DeliveryStatus::Sent).then_some(now);
        let record = AttemptRecord {
            status,
            attempts,
            reason,
            provider_message_id,
            next_attempt_at,
            sent_at,
        };
        match repo::record_attempt(self.notifications.db(), row, record).await {
            Ok(true) => {}
            Ok(false) => {
                // Given an address since it was read: the lease runs out and it is sent.
                tracing::info!(id = %row.id, "message changed while being handled; left for the next round");
                return;
            }
            Err(error) => {
                // The lease runs out and the message is tried again: at least once.
                tracing::error!(id = %row.id, %error, "cannot record a delivery attempt");
                return;
            }
        }
        let channel = Channel::parse(&row.channel).unwrap_or(Channel::InApp);
        let outcome = match attempt {
            Attempt::Delivered => "sent",
            Attempt::Retry => "retry",
            Attempt::GiveUp => "failed",
            Attempt::Unreachable => "suppressed",
        };
        self.notifications.count(channel, outcome);
        if attempt == Attempt::Delivered {
            let latency = latency(row.created_at, now);
            self.notifications.metrics().record(|| {
                histogram!("notification_delivery_latency_seconds", "channel" => channel.as_str())
                    .record(latency.as_secs_f64());
            });
        }
    }

    /// Puts a message back for later without counting an attempt.
    async fn postpone(&self, row: &NotificationRow, until: DateTime<Utc>) {
        let record = AttemptRecord {
            status: DeliveryStatus::Queued,
            attempts: row.attempts,
            reason: row.reason.clone(),
            provider_message_id: None,
            next_attempt_at: until,
            sent_at: None,
        };
        if let Err(error) = repo::record_attempt(self.notifications.db(), row, record).await {
            tracing::warn!(id = %row.id, %error, "cannot postpone a message");
        }
    }
}

fn latency(created: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - created).to_std().unwrap_or_default()
}

/// The stored row as a message for its channel. The recipient was validated when stored;
/// one that no longer parses is a permanent failure.
fn message_of(row: &NotificationRow, channel: Channel) -> Result<Message, String> {
    let raw = row.recipient.as_deref().unwrap_or_default();
    let recipient = match channel {
        Channel::Email => EmailAddress::parse(raw).map(Recipient::Email),
        Channel::Sms => PhoneNumber::parse(raw).map(Recipient::Sms),
        Channel::Push => DeviceToken::parse(raw).map(Recipient::Push),
        Channel::InApp => return Err("in-app messages are not sent".to_owned()),
    }
    .map_err(|e| e.to_string())?;
    let data = serde_json::from_str(&row.data).unwrap_or_else(|_| serde_json::json!({}));
    Ok(Message {
        // Our id travels with the message (the email's Message-ID), so a bounce or a
        // complaint leads back to this row.
        id: row.id,
        recipient,
        subject: row.subject.clone(),
        text: row.body.clone(),
        html: row.html.clone(),
        data,
    })
}
