//! Invalidation: per-key and whole-cache epochs (a load that straddles one is not cached),
//! the pub/sub message, and the listener that applies other replicas' invalidations.

use super::*;

/// Invalidation epochs: a load remembers them before it starts and is not cached if they
/// moved, because it may have read data older than the write that invalidated it.
pub(super) struct Epochs {
    pub(super) all: AtomicU64,
    pub(super) keys: [AtomicU64; EPOCH_STRIPES],
    pub(super) hasher: RandomState,
}

impl Epochs {
    pub(super) fn new() -> Self {
        Self {
            all: AtomicU64::new(0),
            keys: std::array::from_fn(|_| AtomicU64::new(0)),
            hasher: RandomState::new(),
        }
    }

    pub(super) fn stripe(&self, key: &str) -> &AtomicU64 {
        // The remainder is below EPOCH_STRIPES, so the cast cannot truncate.
        let index = (self.hasher.hash_one(key) % EPOCH_STRIPES as u64) as usize;
        &self.keys[index]
    }

    pub(super) fn snapshot(&self, key: &str) -> (u64, u64) {
        (
            self.all.load(Ordering::SeqCst),
            self.stripe(key).load(Ordering::SeqCst),
        )
    }

    pub(super) fn bump(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn bump_all(&self) {
        self.all.fetch_add(1, Ordering::SeqCst);
    }
}

/// The pub/sub message: which key (or all of them, `None`) and who sent it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Invalidation {
    pub(super) origin: String,
    pub(super) key: Option<String>,
}

/// What the listener did with a message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Applied {
    OwnMessage,
    Malformed,
    Key,
    All,
}

/// Why a listener session ended.
pub(super) enum SessionEnd {
    /// The cache was dropped.
    CacheGone,
    Lost {
        subscribed: bool,
        reason: String,
    },
}

/// Subscribes, applies messages, and resubscribes with backoff, until the cache is gone.
pub(super) async fn listen<V>(
    weak: &Weak<Inner<V>>,
    client: &redis::Client,
    channel: &str,
    name: &str,
) where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let mut backoff = BACKOFF_MIN;
    // Warn when the connection is first lost, not on every failed retry.
    let mut warned = false;
    loop {
        let (subscribed, reason) = match session(weak, client, channel).await {
            SessionEnd::CacheGone => return,
            SessionEnd::Lost { subscribed, reason } => (subscribed, reason),
        };
        if let Some(inner) = weak.upgrade() {
            inner.listener_connected.store(false, Ordering::Release);
            inner.counters.errors.increment(1);
        } else {
            return;
        }
        if subscribed {
            backoff = BACKOFF_MIN;
            warned = false;
        }
        if warned {
            tracing::debug!(cache = name, %reason, ?backoff, "invalidation listener still disconnected");
        } else {
            tracing::warn!(
                cache = name, %reason, ?backoff,
                "invalidation listener disconnected; L1 may serve values invalidated elsewhere until it reconnects"
            );
            warned = true;
        }
        // Full jitter, so replicas do not reconnect in lockstep after a Redis restart.
        let pause = jittered(backoff, 0.5, rand::random_range(0.0..=1.0));
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

pub(super) async fn session<V>(
    weak: &Weak<Inner<V>>,
    client: &redis::Client,
    channel: &str,
) -> SessionEnd
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = match tokio::time::timeout(LISTENER_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(error)) => {
            return SessionEnd::Lost {
                subscribed: false,
                reason: error.to_string(),
            };
        }
        Err(_) => {
            return SessionEnd::Lost {
                subscribed: false,
                reason: "connect timed out".to_owned(),
            };
        }
    };
    {
        let Some(inner) = weak.upgrade() else {
            return SessionEnd::CacheGone;
        };
        // Messages sent while we were not subscribed are lost: start from an empty L1.
        inner.forget_local_all();
        inner.listener_connected.store(true, Ordering::Release);
        tracing::debug!(
            cache = inner.name,
            channel,
            "invalidation listener subscribed"
        );
    }
    let (mut sink, mut stream) = pubsub.split();
    // A silently dropped connection never ends the stream; a ping notices.
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + LISTENER_PING_EVERY,
        LISTENER_PING_EVERY,
    );
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return SessionEnd::Lost { subscribed: true, reason: "connection closed".to_owned() };
                };
                let Some(inner) = weak.upgrade() else {
                    return SessionEnd::CacheGone;
                };
                inner.apply_remote(message.get_payload_bytes()).await;
            }
            _ = ping.tick() => {
                let reason = match tokio::time::timeout(LISTENER_CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => "ping timed out".to_owned(),
                };
                return SessionEnd::Lost { subscribed: true, reason };
            }
        }
    }
}

impl<V> LayeredCache<V>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Spawns the task that applies other replicas' invalidations to this L1; `None` when
    /// there is no L2 (a single instance has nobody to hear from) or the cache is disabled.
    /// It reconnects with backoff when Redis drops, and ends when `shutdown` completes (e.g.
    /// `token.cancelled_owned()`) or the last clone of this cache is dropped. Call it once.
    pub fn start_invalidation_listener<S>(&self, shutdown: S) -> Option<JoinHandle<()>>
    where
        S: Future<Output = ()> + Send + 'static,
    {
        let inner = &*self.inner;
        if !inner.enabled {
            return None;
        }
        let client = inner.l2.as_ref()?.client().clone();
        let channel = inner.channel.clone();
        let name = inner.name;
        let mut alive = inner._alive.subscribe();
        let weak = Arc::downgrade(&self.inner);
        Some(tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {}
                // Only ever errors: when the cache (the sender) is dropped.
                _ = alive.changed() => {}
                () = listen(&weak, &client, &channel, name) => {}
            }
            if let Some(inner) = weak.upgrade() {
                inner.listener_connected.store(false, Ordering::Release);
            }
            tracing::debug!(cache = name, "invalidation listener stopped");
        }))
    }
}

impl<V> Inner<V>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    pub(super) fn message(&self, key: Option<&str>) -> String {
        let message = Invalidation {
            origin: self.instance.clone(),
            key: key.map(str::to_owned),
        };
        // Two strings cannot fail to serialise; an empty message would be ignored anyway.
        serde_json::to_string(&message).unwrap_or_default()
    }

    pub(super) async fn apply_remote(&self, payload: &[u8]) -> Applied {
        let Ok(message) = serde_json::from_slice::<Invalidation>(payload) else {
            tracing::debug!(
                cache = self.name,
                "ignoring a malformed invalidation message"
            );
            return Applied::Malformed;
        };
        if message.origin == self.instance {
            return Applied::OwnMessage;
        }
        match message.key {
            Some(key) => {
                self.forget_local(&key).await;
                Applied::Key
            }
            None => {
                self.forget_local_all();
                Applied::All
            }
        }
    }
}
