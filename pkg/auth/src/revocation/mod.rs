//! Revoked access tokens: "user U's tokens below version V are refused", known to every
//! verifier within milliseconds.
//!
//! Access tokens are stateless, so logging out, changing a password, deleting an account or
//! changing a role would otherwise leave the old tokens working until they expire. Each user
//! has a token version (user-service keeps it; tokens carry it as `ver`); revoking raises the
//! user's minimum version here, and every verifier refuses tokens below it.
//!
//! Design notes (the why):
//!
//! - **The check is a synchronous in-memory lookup.** Verifiers (the gateway on every request)
//!   read a per-thread snapshot of the table, refreshed only when a generation counter moves;
//!   with no live revocation at all it is one atomic load. Nothing on the request path does
//!   I/O or takes a lock that other threads hold for more than a copy of an `Arc`.
//! - **Entries expire.** A revocation only needs to outlive the tokens it refuses: its TTL is
//!   the longest access-token lifetime (plus clock-skew margin), after which every token below
//!   the version has expired anyway. The table stays as small as the revocations of the last
//!   few minutes. Writes copy the table (copy-on-write snapshots), which is cheap at that size.
//! - **Shared through Redis when configured.** A key per user (`{prefix}:user:<id>`, value the
//!   minimum version, with the TTL) written by one script that only ever raises the version
//!   and publishes the change on `{prefix}:revoked`; every store subscribes. After every
//!   (re)subscribe the store reloads the live keys with `SCAN`, because messages published
//!   while it was disconnected are lost.
//! - **In-process otherwise.** Without Redis, every store of the process is the same one
//!   ([`Revocations::in_process`]): `platform up` hosts every service and the gateway in one
//!   process, so they all see each other's revocations.
//! - **Fail closed.** [`Revocations::revoke`] returns only once the revocation is stored (in
//!   Redis when shared); callers publish before committing the change that caused it, so a
//!   crash in between leaves tokens refused rather than working.

mod redis_store;
mod snapshot;
mod table;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform_redis::{RedisConfig, redis};
use tokio::sync::watch;

use crate::{TokenVersion, UserId};
use redis_store::Shared;

/// A revocation could not be stored, so other verifiers may not know it: the caller must not
/// go on with the change that caused it (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// Redis could not be reached, or refused the write.
    #[error("the revocation store is unavailable: {0}")]
    Unavailable(#[from] platform_redis::Error),
    /// Redis did not answer within 2 seconds.
    #[error("the revocation store did not answer in time")]
    Timeout,
}

impl From<redis::RedisError> for RevocationError {
    fn from(error: redis::RedisError) -> Self {
        RevocationError::Unavailable(platform_redis::Error::Redis(error))
    }
}

/// One user's revocation: tokens below `min` are refused until `until` (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    min: u64,
    until: i64,
}

type Table = HashMap<UserId, Entry>;

/// The revocation store of a process or a service. Cheap to clone.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

struct Inner {
    /// Unique per store: keys the per-thread snapshots.
    instance: u64,
    /// Moved on (after the table) at every change; a snapshot of another generation is stale.
    generation: AtomicU64,
    /// Entries in the table: at zero the request path stops at this one load.
    live: AtomicUsize,
    /// The current table. Readers take a copy of the `Arc`; writers replace the table.
    table: Mutex<Arc<Table>>,
    /// Woken at every change, for long-lived holders of a token (event streams).
    changes: watch::Sender<u64>,
    redis: Option<Shared>,
    /// Whether the listener is subscribed (always true without Redis).
    listening: AtomicBool,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("shared", &self.inner.redis.is_some())
            .field("live", &self.inner.live.load(Ordering::Relaxed))
            .finish()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Revocations {
    fn build(redis: Option<Shared>) -> Self {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let listening = redis.is_none();
        Self {
            inner: Arc::new(Inner {
                instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
                generation: AtomicU64::new(0),
                live: AtomicUsize::new(0),
                table: Mutex::new(Arc::new(Table::new())),
                changes: watch::channel(0).0,
                redis,
                listening: AtomicBool::new(listening),
            }),
        }
    }

    /// Through Redis when configured, else the process's own store.
    pub fn from_config(redis: Option<&RedisConfig>) -> Result<Self, platform_redis::Error> {
        match redis {
            Some(config) => Self::redis(config, "revocations"),
            None => Ok(Self::in_process()),
        }
    }

    /// Refuses `user`'s tokens below `below` for `ttl` (at least the longest access-token
    /// lifetime). Returns once stored: in Redis (and published) when shared, so an error
    /// means the revocation may not be known elsewhere and the caller must not go on.
    pub async fn revoke(
        &self,
        user: UserId,
        below: TokenVersion,
        ttl: Duration,
    ) -> Result<(), RevocationError> {
        let ttl_ms = millis(ttl).max(1);
        let min = match &self.inner.redis {
            None => below.get(),
            Some(shared) => shared.revoke(user, below, ttl_ms).await?,
        };
        self.inner.apply([(
            user,
            Entry {
                min,
                until: now_ms().saturating_add(ttl_ms),
            },
        )]);
        tracing::info!(user_id = %user, min_version = min, "access tokens revoked");
        Ok(())
    }

    /// Changes whenever a revocation arrives: holders of long-lived sessions (event streams)
    /// wait on it and then check their token again.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Whether revocations from other replicas are being received (always, without Redis).
    pub fn listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn holders_of_long_sessions_are_woken_by_a_revocation() {
        let store = Revocations::isolated();
        let mut changes = store.changes();
        store
            .revoke(UserId::generate(), TokenVersion::new(1), MINUTE)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), changes.changed())
            .await
            .unwrap()
            .unwrap();
    }
}
