//! The log sink: stands in for a channel that has no provider configured (embedded mode,
//! local development, tests). It logs who would have received what, remembers the message in
//! a bounded in-memory ring, and always succeeds, so the rest of the pipeline behaves as in
//! production.
//!
//! Only the recipient and subject are logged: bodies carry one-time codes and reset links,
//! which must not end up in log storage. The full message stays in memory, readable through
//! [`LogSender::sent`] / [`SentLog::messages`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;

use super::support::wrong_channel;
use super::{Channel, Delivery, Message, SendError, Sender};

pub const NAME: &str = "log";
/// Enough to look back over a local session or a test run; bounded so a long-running
/// embedded deployment does not grow without limit.
pub const CAPACITY: usize = 1000;

/// The last [`CAPACITY`] messages recorded, oldest first. Cheap to clone; clones share the
/// ring.
#[derive(Debug, Clone, Default)]
pub struct SentLog {
    ring: Arc<Mutex<VecDeque<Message>>>,
}

impl SentLog {
    pub fn record(&self, message: Message) {
        let mut ring = self.lock();
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(message);
    }

    pub fn messages(&self) -> Vec<Message> {
        self.lock().iter().cloned().collect()
    }

    /// A panic while holding the lock cannot leave the ring half-updated (push and pop are
    /// each atomic with respect to it), so a poisoned lock is still good to use.
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Sender`] that logs instead of sending.
#[derive(Debug, Clone)]
pub struct LogSender {
    channel: Channel,
    log: SentLog,
}

impl LogSender {
    /// A sink for `channel` with a ring of its own.
    pub fn new(channel: Channel) -> Self {
        Self::with_log(channel, SentLog::default())
    }

    /// A sink for `channel` recording into `log`, which other sinks may share.
    pub fn with_log(channel: Channel, log: SentLog) -> Self {
        Self { channel, log }
    }

    /// What this sink accepted, oldest first (of the last [`CAPACITY`] in its ring).
    pub fn sent(&self) -> Vec<Message> {
        let mut messages = self.log.messages();
        messages.retain(|m| m.channel() == self.channel);
        messages
    }
}

impl Sender for LogSender {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, SendError>> {
        Box::pin(async move {
            // Same contract as the real senders, so a miswired channel shows up locally too.
            if message.channel() != self.channel {
                return Err(wrong_channel(self.channel, message));
            }
            tracing::info!(
                channel = %self.channel,
                message_id = %message.id,
                recipient = message.recipient.as_str(),
                subject = message.subject.as_str(),
                "no provider configured for this channel; logged instead of sent"
            );
            self.log.record(message.clone());
            Ok(Delivery {
                provider_message_id: Some(format!("log-{}", message.id)),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::EmailAddress;
    use crate::channels::Recipient;

    fn email(n: usize) -> Message {
        Message::new(
            Recipient::Email(EmailAddress::parse("a@b.co").unwrap()),
            format!("#{n}"),
            "body",
        )
    }

    #[tokio::test]
    async fn the_ring_keeps_the_last_thousand() {
        let sender = LogSender::new(Channel::Email);
        for n in 0..CAPACITY + 5 {
            sender.send(&email(n)).await.unwrap();
        }
        let sent = sender.sent();
        assert_eq!(sent.len(), CAPACITY);
        assert_eq!(sent[0].subject, "#5");
        assert_eq!(sent[CAPACITY - 1].subject, format!("#{}", CAPACITY + 4));
    }

    #[tokio::test]
    async fn the_wrong_channel_is_refused() {
        let sender = LogSender::new(Channel::Sms);
        let err = sender.send(&email(0)).await.unwrap_err();
        assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
        assert!(sender.sent().is_empty());
    }
}
