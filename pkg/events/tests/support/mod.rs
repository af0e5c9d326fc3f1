//! Shared by the event suites: a private bus per test on either transport, and test events.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use platform_events::transport::embedded::EmbeddedTransport;
use platform_events::transport::redis::RedisTransport;
use platform_events::{Envelope, Event, EventsConfig, Transport};
use serde::{Deserialize, Serialize};

/// Which transport a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Redis,
}

/// A private bus: an embedded file in a temporary directory, or a namespace of its own on the
/// test Redis (its keys are deleted when the test ends).
pub struct TestBus {
    pub transport: Arc<dyn Transport>,
    pub config: EventsConfig,
    pub dir: tempfile::TempDir,
    _redis: Option<platform_test_backends::RedisNamespace>,
}

impl TestBus {
    pub async fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EventsConfig::embedded(dir.path());
        config.visibility_timeout = Duration::from_millis(300);
        config.retry_base = Duration::from_millis(10);
        config.retry_max = Duration::from_millis(50);
        config.relay_interval = Duration::from_millis(20);
        match kind {
            Kind::Embedded => {
                let transport =
                    Arc::new(EmbeddedTransport::open(dir.path(), 100_000).await.unwrap());
                Self {
                    transport,
                    config,
                    dir,
                    _redis: None,
                }
            }
            Kind::Redis => {
                let redis = platform_test_backends::RedisNamespace::create();
                config.redis = Some(platform_redis::RedisConfig::new(&redis.url));
                config.namespace = redis.namespace.clone();
                let transport =
                    Arc::new(RedisTransport::new(&redis.url, &redis.namespace, 100_000).unwrap());
                Self {
                    transport,
                    config,
                    dir,
                    _redis: Some(redis),
                }
            }
        }
    }
}

/// A test event: `test.happened` about `subject`, numbered `n`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Happened {
    pub subject: String,
    pub n: u32,
}

impl Event for Happened {
    const TYPE: &'static str = "test.happened";
    const SCHEMA_VERSION: u32 = 1;
    fn subject(&self) -> String {
        self.subject.clone()
    }
}

/// Another type of the same family, that tests subscribe to less often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noticed {
    pub subject: String,
}

impl Event for Noticed {
    const TYPE: &'static str = "test.noticed";
    const SCHEMA_VERSION: u32 = 1;
    fn subject(&self) -> String {
        self.subject.clone()
    }
}

pub fn happened(subject: &str, n: u32) -> Envelope {
    Envelope::new(
        "test-service",
        &Happened {
            subject: subject.to_owned(),
            n,
        },
    )
    .unwrap()
}

pub fn number(envelope: &Envelope) -> u32 {
    envelope.decode::<Happened>().unwrap().unwrap().n
}

/// Runs each listed `async fn(Kind)` on both transports, as `embedded::name` and `redis::name`.
#[macro_export]
macro_rules! transport_tests {
    ($($name:ident),* $(,)?) => {
        platform_test_backends::variant_tests!(
            embedded,
            [],
            ($crate::support::Kind::Embedded),
            $($name),*
        );
        platform_test_backends::variant_tests!(
            redis,
            [platform_test_backends::Need::Redis],
            ($crate::support::Kind::Redis),
            $($name),*
        );
    };
}
