//! Transports: where published events wait for their consumers.
//!
//! One [`Transport`] trait, two implementations with the same semantics, proven by one test
//! suite (`tests/transport.rs`):
//! - [`redis::RedisTransport`] (production, when `REDIS_URL` is set): one Redis stream per event
//!   family (`events.user`, `events.order`, …), one consumer group per consuming service,
//!   `XREADGROUP`/`XACK`, `XAUTOCLAIM` of messages left pending by a crashed consumer, a
//!   dead-letter stream, `MAXLEN ~` bounded streams;
//! - [`embedded::EmbeddedTransport`] (embedded mode): the same model in an SQLite file under
//!   `DATA_DIR`, so `platform up` needs no broker and loses nothing on a restart.
//!
//! Semantics both honour: at-least-once delivery to every group; a delivery stays pending until
//! acked and is handed to another consumer of the group once idle for the visibility timeout;
//! dead letters keep the error and attempt count and can be replayed (re-published to their
//! family's stream, which consumers' idempotency makes safe for groups that already had it).

pub mod embedded;
pub mod redis;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;

/// The family of an event type: what comes before the first dot (`user.registered` → `user`).
/// One stream per family keeps an aggregate's events in one ordered stream.
pub fn family_of(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// One message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The transport's id of the message (a stream entry id).
    pub id: String,
    /// The family stream it came from.
    pub family: String,
    /// The event, or why it could not be decoded (such a message goes to the dead letters).
    pub envelope: Result<Envelope, String>,
    /// The message body as stored, kept whole for the dead letters.
    pub raw: String,
    /// How many times it has been delivered to the group, this time included.
    pub deliveries: u32,
}

/// An event a consumer group gave up on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Id of the dead letter (used to replay it).
    pub id: String,
    /// The family stream the event came from.
    pub family: String,
    /// The consumer group that failed to handle it.
    pub group: String,
    /// The event as it was published (raw JSON: it may be what failed to decode).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    /// The handler's last error.
    pub error: String,
    /// Deliveries attempted.
    pub attempts: u32,
    /// When the group gave up on it.
    pub dead_at: DateTime<Utc>,
}

/// The transport failed (the broker is down, a reply made no sense, …).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis could not be reached or refused a command (Redis transport).
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The SQLite file of the embedded transport failed.
    #[error("event bus database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// An event could not be turned into (or, from the outbox, back from) JSON: a bug, not
    /// an outage; retrying does not help.
    #[error("cannot encode an event: {0}")]
    Encode(#[from] serde_json::Error),
    /// Anything else the transport could not make sense of: an unexpected reply, a malformed
    /// message id, an embedded bus file that would not open.
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

/// Where events travel from producers to consumer groups.
pub trait Transport: Send + Sync + 'static {
    /// The bus, as spans' `messaging.system` names it.
    fn system(&self) -> &'static str {
        "platform"
    }

    /// Appends `envelope` to its family's stream; returns the message id.
    fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<String, BusError>>;

    /// Makes sure `group` exists on each family's stream. A new group starts at the beginning
    /// of the retained stream, so events published before a consumer's first start are not
    /// missed.
    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        families: &'a [String],
    ) -> BoxFuture<'a, Result<(), BusError>>;

    /// Up to `count` messages never delivered to `group`, now pending for `consumer`; waits up
    /// to `block` when there are none.
    fn read<'a>(
        &'a self,
        group: &'a str,
        consumer: &'a str,
        families: &'a [String],
        count: usize,
        block: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BusError>>;

    /// Messages pending in `group` for longer than `min_idle` (their consumer died or hangs),
    /// now pending for `consumer`, with their delivery count raised.
    fn claim_stale<'a>(
        &'a self,
        group: &'a str,
        consumer: &'a str,
        families: &'a [String],
        min_idle: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BusError>>;

    /// Marks a delivery handled: it will not be delivered to `group` again.
    fn ack<'a>(
        &'a self,
        group: &'a str,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BusError>>;

    /// Marks several deliveries of one read handled, in as few round trips as the bus allows
    /// (one transaction, one `XACK` per stream). Either all are acked or the error says some
    /// may not be: unacked ones come back, which idempotent handlers make harmless.
    fn ack_many<'a>(
        &'a self,
        group: &'a str,
        deliveries: &'a [&'a Delivery],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            for delivery in deliveries {
                self.ack(group, delivery).await?;
            }
            Ok(())
        })
    }

    /// Moves a delivery to the dead letters (with its error and attempt count) and acks it, in
    /// one step.
    fn dead_letter<'a>(
        &'a self,
        group: &'a str,
        delivery: &'a Delivery,
        error: &'a str,
        attempts: u32,
    ) -> BoxFuture<'a, Result<(), BusError>>;

    /// The oldest `limit` dead letters.
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, BusError>>;

    /// Re-publishes a dead letter to its family's stream and removes it; `false` when there is
    /// no dead letter with that id.
    fn replay<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, BusError>>;

    /// Messages of `families` not yet delivered to `group` (consumer lag).
    fn lag<'a>(
        &'a self,
        group: &'a str,
        families: &'a [String],
    ) -> BoxFuture<'a, Result<u64, BusError>>;

    /// The oldest `limit` events retained in a family's stream, in stream order.
    fn history<'a>(
        &'a self,
        family: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Envelope>, BusError>>;
}

/// Decodes a stored message body.
pub(crate) fn decode(raw: &str) -> Result<Envelope, String> {
    serde_json::from_str(raw).map_err(|e| format!("undecodable event: {e}"))
}

/// The raw JSON of a message body, or the text as a JSON string when it is not JSON at all.
pub(crate) fn raw_json(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_owned()))
}
