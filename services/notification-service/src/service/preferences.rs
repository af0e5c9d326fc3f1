//! Each user's choices: which channels and topics they want, and where each channel reaches
//! them; what they have not chosen falls back to each channel's default.

use chrono::Utc;
use uuid::Uuid;

use super::{ALL_TOPICS, Notifications, NotifyError, address, addresses_of, preference};
use crate::channels::{Channel, Recipient};
use crate::domain::{Topic, enabled_by_default};
use crate::repo::{self, PreferenceRow};
use crate::view::{ChannelPreferences, PreferencesView};

/// `POST /api/v1/notifications/subscribe`.
#[derive(Debug, Clone)]
pub struct SubscribeCommand {
    pub channel: Channel,
    /// Topics, or `None` for every topic (`*`).
    pub topics: Option<Vec<Topic>>,
    pub enabled: bool,
    pub address: Option<Recipient>,
}

impl Notifications {
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
        let addresses = addresses_of(&self.inner.db, user).await?;
        let contact = repo::find_contact(&self.inner.db, user).await?;
        Ok(address(channel, &addresses, contact.as_ref()).is_some())
    }

    pub async fn preferences(&self, user: Uuid) -> Result<PreferencesView, NotifyError> {
        let db = &self.inner.db;
        let preferences = repo::preferences_of(db, user).await?;
        let addresses = addresses_of(db, user).await?;
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
}
