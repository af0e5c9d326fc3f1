//! The consumer runtime and idempotent handlers, on both transports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use platform_events::{Consumer, ConsumerConfig, Envelope, HandlerError, idempotency};
use platform_test_backends::{Backend, TestDatabase, eventually};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use support::{Kind, TestBus, happened};
use tokio_util::sync::CancellationToken;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(idempotency::migration::CreateProcessedEvents)]
    }
}

/// A consumer's own database: processed-event records and an `effects` table.
async fn effects_db(backend: Backend) -> (TestDatabase, DatabaseConnection) {
    let db = TestDatabase::create(backend).await;
    let conn = platform_db::connect(&db.config, "consumer").await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    conn.execute_unprepared("CREATE TABLE effects (event_id VARCHAR(64) NOT NULL)")
        .await
        .unwrap();
    (db, conn)
}

/// The effect of handling an event, applied once thanks to the processed-event record in the
/// same transaction. Returns whether it was applied now.
async fn apply(db: &DatabaseConnection, envelope: &Envelope) -> Result<bool, HandlerError> {
    let txn = db.begin().await?;
    let fresh = idempotency::first_time(&txn, "g", envelope.id).await?;
    if fresh {
        txn.execute_unprepared(&format!(
            "INSERT INTO effects (event_id) VALUES ('{}')",
            envelope.id
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(fresh)
}

async fn effects(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM effects",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// Waits (two seconds at most) for group `g` to have received every event of `test`.
async fn caught_up(bus: &TestBus) {
    let t = bus.transport.clone();
    eventually(
        "group g has read everything",
        Duration::from_secs(2),
        || {
            let t = t.clone();
            async move { t.lag("g", &["test".to_owned()]).await.unwrap() == 0 }
        },
    )
    .await
}

fn config(bus: &TestBus, consumer: &str) -> ConsumerConfig {
    ConsumerConfig {
        consumer: consumer.to_owned(),
        block: Duration::from_millis(100),
        ..ConsumerConfig::new("g", &bus.config)
    }
}

async fn a_consumer_killed_before_acking_is_replaced_and_the_effect_happens_once(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let (_db, effects_db) = effects_db(Backend::Sqlite).await;
    bus.transport
        .publish(&happened("order-1", 1))
        .await
        .unwrap();

    // Consumer A applies the effect, then dies before it can ack.
    let (applied, applied_rx) = tokio::sync::oneshot::channel();
    let applied = Arc::new(std::sync::Mutex::new(Some(applied)));
    let db = effects_db.clone();
    let doomed = Consumer::new(bus.transport.clone(), config(&bus, "a")).on(
        "test.happened",
        move |envelope: Envelope| {
            let db = db.clone();
            let applied = applied.clone();
            async move {
                apply(&db, &envelope).await?;
                if let Some(applied) = applied.lock().unwrap().take() {
                    let _ = applied.send(());
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        },
    );
    let a = tokio::spawn(doomed.run(CancellationToken::new()));
    tokio::time::timeout(Duration::from_secs(5), applied_rx)
        .await
        .unwrap()
        .unwrap();
    a.abort();

    // Consumer B takes the delivery over after the visibility timeout; the effect is not repeated.
    let handled = Arc::new(AtomicU32::new(0));
    let db = effects_db.clone();
    let counter = handled.clone();
    let survivor = Consumer::new(bus.transport.clone(), config(&bus, "b")).on(
        "test.happened",
        move |envelope: Envelope| {
            let db = db.clone();
            let counter = counter.clone();
            async move {
                apply(&db, &envelope).await?;
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
    );
    let stop = CancellationToken::new();
    let b = tokio::spawn(survivor.run(stop.clone()));
    eventually("redelivered to B", Duration::from_secs(5), || async {
        handled.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        handled.load(Ordering::SeqCst),
        1,
        "B acked it: no further redelivery"
    );
    assert_eq!(
        effects(&effects_db).await,
        1,
        "the effect happened exactly once"
    );
    stop.cancel();
    b.await.unwrap();
}

async fn a_consumer_killed_before_its_effect_leaves_the_effect_to_its_successor(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let (_db, effects_db) = effects_db(Backend::Sqlite).await;
    bus.transport
        .publish(&happened("order-2", 1))
        .await
        .unwrap();
    let (received, received_rx) = tokio::sync::oneshot::channel::<()>();
    let received = Arc::new(std::sync::Mutex::new(Some(received)));
    let doomed = Consumer::new(bus.transport.clone(), config(&bus, "a")).on(
        "test.happened",
        move |_: Envelope| {
            let received = received.clone();
            async move {
                if let Some(received) = received.lock().unwrap().take() {
                    let _ = received.send(());
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        },
    );
    let a = tokio::spawn(doomed.run(CancellationToken::new()));
    tokio::time::timeout(Duration::from_secs(5), received_rx)
        .await
        .unwrap()
        .unwrap();
    a.abort();

    let db = effects_db.clone();
    let survivor = Consumer::new(bus.transport.clone(), config(&bus, "b")).on(
        "test.happened",
        move |envelope: Envelope| {
            let db = db.clone();
            async move {
                apply(&db, &envelope).await?;
                Ok(())
            }
        },
    );
    let stop = CancellationToken::new();
    let b = tokio::spawn(survivor.run(stop.clone()));
    let db = effects_db.clone();
    eventually("the effect applied once", Duration::from_secs(5), || {
        let db = db.clone();
        async move { effects(&db).await == 1 }
    })
    .await;
    stop.cancel();
    b.await.unwrap();
}

async fn a_failing_handler_is_retried_then_dead_lettered_and_replay_delivers_once(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let broken = Arc::new(AtomicBool::new(true));
    let attempts = Arc::new(AtomicU32::new(0));
    let successes = Arc::new(AtomicU32::new(0));
    let mut cfg = config(&bus, "a");
    cfg.max_attempts = 3;
    let metrics = platform_metrics::Metrics::new("consumer-test");
    let consumer = Consumer::new(bus.transport.clone(), cfg)
        .with_metrics(metrics.clone())
        .on("test.happened", {
            let (broken, attempts, successes) =
                (broken.clone(), attempts.clone(), successes.clone());
            move |_: Envelope| {
                let (broken, attempts, successes) =
                    (broken.clone(), attempts.clone(), successes.clone());
                async move {
                    if broken.load(Ordering::SeqCst) {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        return Err::<(), HandlerError>("the handler is broken".into());
                    }
                    successes.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        });
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));
    let event = happened("order-3", 1);
    bus.transport.publish(&event).await.unwrap();

    let t = bus.transport.clone();
    eventually("one dead letter", Duration::from_secs(5), || {
        let t = t.clone();
        async move { t.dead_letters(10).await.unwrap().len() == 1 }
    })
    .await;
    let dead = bus.transport.dead_letters(10).await.unwrap().remove(0);
    assert_eq!(dead.attempts, 3);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "EVENTS_MAX_ATTEMPTS attempts, no more"
    );
    assert!(
        dead.error.contains("the handler is broken"),
        "{}",
        dead.error
    );
    assert_eq!(dead.event["id"], event.id.to_string());

    broken.store(false, Ordering::SeqCst);
    assert!(bus.transport.replay(&dead.id).await.unwrap());
    eventually(
        "the replayed event handled",
        Duration::from_secs(5),
        || async { successes.load(Ordering::SeqCst) == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        successes.load(Ordering::SeqCst),
        1,
        "replayed once, delivered once"
    );
    assert!(bus.transport.dead_letters(10).await.unwrap().is_empty());

    let text = metrics.render();
    assert!(text.contains(r#"events_dead_lettered_total{service="consumer-test",type="test.happened",consumer="g"} 1"#), "{text}");
    assert!(text.contains(r#"outcome="retry"} 2"#), "{text}");
    assert!(text.contains(r#"outcome="ok"} 1"#), "{text}");
    assert!(
        text.contains(r#"events_consumer_lag{service="consumer-test",consumer="g"}"#),
        "{text}"
    );

    stop.cancel();
    task.await.unwrap();
}

async fn a_panicking_handler_counts_as_a_failure(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let mut cfg = config(&bus, "a");
    cfg.max_attempts = 2;
    let consumer =
        Consumer::new(bus.transport.clone(), cfg).on("test.happened", |_: Envelope| async {
            if true {
                panic!("bad data");
            }
            Ok::<(), HandlerError>(())
        });
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));
    bus.transport
        .publish(&happened("order-4", 1))
        .await
        .unwrap();
    let t = bus.transport.clone();
    eventually("one dead letter", Duration::from_secs(5), || {
        let t = t.clone();
        async move { t.dead_letters(10).await.unwrap().len() == 1 }
    })
    .await;
    let dead = bus.transport.dead_letters(10).await.unwrap().remove(0);
    assert!(
        dead.error.contains("panicked") && dead.error.contains("bad data"),
        "{}",
        dead.error
    );
    stop.cancel();
    task.await.unwrap();
}

async fn events_without_a_handler_are_acknowledged_and_skipped(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let handled = Arc::new(AtomicU32::new(0));
    let consumer = Consumer::new(bus.transport.clone(), config(&bus, "a")).on("test.happened", {
        let handled = handled.clone();
        move |_: Envelope| {
            let handled = handled.clone();
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(consumer.run(stop.clone()));
    let noticed = platform_events::Envelope::new(
        "test-service",
        &support::Noticed {
            subject: "x".into(),
        },
    )
    .unwrap();
    bus.transport.publish(&noticed).await.unwrap();
    bus.transport.publish(&happened("x", 1)).await.unwrap();
    eventually("the event handled", Duration::from_secs(5), || async {
        handled.load(Ordering::SeqCst) == 1
    })
    .await;
    caught_up(&bus).await;
    stop.cancel();
    task.await.unwrap();
}

/// A batch handler that records each call's size and the events it accepted; it fails every
/// batch of more than one while `refuse` is set.
fn recording_batches(
    sizes: Arc<std::sync::Mutex<Vec<usize>>>,
    numbers: Arc<std::sync::Mutex<Vec<u32>>>,
    refuse: bool,
) -> impl Fn(Vec<Envelope>) -> futures::future::BoxFuture<'static, Result<(), HandlerError>> {
    move |envelopes: Vec<Envelope>| {
        let (sizes, numbers) = (sizes.clone(), numbers.clone());
        Box::pin(async move {
            sizes.lock().unwrap().push(envelopes.len());
            if refuse && envelopes.len() > 1 {
                return Err("refused".into());
            }
            numbers
                .lock()
                .unwrap()
                .extend(envelopes.iter().map(support::number));
            Ok(())
        })
    }
}

async fn a_family_handler_gets_a_read_at_once_and_a_failed_batch_one_by_one(kind: Kind) {
    let bus = TestBus::new(kind).await;
    bus.transport
        .subscribe("g", &["test".to_owned()])
        .await
        .unwrap();
    for (round, refuse) in [(0u32, true), (1, false)] {
        for n in 0..10 {
            bus.transport
                .publish(&happened("x", round * 10 + n))
                .await
                .unwrap();
        }
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let numbers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let consumer = Consumer::new(bus.transport.clone(), config(&bus, "a")).on_families(
            &["test"],
            recording_batches(sizes.clone(), numbers.clone(), refuse),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer.run(stop.clone()));
        eventually(
            &format!("round {round}"),
            Duration::from_secs(5),
            || async { numbers.lock().unwrap().len() >= 10 },
        )
        .await;
        caught_up(&bus).await;
        stop.cancel();
        task.await.unwrap();
        // A blocked read the stopped consumer left on Redis lives out its block time, and
        // would take the next round's first event (back only after the visibility timeout).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let expected: Vec<u32> = (round * 10..round * 10 + 10).collect();
        assert_eq!(*numbers.lock().unwrap(), expected, "each once, in order");
        let sizes = sizes.lock().unwrap().clone();
        if refuse {
            assert_eq!(sizes[0], 10, "the read's events together first");
            assert!(sizes[1..].iter().all(|&n| n == 1), "{sizes:?}");
        } else {
            assert_eq!(sizes, vec![10], "one call for the read");
        }
    }
    // Acked together: nothing comes back to another consumer after the visibility timeout.
    tokio::time::sleep(bus.config.visibility_timeout + Duration::from_millis(100)).await;
    let stale = bus
        .transport
        .claim_stale(
            "g",
            "b",
            &["test".to_owned()],
            bus.config.visibility_timeout,
            100,
        )
        .await
        .unwrap();
    assert!(stale.is_empty(), "{} came back", stale.len());
}

transport_tests!(
    a_family_handler_gets_a_read_at_once_and_a_failed_batch_one_by_one,
    a_consumer_killed_before_acking_is_replaced_and_the_effect_happens_once,
    a_consumer_killed_before_its_effect_leaves_the_effect_to_its_successor,
    a_failing_handler_is_retried_then_dead_lettered_and_replay_delivers_once,
    a_panicking_handler_counts_as_a_failure,
    events_without_a_handler_are_acknowledged_and_skipped,
);

async fn processed_events_are_recorded_once_and_only_when_committed(backend: Backend) {
    let (_db, conn) = effects_db(backend).await;
    let id = uuid::Uuid::now_v7();
    let txn = conn.begin().await.unwrap();
    assert!(idempotency::first_time(&txn, "g", id).await.unwrap());
    txn.rollback().await.unwrap();
    let txn = conn.begin().await.unwrap();
    assert!(
        idempotency::first_time(&txn, "g", id).await.unwrap(),
        "a rolled-back record does not count"
    );
    txn.commit().await.unwrap();
    assert!(!idempotency::first_time(&conn, "g", id).await.unwrap());
    assert!(
        idempotency::first_time(&conn, "another-consumer", id)
            .await
            .unwrap(),
        "per consumer"
    );
}

platform_test_backends::backend_tests!(processed_events_are_recorded_once_and_only_when_committed);
