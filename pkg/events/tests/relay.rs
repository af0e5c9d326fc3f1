//! The outbox relay: in order, at least once, exactly once across relays, through outages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use platform_events::transport::redis::RedisTransport;
use platform_events::{Envelope, Relay, Transport, outbox};
use platform_test_backends::{Backend, TestDatabase, eventually};
use sea_orm::{DatabaseConnection, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use support::{Kind, TestBus, happened, number};
use tokio_util::sync::CancellationToken;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(outbox::migration::CreateOutbox)]
    }
}

async fn outbox_db(backend: Backend) -> (TestDatabase, DatabaseConnection) {
    let db = TestDatabase::create(backend).await;
    let conn = platform_db::connect(&db.config, "producer").await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    (db, conn)
}

/// Commits `per_subject` state changes for each of `subjects` subjects, interleaved, each with
/// its event in the outbox.
async fn commit_changes(db: &DatabaseConnection, subjects: u32, per_subject: u32) -> Vec<Envelope> {
    let mut written = Vec::new();
    for n in 0..per_subject {
        for s in 0..subjects {
            let event = happened(&format!("subject-{s}"), n);
            let txn = db.begin().await.unwrap();
            outbox::enqueue(&txn, &event).await.unwrap();
            txn.commit().await.unwrap();
            written.push(event);
        }
    }
    written
}

/// Every event exactly once, and each subject's events in the order they were committed.
fn assert_exactly_once_in_order(published: &[Envelope], written: &[Envelope]) {
    let ids: HashSet<_> = published.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), published.len(), "no event published twice");
    assert_eq!(published.len(), written.len(), "no event lost");
    assert!(written.iter().all(|e| ids.contains(&e.id)));
    let mut last: HashMap<&str, u32> = HashMap::new();
    for event in published {
        let n = number(event);
        if let Some(previous) = last.insert(&event.subject, n) {
            assert!(
                n > previous,
                "{} published {n} after {previous}",
                event.subject
            );
        }
    }
}

async fn drain(db: &DatabaseConnection, relay: &Relay) {
    for _ in 0..1000 {
        relay.publish_pending().await.unwrap();
        if outbox::pending(db).await.unwrap() == 0 {
            return;
        }
    }
    panic!("the outbox did not drain");
}

async fn the_relay_publishes_every_row_in_order_and_marks_it(backend: Backend) {
    let (_db, conn) = outbox_db(backend).await;
    let bus = TestBus::new(Kind::Embedded).await;
    let written = commit_changes(&conn, 5, 30).await;
    let relay = Relay::new(conn.clone(), bus.transport.clone(), &bus.config);
    drain(&conn, &relay).await;
    let published = bus.transport.history("test", 10_000).await.unwrap();
    assert_exactly_once_in_order(&published, &written);
    let rows = outbox::all(&conn).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.published_at.is_some() && r.attempts == 1)
    );
}

async fn two_relays_on_one_outbox_publish_every_row_exactly_once(backend: Backend) {
    let (db, conn) = outbox_db(backend).await;
    let bus = TestBus::new(Kind::Embedded).await;
    let written = commit_changes(&conn, 20, 50).await;
    let mut config = bus.config.clone();
    config.batch = 25;
    let stop = CancellationToken::new();
    let mut relays = Vec::new();
    for _ in 0..2 {
        // Separate pools on the same database, as separate replicas would have.
        let pool = platform_db::connect(&db.config, "producer").await.unwrap();
        relays.push(tokio::spawn(
            Relay::new(pool, bus.transport.clone(), &config).run(stop.clone()),
        ));
    }
    eventually(
        "both relays drained the outbox",
        Duration::from_secs(60),
        || {
            let conn = conn.clone();
            async move { outbox::pending(&conn).await.unwrap() == 0 }
        },
    )
    .await;
    stop.cancel();
    for relay in relays {
        relay.await.unwrap();
    }
    let published = bus.transport.history("test", 10_000).await.unwrap();
    assert_exactly_once_in_order(&published, &written);
}

async fn a_bus_outage_delays_but_never_loses_duplicates_or_reorders_events(backend: Backend) {
    let (_db, conn) = outbox_db(backend).await;
    let bus = TestBus::new(Kind::Redis).await;

    // The relay first points at a port where nothing listens: Redis is "down".
    let down: Arc<dyn Transport> = Arc::new(
        RedisTransport::new("redis://127.0.0.1:1", &bus.config.namespace, 100_000).unwrap(),
    );
    let stop_down = CancellationToken::new();
    let relay_down =
        tokio::spawn(Relay::new(conn.clone(), down, &bus.config).run(stop_down.clone()));
    let written = commit_changes(&conn, 10, 100).await;
    assert_eq!(written.len(), 1000);
    assert_eq!(
        outbox::pending(&conn).await.unwrap(),
        1000,
        "nothing could be published"
    );
    let rows = outbox::all(&conn).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.attempts > 0 && r.last_error.is_some()),
        "failures are recorded"
    );
    stop_down.cancel();
    relay_down.await.unwrap();

    // Redis is back.
    let stop = CancellationToken::new();
    let relay = tokio::spawn(
        Relay::new(conn.clone(), bus.transport.clone(), &bus.config).run(stop.clone()),
    );
    eventually(
        "every event published once Redis is back",
        Duration::from_secs(60),
        || {
            let conn = conn.clone();
            async move { outbox::pending(&conn).await.unwrap() == 0 }
        },
    )
    .await;
    stop.cancel();
    relay.await.unwrap();
    let published = bus.transport.history("test", 10_000).await.unwrap();
    assert_exactly_once_in_order(&published, &written);
}

platform_test_backends::backend_tests!(
    the_relay_publishes_every_row_in_order_and_marks_it,
    two_relays_on_one_outbox_publish_every_row_exactly_once,
);

// The outage test needs Redis as well as its database.
platform_test_backends::variant_tests!(
    sqlite_redis,
    [platform_test_backends::Need::Redis],
    (Backend::Sqlite),
    a_bus_outage_delays_but_never_loses_duplicates_or_reorders_events,
);
platform_test_backends::variant_tests!(
    postgres_redis,
    [
        platform_test_backends::Need::Postgres,
        platform_test_backends::Need::Redis
    ],
    (Backend::Postgres),
    a_bus_outage_delays_but_never_loses_duplicates_or_reorders_events,
);
