//! The notification domain: ids, what a notification is about ([`Topic`]), the delivery
//! state machine ([`DeliveryStatus`]), why a message was not sent ([`Suppression`]), and the
//! delivery policies (rate limit, quiet hours). Plain values, no SQL and no serde.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use uuid::Uuid;

use crate::channels::Channel;

/// One message to one user over one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotificationId(Uuid);

impl NotificationId {
    /// Time-ordered (v7), so that ids order in-app notifications and SSE streams can resume
    /// "after this id".
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a notification is about: one of the events this service turns into notifications,
/// or a direct notification posted through the API. Preferences are kept per topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    UserRegistered,
    OrderConfirmed,
    OrderFailed,
    OrderShipped,
    PaymentRefunded,
    /// A payment is held for review: the customer is told it is being checked, every
    /// administrator that a review is waiting.
    PaymentReviewRequested,
    /// A held payment was approved, declined or expired: the customer is told the outcome.
    PaymentReviewDecided,
    InventoryLow,
    /// Posted by an administrator or another service (`POST /api/v1/notifications`).
    Direct,
}

/// The text is not a topic users can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownTopic(pub String);

impl Topic {
    pub const ALL: [Topic; 9] = [
        Topic::UserRegistered,
        Topic::OrderConfirmed,
        Topic::OrderFailed,
        Topic::OrderShipped,
        Topic::PaymentRefunded,
        Topic::PaymentReviewRequested,
        Topic::PaymentReviewDecided,
        Topic::InventoryLow,
        Topic::Direct,
    ];

    /// The event type (`order.shipped`), or `direct`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::UserRegistered => "user.registered",
            Topic::OrderConfirmed => "order.confirmed",
            Topic::OrderFailed => "order.failed",
            Topic::OrderShipped => "order.shipped",
            Topic::PaymentRefunded => "payment.refunded",
            Topic::PaymentReviewRequested => "payment.review_requested",
            Topic::PaymentReviewDecided => "payment.review_decided",
            Topic::InventoryLow => "inventory.low",
            Topic::Direct => "direct",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, UnknownTopic> {
        Topic::ALL
            .into_iter()
            .find(|topic| topic.as_str() == raw.trim())
            .ok_or_else(|| UnknownTopic(raw.to_owned()))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message is in its life.
///
/// ```text
/// queued ──delivered──▶ sent
///   │ ▲
///   │ └──retry (transient failure, attempts left)
///   ├──give up (permanent failure, or the last attempt failed)──▶ failed
///   └──unreachable (an email still waiting for the user's contact when the wait ends)──▶ suppressed
/// suppressed: also decided at creation (opted out, no address, rate limited); never sent
/// ```
///
/// In-app messages are stored, which is their delivery: they start as `sent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Failed,
    Suppressed,
}

/// What happened to one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// A transient failure with attempts left: back to the queue, later.
    Retry,
    /// A permanent failure, or a transient one on the last attempt (the dead letter).
    GiveUp,
    /// Nothing to send it to: the event's email waited for the user's contact
    /// (`user.registered`, on another stream) and it never came. Not a provider's failure,
    /// so not a dead letter: the same outcome as an unknown address found at creation.
    Unreachable,
}

/// A transition the state machine does not allow (a finished message attempted again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {0} message cannot be attempted")]
pub struct InvalidTransition(pub DeliveryStatus);

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sent,
        DeliveryStatus::Failed,
        DeliveryStatus::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Suppressed => "suppressed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
    }

    /// The status after `attempt`; only queued messages are attempted.
    pub fn after(self, attempt: Attempt) -> Result<Self, InvalidTransition> {
        match (self, attempt) {
            (DeliveryStatus::Queued, Attempt::Delivered) => Ok(DeliveryStatus::Sent),
            (DeliveryStatus::Queued, Attempt::Retry) => Ok(DeliveryStatus::Queued),
            (DeliveryStatus::Queued, Attempt::GiveUp) => Ok(DeliveryStatus::Failed),
            (DeliveryStatus::Queued, Attempt::Unreachable) => Ok(DeliveryStatus::Suppressed),
            (finished, _) => Err(InvalidTransition(finished)),
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message was recorded as `suppressed` instead of being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// The user turned this channel off for this topic (or never turned an opt-in channel on).
    OptedOut,
    /// No address for the channel: no email on record, no phone number or device token.
    NoAddress,
    /// The user already had the allowed number of messages on this channel in the window.
    RateLimited,
}

impl Suppression {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppression::OptedOut => "opted_out",
            Suppression::NoAddress => "no_address",
            Suppression::RateLimited => "rate_limited",
        }
    }
}

