//! Delivery channels: how one rendered notification reaches one address.
//!
//! A [`Sender`] delivers a [`Message`] over one [`Channel`] and says whether a failure is
//! worth retrying ([`SendError::Transient`]) or final ([`SendError::Permanent`]); retries,
//! backoff and preferences live above this layer. Implementations:
//!
//! - [`smtp`]: email through any SMTP relay (lettre, pooled connections).
//! - [`twilio`]: SMS through Twilio's Messages API.
//! - [`fcm`]: push through Firebase Cloud Messaging's HTTP v1 API.
//! - [`log`]: the stand-in for every channel without a provider (embedded mode, tests): logs
//!   and remembers what would have been sent.
//!
//! [`ChannelsConfig`] reads which providers are configured from the environment and
//! [`ChannelsConfig::build`] turns that into [`Senders`], one per channel.
//!
//! In-app notifications have a [`Channel`] but no sender: they are stored and read by the app,
//! not delivered to a third party.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use futures::future::BoxFuture;
use platform_metrics::Metrics;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::address::{DeviceToken, EmailAddress, PhoneNumber};

mod config;
pub mod fcm;
pub mod log;
pub mod smtp;
mod support;
pub mod twilio;

pub use config::{ChannelsConfig, DEFAULT_TIMEOUT};
pub use fcm::{FcmConfig, FcmSender};
pub use log::{LogSender, SentLog};
pub use smtp::{SmtpConfig, SmtpSender};
pub use twilio::{TwilioConfig, TwilioFrom, TwilioSender};

/// A way of reaching a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Push,
    InApp,
}

/// The text is not one of the channel names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}: expected email, sms, push or in_app")]
pub struct UnknownChannel(pub String);

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::Push, Channel::InApp];

    /// The name used in configuration, preferences and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::InApp => "in_app",
        }
    }

    /// Case-insensitive; `in-app` is accepted too since both spellings turn up in clients.
    pub fn parse(raw: &str) -> Result<Self, UnknownChannel> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            "push" => Ok(Channel::Push),
            "in_app" | "in-app" => Ok(Channel::InApp),
            _ => Err(UnknownChannel(raw.to_owned())),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = UnknownChannel;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

/// Who a message goes to; the variant decides the channel, so an SMS can never be addressed
/// to an email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", content = "address", rename_all = "snake_case")]
pub enum Recipient {
    Email(EmailAddress),
    Sms(PhoneNumber),
    Push(DeviceToken),
}

impl Recipient {
    pub fn channel(&self) -> Channel {
        match self {
            Recipient::Email(_) => Channel::Email,
            Recipient::Sms(_) => Channel::Sms,
            Recipient::Push(_) => Channel::Push,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Email(email) => email.as_str(),
            Recipient::Sms(phone) => phone.as_str(),
            Recipient::Push(token) => token.as_str(),
        }
    }
}

/// One rendered notification for one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Ours: sent along where the channel allows (the email's `Message-ID`), so a complaint
    /// about a delivered message can be traced back.
    pub id: Uuid,
    pub recipient: Recipient,
    /// The email subject or the push title; SMS has none and ignores it.
    pub subject: String,
    /// The plain-text body: the SMS, the push body, the email's text part.
    pub text: String,
    /// An HTML alternative for email; other channels ignore it.
    pub html: Option<String>,
    /// Structured extras for the app (push `data`: e.g. the order id to open). A JSON object.
    pub data: serde_json::Value,
}

impl Message {
    /// A text-only message with a fresh (time-ordered) id and no data.
    pub fn new(recipient: Recipient, subject: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            recipient,
            subject: subject.into(),
            text: text.into(),
            html: None,
            data: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn with_html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }

    pub fn channel(&self) -> Channel {
        self.recipient.channel()
    }
}

/// A message the provider accepted (not necessarily delivered yet: SMTP relays and push
/// services queue).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    /// The provider's id for it (Twilio's `SM…` sid, FCM's message name, the SMTP relay's
    /// queue reply), for matching delivery receipts and support cases. `None` when the
    /// provider gave none we could read.
    pub provider_message_id: Option<String>,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying with backoff: connection refused, timeout, 5xx, 429, SMTP 4xx.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Retrying would fail the same way: 4xx, SMTP 5xx, an invalid recipient, a message the
    /// provider cannot take, a misconfigured provider.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}

/// One provider for one channel.
pub trait Sender: Send + Sync {
    fn channel(&self) -> Channel;

    /// The provider, for logs and metrics (`smtp`, `twilio`, `fcm`, `log`).
    fn name(&self) -> &'static str;

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, SendError>>;
}

/// Why a sender could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// lettre's message; it never contains the URL's credentials.
    #[error("invalid SMTP_URL: {0}")]
    SmtpUrl(String),
    #[error("invalid SMTP_FROM: {0}")]
    SmtpFrom(String),
    /// lettre's connection pool starts a background task, which needs a Tokio runtime.
    #[error("the SMTP sender must be created inside a Tokio runtime")]
    NoRuntime,
}

