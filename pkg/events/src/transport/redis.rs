//! The Redis Streams transport.
//!
//! Keys: `<namespace>.<family>` per family stream and `<namespace>.dead-letters`. The namespace
//! (default `events`) lets several platforms, or parallel tests, share one Redis.
//!
//! Blocking reads (`XREADGROUP … BLOCK`) hold their connection, so each consumer gets a
//! connection of its own; every other command goes over one shared multiplexed connection.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingCountReply,
    StreamRangeReply, StreamReadReply,
};
use tokio::sync::{Mutex, OnceCell};

use super::{BusError, DeadLetter, Delivery, Transport, decode, family_of, raw_json};
use crate::envelope::Envelope;

/// Redis Streams.
pub struct RedisTransport {
    client: redis::Client,
    namespace: String,
    /// Approximate cap of each stream's length (`MAXLEN ~`).
    max_len: usize,
    /// For every non-blocking command.
    shared: OnceCell<ConnectionManager>,
    /// One connection per consumer for blocking reads.
    blocking: Mutex<HashMap<String, ConnectionManager>>,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

const FIELD_EVENT: &str = "event";

fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
}

impl RedisTransport {
    /// `url` is a `redis://` URL; nothing connects until first use.
    pub fn new(url: &str, namespace: &str, max_len: usize) -> Result<Self, BusError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            namespace: namespace.to_owned(),
            max_len,
            shared: OnceCell::new(),
            blocking: Mutex::new(HashMap::new()),
        })
    }

    fn stream(&self, family: &str) -> String {
        format!("{}.{family}", self.namespace)
    }

    fn dead_letter_stream(&self) -> String {
        format!("{}.dead-letters", self.namespace)
    }

    async fn conn(&self) -> Result<ConnectionManager, BusError> {
        let manager = self
            .shared
            .get_or_try_init(|| {
                self.client
                    .get_connection_manager_with_config(manager_config(Duration::from_secs(5)))
            })
            .await?;
        Ok(manager.clone())
    }

    async fn blocking_conn(
        &self,
        consumer: &str,
        block: Duration,
    ) -> Result<ConnectionManager, BusError> {
        let mut connections = self.blocking.lock().await;
        if let Some(conn) = connections.get(consumer) {
            return Ok(conn.clone());
        }
        let conn = self
            .client
            .get_connection_manager_with_config(manager_config(block + Duration::from_secs(5)))
            .await?;
        connections.insert(consumer.to_owned(), conn.clone());
        Ok(conn)
    }

    fn delivery(&self, stream_key: &str, entry: &StreamId, deliveries: u32) -> Delivery {
        let family = stream_key
            .strip_prefix(&format!("{}.", self.namespace))
            .unwrap_or(stream_key)
            .to_owned();
        let raw = Self::raw_event(entry);
        let envelope = if raw.is_empty() {
            Err("message without an event field".to_owned())
        } else {
            decode(&raw)
        };
        Delivery {
            id: entry.id.clone(),
            family,
            envelope,
            raw,
            deliveries,
        }
    }

    fn raw_event(entry: &StreamId) -> String {
        entry.get::<String>(FIELD_EVENT).unwrap_or_default()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Transport for RedisTransport {
    fn system(&self) -> &'static str {
        "redis"
    }

    fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<String, BusError>> {
        Box::pin(async move {
            let json = serde_json::to_string(envelope)?;
            let mut conn = self.conn().await?;
            let id: String = redis::cmd("XADD")
                .arg(self.stream(family_of(&envelope.event_type)))
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg(FIELD_EVENT)
                .arg(json)
                .query_async(&mut conn)
                .await?;
            Ok(id)
        })
    }

    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        families: &'a [String],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            for family in families {
                let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(self.stream(family))
                    .arg(group)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await;
                match created {
                    Ok(()) => {}
                    Err(error) if error.code() == Some("BUSYGROUP") => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        group: &'a str,
        consumer: &'a str,
        families: &'a [String],
        count: usize,
        block: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BusError>> {
        Box::pin(async move {
            if families.is_empty() {
                tokio::time::sleep(block).await;
                return Ok(Vec::new());
            }
            let mut conn = self.blocking_conn(consumer, block).await?;
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count);
            if !block.is_zero() {
                cmd.arg("BLOCK").arg(millis(block));
            }
            cmd.arg("STREAMS");
            for family in families {
                cmd.arg(self.stream(family));
            }
            for _ in families {
                cmd.arg(">");
            }
            let reply: Option<StreamReadReply> = cmd.query_async(&mut conn).await?;
            Ok(reply
                .map(|reply| {
                    reply
                        .keys
                        .iter()
                        .flat_map(|key| {
                            key.ids
                                .iter()
                                .map(|entry| self.delivery(&key.key, entry, 1))
                        })
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    fn claim_stale<'a>(
        &'a self,
        group: &'a str,
        consumer: &'a str,
        families: &'a [String],
        min_idle: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BusError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let mut claimed = Vec::new();
            for family in families {
                let stream = self.stream(family);
                let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(group)
                    .arg(consumer)
                    .arg(millis(min_idle))
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await?;
                for entry in &reply.claimed {
                    // XAUTOCLAIM raised the delivery count; XPENDING tells it.
                    let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                        .arg(&stream)
                        .arg(group)
                        .arg(&entry.id)
                        .arg(&entry.id)
                        .arg(1)
                        .query_async(&mut conn)
                        .await?;
                    let deliveries = pending
                        .ids
                        .first()
                        .map(|p| u32::try_from(p.times_delivered).unwrap_or(u32::MAX))
                        .unwrap_or(1);
                    claimed.push(self.delivery(&stream, entry, deliveries));
                }
            }
            Ok(claimed)
        })
    }

    fn ack<'a>(
        &'a self,
        group: &'a str,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let _: u64 = redis::cmd("XACK")
                .arg(self.stream(&delivery.family))
                .arg(group)
                .arg(&delivery.id)
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn ack_many<'a>(
        &'a self,
        group: &'a str,
        deliveries: &'a [&'a Delivery],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            if deliveries.is_empty() {
                return Ok(());
            }
            // XACK takes many ids of one stream: one command per family in the read.
            let mut by_family: Vec<(&str, Vec<&str>)> = Vec::new();
            for delivery in deliveries {
                match by_family.iter_mut().find(|(f, _)| *f == delivery.family) {
                    Some((_, ids)) => ids.push(&delivery.id),
                    None => by_family.push((&delivery.family, vec![&delivery.id])),
                }
            }
            let mut conn = self.conn().await?;
            let mut pipe = redis::pipe();
            for (family, ids) in &by_family {
                pipe.cmd("XACK")
                    .arg(self.stream(family))
                    .arg(group)
                    .arg(ids);
            }
            let _: Vec<u64> = pipe.query_async(&mut conn).await?;
            Ok(())
        })
    }

    fn dead_letter<'a>(
        &'a self,
        group: &'a str,
        delivery: &'a Delivery,
        error: &'a str,
        attempts: u32,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let stream = self.stream(&delivery.family);
            // Recording the dead letter and acking happen together or not at all.
            let _: () = redis::pipe()
                .atomic()
                .cmd("XADD")
                .arg(self.dead_letter_stream())
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg("family")
                .arg(&delivery.family)
                .arg("group")
                .arg(group)
                .arg(FIELD_EVENT)
                .arg(&delivery.raw)
                .arg("error")
                .arg(error)
                .arg("attempts")
                .arg(attempts)
                .arg("dead_at")
                .arg(Utc::now().to_rfc3339())
                .ignore()
                .cmd("XACK")
                .arg(&stream)
                .arg(group)
                .arg(&delivery.id)
                .ignore()
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, BusError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let range: StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.dead_letter_stream())
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await?;
            Ok(range
                .ids
                .iter()
                .map(|entry| DeadLetter {
                    id: entry.id.clone(),
                    family: entry.get("family").unwrap_or_default(),
                    group: entry.get("group").unwrap_or_default(),
                    event: raw_json(&Self::raw_event(entry)),
                    error: entry.get("error").unwrap_or_default(),
                    attempts: entry.get("attempts").unwrap_or_default(),
                    dead_at: entry
                        .get::<String>("dead_at")
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or_default(),
                })
                .collect())
        })
    }

    fn replay<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, BusError>> {
        Box::pin(async move {
            // Redis refuses any other id with an error, which would read as the bus being down.
            if !is_stream_id(id) {
                return Ok(false);
            }
            let mut conn = self.conn().await?;
            let dead_letters = self.dead_letter_stream();
            let range: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&dead_letters)
                .arg(id)
                .arg(id)
                .query_async(&mut conn)
                .await?;
            let Some(entry) = range.ids.first() else {
                return Ok(false);
            };
            let family: String = entry.get("family").unwrap_or_default();
            let _: () = redis::pipe()
                .atomic()
                .cmd("XADD")
                .arg(self.stream(&family))
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg(FIELD_EVENT)
                .arg(Self::raw_event(entry))
                .ignore()
                .cmd("XDEL")
                .arg(&dead_letters)
                .arg(id)
                .ignore()
                .query_async(&mut conn)
                .await?;
            Ok(true)
        })
    }

    fn lag<'a>(
        &'a self,
        group: &'a str,
        families: &'a [String],
    ) -> BoxFuture<'a, Result<u64, BusError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let mut lag = 0u64;
            for family in families {
                let groups: Result<StreamInfoGroupsReply, _> = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(self.stream(family))
                    .query_async(&mut conn)
                    .await;
                let Ok(groups) = groups else { continue };
                if let Some(info) = groups.groups.iter().find(|g| g.name == group) {
                    lag += info.lag.unwrap_or(0) as u64;
                }
            }
            Ok(lag)
        })
    }

    fn history<'a>(
        &'a self,
        family: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Envelope>, BusError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let range: StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.stream(family))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await?;
            range
                .ids
                .iter()
                .map(|entry| decode(&Self::raw_event(entry)).map_err(BusError::Protocol))
                .collect()
        })
    }
}

/// Whether `id` is a complete Redis stream entry id: `<milliseconds>-<sequence>`.
fn is_stream_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq]
            .iter()
            .all(|part| part.bytes().all(|b| b.is_ascii_digit()) && part.parse::<u64>().is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::is_stream_id;

    #[test]
    fn only_complete_stream_ids_reach_redis() {
        for id in [
            "0-1",
            "1733400000000-0",
            "18446744073709551615-18446744073709551615",
        ] {
            assert!(is_stream_id(id), "{id}");
        }
        for id in [
            "",
            "-",
            "0",
            "0-",
            "-1",
            "+1-1",
            "1-+1",
            "a-1",
            "1-2-3",
            "no-such-dead-letter",
            "18446744073709551616-0",
            "1 -1",
        ] {
            assert!(!is_stream_id(id), "{id}");
        }
    }
}