/// Whether a channel is on for a topic when the user never said: email and in-app are
/// opt-out (on), SMS and push opt-in (off: they interrupt, and cost money per message).
pub fn enabled_by_default(channel: Channel) -> bool {
    matches!(channel, Channel::Email | Channel::InApp)
}

/// At most `max` messages per user per channel within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub window: Duration,
}

impl RateLimit {
    /// `20/1h`, `5/10m`, `100/1d`; `off` is no limit (`None`).
    pub fn parse(raw: &str) -> Result<Option<Self>, &'static str> {
        const EXPECTED: &str = "COUNT/WINDOW such as 20/1h or 5/10m, or off";
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (max, window) = raw.split_once('/').ok_or(EXPECTED)?;
        let max: u32 = max.trim().parse().map_err(|_| EXPECTED)?;
        let window = humantime_like(window.trim()).ok_or(EXPECTED)?;
        if max == 0 || window.is_zero() {
            return Err(EXPECTED);
        }
        Ok(Some(Self { max, window }))
    }
}

/// `30s`, `10m`, `1h`, `1d`: the one-unit durations a rate window is written in.
fn humantime_like(raw: &str) -> Option<Duration> {
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(seconds)?))
}

/// A daily window (UTC) in which SMS and push are held back until it ends; email and in-app
/// are not intrusive and go out at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    /// `22:00-07:00` (crossing midnight) or `12:00-13:30`.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        const EXPECTED: &str = "HH:MM-HH:MM in UTC, such as 22:00-07:00";
        let (start, end) = raw.trim().split_once('-').ok_or(EXPECTED)?;
        let time = |text: &str| NaiveTime::parse_from_str(text.trim(), "%H:%M").ok();
        let (start, end) = (time(start).ok_or(EXPECTED)?, time(end).ok_or(EXPECTED)?);
        if start == end {
            return Err(EXPECTED);
        }
        Ok(Self { start, end })
    }

    /// Whether `channel` is held back by quiet hours at all.
    pub fn applies_to(channel: Channel) -> bool {
        matches!(channel, Channel::Sms | Channel::Push)
    }

    /// When a message due `now` may go out: `None` outside the window, else the window's end.
    pub fn deferral(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let time = now.time();
        let inside = if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        };
        if !inside {
            return None;
        }
        let today_end = now.date_naive().and_time(self.end).and_utc();
        Some(if today_end > now {
            today_end
        } else {
            today_end + chrono::Duration::days(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn only_queued_messages_move() {
        use Attempt::*;
        use DeliveryStatus::*;
        assert_eq!(Queued.after(Delivered), Ok(Sent));
        assert_eq!(Queued.after(Retry), Ok(Queued));
        assert_eq!(Queued.after(GiveUp), Ok(Failed));
        assert_eq!(Queued.after(Unreachable), Ok(Suppressed));
        for finished in [Sent, Failed, Suppressed] {
            for attempt in [Delivered, Retry, GiveUp, Unreachable] {
                assert_eq!(finished.after(attempt), Err(InvalidTransition(finished)));
            }
        }
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn topics_round_trip() {
        for topic in Topic::ALL {
            assert_eq!(Topic::parse(topic.as_str()), Ok(topic));
        }
        assert_eq!(
            Topic::parse("payment.review_requested"),
            Ok(Topic::PaymentReviewRequested)
        );
        assert_eq!(
            Topic::parse("payment.review_decided"),
            Ok(Topic::PaymentReviewDecided)
        );
        assert!(Topic::parse("order.created").is_err());
    }

    #[test]
    fn rate_limits_parse() {
        assert_eq!(
            RateLimit::parse("20/1h"),
            Ok(Some(RateLimit {
                max: 20,
                window: Duration::from_secs(3600)
            }))
        );
        assert_eq!(RateLimit::parse("off"), Ok(None));
        for bad in ["", "20", "0/1h", "5/0m", "x/1h", "5/1w", "5/h"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quiet_hours_defer_to_their_end() {
        let night = QuietHours::parse("22:00-07:00").unwrap();
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).unwrap();
        assert_eq!(night.deferral(at(12, 0)), None);
        assert_eq!(night.deferral(at(7, 0)), None);
        assert_eq!(
            night.deferral(at(23, 30)),
            Some(at(7, 0) + chrono::Duration::days(1))
        );
        assert_eq!(night.deferral(at(3, 0)), Some(at(7, 0)));
        let lunch = QuietHours::parse("12:00-13:30").unwrap();
        assert_eq!(lunch.deferral(at(12, 15)), Some(at(13, 30)));
        assert_eq!(lunch.deferral(at(13, 30)), None);
        for bad in ["", "22:00", "25:00-01:00", "10:00-10:00"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
        assert!(QuietHours::applies_to(Channel::Sms) && !QuietHours::applies_to(Channel::Email));
    }
}
