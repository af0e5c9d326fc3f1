//! Test support shared by every service's integration tests.
//!
//! - Everything of `platform-test-backends`, re-exported: [`Backend`], [`TestDatabase`],
//!   [`backend_tests!`], [`RedisNamespace`], [`postgres_url`] and [`redis_url`].
//! - [`TestApp`]: the HTTP client every test calls a service with:
//!   `app.post(path).by(&actor).json(&body).await`, `app.metrics().await.sum(name, labels)`.
//! - [`spawn`]: a service started the way its binary would be, on free ports.
//! - [`outbox`]: the events a service wrote.
//! - [`http`]: assertions on problem documents and JSON bodies, callers with tokens.
//! - [`audit`]: [`AuditCapture`], an audit sink that keeps what a service recorded.
//! - [`grpc`]: gRPC callers with or without a service credential, a CA for mutual TLS, and
//!   the audit records a service published.
//! - [`process`]: stopping a binary under test with a signal, as an orchestrator would.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Test support: failing loudly on a broken test environment is the point.
#![allow(clippy::expect_used)]

pub mod audit;
pub mod grpc;
pub mod http;
pub mod otlp;
pub mod process;

pub use audit::AuditCapture;

pub use platform_test_backends::{
    Backend, Call, Credential, Metrics, Need, RedisNamespace, TestApp, TestDatabase, backend_tests,
    eventually, postgres_url, redis_tests, redis_url, skip, variant_tests, with_database,
};

use platform_db::DatabaseConfig;

/// Every event `service` wrote to its outbox (in its database `config`), in publication
/// order: (type, subject, the whole envelope as JSON).
pub async fn outbox(
    config: &DatabaseConfig,
    service: &str,
) -> Vec<(String, String, serde_json::Value)> {
    use platform_events::outbox::entity;
    use sea_orm::{EntityTrait, QueryOrder};
    let db = platform_db::connect(config, service)
        .await
        .expect("connect to the service's database");
    let rows = entity::Entity::find()
        .order_by_asc(entity::Column::Seq)
        .all(&db)
        .await
        .expect("read the outbox");
    let _ = db.close().await;
    rows.into_iter()
        .map(|row| (row.event_type, row.subject, row.envelope))
        .collect()
}

/// A service started by a test on free ports; stopped (gracefully) when dropped, so a test
/// that panics still shuts its service down.
#[derive(Debug)]
pub struct Spawned {
    /// `http://<addr>` of its HTTP API.
    pub base: String,
    /// Its gRPC address, when it serves gRPC.
    pub grpc: Option<std::net::SocketAddr>,
    stop: platform_http::CancellationToken,
}

impl Spawned {
    /// A [`TestApp`] calling its HTTP API.
    pub fn app(&self) -> TestApp {
        TestApp::new(&self.base)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Builds `S` from `config` (migrations included) and runs it in the background, the way its
/// binary would; the one way every service's integration tests start it.
pub async fn spawn<S: platform_http::Service>(config: S::Config) -> Spawned {
    let service = S::build(config).await.expect("the service starts");
    let base = format!("http://{}", service.http_addr());
    let grpc = service.grpc_addr();
    let stop = platform_http::CancellationToken::new();
    tokio::spawn(service.run(stop.clone()));
    Spawned { base, grpc, stop }
}
