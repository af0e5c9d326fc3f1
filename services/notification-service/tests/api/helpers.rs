//! `spawn_app`: the real notification service on random ports, over a private database, with
//! the event bus of the test's choice (the embedded bus file, or Redis Streams in a private
//! namespace) and a handle to publish events on it.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notification_service::channels::{ChannelsConfig, Senders};
use notification_service::{Application, NotificationServiceConfig};
use platform_auth::Role;
use platform_events::catalogue::UserRegistered;
use platform_events::transport::embedded::EmbeddedTransport;
use platform_events::transport::redis::RedisTransport;
use platform_events::{Envelope, Event, Transport};
use platform_testing::{Backend, RedisNamespace, TestDatabase};
use serde_json::Value;
use uuid::Uuid;

pub use platform_testing::eventually;
pub use platform_testing::http::{Actor, error_fields, json_of, problem};

/// A new user (or administrator) with a fresh token signed with the test secret.
pub fn actor(role: Role) -> Actor {
    platform_testing::http::actor(role, JWT_SECRET)
}

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// Which event bus the service consumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Embedded,
    Redis,
}

pub struct TestApp {
    /// First, so it is dropped first: the service stops before its database goes.
    _service: platform_testing::Spawned,
    /// Calls the service's HTTP API (and the tests, through `Deref`).
    http: platform_testing::TestApp,
    /// Publishes to the bus the service consumes from.
    pub bus: Arc<dyn Transport>,
    pub admin: Actor,
    pub user: Actor,
    /// Shares its record with the service's log senders (channels without a provider).
    pub log: Senders,
    /// Kept alive (dropped after the service) for the test's duration.
    _db: Arc<TestDatabase>,
    _redis: Option<RedisNamespace>,
}

/// The service with default test settings.
pub async fn spawn_app(backend: Backend, bus: Bus) -> TestApp {
    spawn_with(backend, bus, |_| {}).await
}

/// The service with its configuration adjusted by `customize` (providers, limits…).
pub async fn spawn_with(
    backend: Backend,
    bus: Bus,
    customize: impl FnOnce(&mut NotificationServiceConfig),
) -> TestApp {
    let redis = match bus {
        Bus::Redis => Some(RedisNamespace::create()),
        Bus::Embedded => None,
    };
    let db = Arc::new(TestDatabase::create(backend).await);
    let mut config = NotificationServiceConfig::for_tests(db.config.clone(), JWT_SECRET);
    let transport: Arc<dyn Transport> = match &redis {
        Some(redis) => {
            config.events.redis = Some(platform_redis::RedisConfig::new(&redis.url));
            config.events.namespace = redis.namespace.clone();
            Arc::new(RedisTransport::new(&redis.url, &redis.namespace, 10_000).unwrap())
        }
        None => Arc::new(EmbeddedTransport::open(db.dir(), 10_000).await.unwrap()),
    };
    customize(&mut config);
    // Senders built from `config.channels`, with a handle on the log sink kept here.
    let log = match config.senders.clone() {
        Some(senders) => senders,
        None => build_senders(&config.channels),
    };
    config.senders = Some(log.clone());
    let service = platform_testing::spawn::<Application>(config).await;
    TestApp {
        http: service.app(),
        _service: service,
        bus: transport,
        admin: actor(Role::Admin),
        user: actor(Role::User),
        log,
        _db: db,
        _redis: redis,
    }
}

fn build_senders(channels: &ChannelsConfig) -> Senders {
    channels.build().unwrap()
}

impl Deref for TestApp {
    type Target = platform_testing::TestApp;

    fn deref(&self) -> &platform_testing::TestApp {
        &self.http
    }
}

impl TestApp {
    pub async fn publish<E: Event>(&self, event: &E) -> Envelope {
        let envelope = Envelope::new("test", event).unwrap();
        self.bus.publish(&envelope).await.unwrap();
        envelope
    }

    /// Publishes `user.registered` for `who` (role from `role`) with `email`.
    pub async fn register(&self, who: &Actor, email: &str, role: &str) -> Envelope {
        self.publish(&UserRegistered {
            user_id: who.id,
            email: email.to_owned(),
            name: "Ada Lovelace".to_owned(),
            role: role.to_owned(),
        })
        .await
    }

    /// `POST /api/v1/notifications` as the administrator; asserts 202.
    pub async fn notify(&self, body: &Value) -> Value {
        json_of(
            self.post("/api/v1/notifications")
                .by(&self.admin)
                .json(body)
                .await,
            202,
        )
        .await
    }

    /// `POST /api/v1/notifications/subscribe` as `who`; asserts 200.
    pub async fn subscribe(&self, who: &Actor, body: &Value) -> Value {
        json_of(
            self.post("/api/v1/notifications/subscribe")
                .by(who)
                .json(body)
                .await,
            200,
        )
        .await
    }

    /// The in-app inbox of `who` (`query` like `?unread=true`).
    pub async fn inbox(&self, who: &Actor, query: &str) -> Value {
        json_of(
            self.get(&format!("/api/v1/notifications{query}"))
                .by(who)
                .await,
            200,
        )
        .await
    }

    /// The administrators' delivery list (`query` like `?user_id=…&channel=email`).
    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let page = json_of(
            self.get(&format!("/api/v1/notifications/deliveries{query}"))
                .by(&self.admin)
                .await,
            200,
        )
        .await;
        page["items"].as_array().unwrap().clone()
    }

    /// Waits until the messages of `user` number `count` and none is queued; returns them.
    pub async fn settled(&self, user: Uuid, count: usize) -> Vec<Value> {
        let query = format!("?user_id={user}");
        let mut last = Vec::new();
        let started = Instant::now();
        loop {
            let rows = self.deliveries(&query).await;
            if rows.len() == count && rows.iter().all(|r| r["status"] != "queued") {
                return rows;
            }
            if rows.len() != last.len() {
                last = rows;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "messages of {user} never settled at {count}: {last:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The message of `channel` among `rows`.
pub fn on<'r>(rows: &'r [Value], channel: &str) -> &'r Value {
    rows.iter()
        .find(|r| r["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} message in {rows:#?}"))
}

/// `smtp://127.0.0.1:{port}` with a sender, as `SMTP_*` would configure it.
pub fn smtp_channels(port: u16) -> ChannelsConfig {
    let mut env = platform_config::Env::from_pairs([
        ("SMTP_URL", format!("smtp://127.0.0.1:{port}")),
        ("SMTP_FROM", "Shop <no-reply@example.com>".to_owned()),
        ("NOTIFY_TIMEOUT", "5s".to_owned()),
    ]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    config
}

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const PROJECT: &str = "shop-test-1234";

/// Every provider configured: SMTP at `smtp_port`, Twilio and FCM at `api_base`.
pub fn all_channels(smtp_port: u16, twilio_base: &str, fcm_base: &str) -> ChannelsConfig {
    let mut env = platform_config::Env::from_pairs([
        ("SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}")),
        ("SMTP_FROM", "Shop <no-reply@example.com>".to_owned()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
        ("TWILIO_AUTH_TOKEN", "twilio-token".to_owned()),
        ("TWILIO_FROM", "+15550001111".to_owned()),
        ("TWILIO_BASE_URL", twilio_base.to_owned()),
        ("FCM_PROJECT_ID", PROJECT.to_owned()),
        ("FCM_ACCESS_TOKEN", "fcm-token".to_owned()),
        ("FCM_BASE_URL", fcm_base.to_owned()),
        ("NOTIFY_TIMEOUT", "5s".to_owned()),
    ]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    config
}