/// One sender per deliverable channel. Cheap to clone.
#[derive(Clone)]
pub struct Senders {
    email: Arc<dyn Sender>,
    sms: Arc<dyn Sender>,
    push: Arc<dyn Sender>,
    /// Shared by the log senders this was created with, so everything they swallowed can be
    /// read in one place.
    sent_log: SentLog,
    /// Times every send (`provider_request_duration_seconds`).
    metrics: Option<Metrics>,
}

impl fmt::Debug for Senders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Senders")
            .field("email", &self.email.name())
            .field("sms", &self.sms.name())
            .field("push", &self.push.name())
            .finish_non_exhaustive()
    }
}

impl Default for Senders {
    fn default() -> Self {
        Self::logging()
    }
}

impl Senders {
    /// Log senders for every channel, sharing one [`SentLog`].
    pub fn logging() -> Self {
        let sent_log = SentLog::default();
        let log = |channel| -> Arc<dyn Sender> {
            Arc::new(LogSender::with_log(channel, sent_log.clone()))
        };
        Self {
            email: log(Channel::Email),
            sms: log(Channel::Sms),
            push: log(Channel::Push),
            sent_log,
            metrics: None,
        }
    }

    /// Times every send into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn with_email(mut self, sender: Arc<dyn Sender>) -> Self {
        self.email = sender;
        self
    }

    pub fn with_sms(mut self, sender: Arc<dyn Sender>) -> Self {
        self.sms = sender;
        self
    }

    pub fn with_push(mut self, sender: Arc<dyn Sender>) -> Self {
        self.push = sender;
        self
    }

    pub fn email(&self) -> &Arc<dyn Sender> {
        &self.email
    }

    pub fn sms(&self) -> &Arc<dyn Sender> {
        &self.sms
    }

    pub fn push(&self) -> &Arc<dyn Sender> {
        &self.push
    }

    /// The sender for `channel`; `None` for in-app, which is stored rather than sent.
    pub fn for_channel(&self, channel: Channel) -> Option<&Arc<dyn Sender>> {
        match channel {
            Channel::Email => Some(&self.email),
            Channel::Sms => Some(&self.sms),
            Channel::Push => Some(&self.push),
            Channel::InApp => None,
        }
    }

    /// The channels whose messages only go to the log, so start-up can say so.
    pub fn log_only(&self) -> Vec<Channel> {
        [&self.email, &self.sms, &self.push]
            .into_iter()
            .filter(|sender| sender.name() == log::NAME)
            .map(|sender| sender.channel())
            .collect()
    }

    /// What the log senders recorded, oldest first (the last [`log::CAPACITY`]).
    pub fn logged(&self) -> Vec<Message> {
        self.sent_log.messages()
    }

    /// Sends `message` with the sender for its recipient's channel.
    pub async fn send(&self, message: &Message) -> Result<Delivery, SendError> {
        let sender = match message.recipient {
            Recipient::Email(_) => &self.email,
            Recipient::Sms(_) => &self.sms,
            Recipient::Push(_) => &self.push,
        };
        let outcome = |error: &SendError| match error {
            SendError::Transient(_) => "transient",
            SendError::Permanent(_) => "permanent",
        };
        let call = sender.send(message);
        platform_outbound::observed(self.metrics.as_ref(), sender.name(), "send", call, outcome)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Ok(channel));
            assert_eq!(
                serde_json::to_value(channel).unwrap(),
                serde_json::json!(channel.as_str())
            );
        }
        assert_eq!(Channel::parse(" EMAIL "), Ok(Channel::Email));
        assert_eq!(Channel::parse("in-app"), Ok(Channel::InApp));
        assert!(Channel::parse("fax").is_err());
        assert!(Channel::parse("").is_err());
    }

    #[test]
    fn recipients_decide_the_channel() {
        let email = Recipient::Email(EmailAddress::parse("a@b.co").unwrap());
        let sms = Recipient::Sms(PhoneNumber::parse("+15551234567").unwrap());
        let push = Recipient::Push(DeviceToken::parse("tok").unwrap());
        assert_eq!(email.channel(), Channel::Email);
        assert_eq!(sms.channel(), Channel::Sms);
        assert_eq!(push.channel(), Channel::Push);
        assert_eq!(sms.as_str(), "+15551234567");
    }

    #[tokio::test]
    async fn senders_dispatch_by_recipient() {
        let senders = Senders::logging();
        assert_eq!(
            senders.log_only(),
            [Channel::Email, Channel::Sms, Channel::Push]
        );
        assert!(senders.for_channel(Channel::InApp).is_none());
        let sms = Message::new(
            Recipient::Sms(PhoneNumber::parse("+15551234567").unwrap()),
            "",
            "Your code is 123456",
        );
        senders.send(&sms).await.unwrap();
        let logged = senders.logged();
        assert_eq!(logged, [sms]);
    }
}
