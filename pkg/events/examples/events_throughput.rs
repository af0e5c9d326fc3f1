//! Events per second through the whole pipeline: outbox rows → relay → bus → consumer (ack).
//!
//! Pre-fills an SQLite outbox with N events over 100 subjects, then starts a relay and a
//! consumer and times until the consumer has handled all N. Runs the embedded bus and Redis
//! Streams (when `REDIS_URL` is set) in one run and prints both and their ratio.
//!
//! `cargo run --release -p platform-events --example events_throughput -- 20000`
//! (or `scripts/bench-events.sh`, which also starts Redis).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use platform_events::catalogue::UserUpdated;
use platform_events::{Consumer, ConsumerConfig, Envelope, EventsConfig, Relay, outbox};
use sea_orm::TransactionTrait;
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(outbox::migration::CreateOutbox)]
    }
}

async fn run(label: &str, mut events: EventsConfig, n: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    events.data_dir = dir.path().to_path_buf();
    let db = platform_db::connect(&platform_db::DatabaseConfig::sqlite(dir.path()), "producer")
        .await
        .unwrap();
    Migrator::up(&db, None).await.unwrap();
    eprintln!("[{label}] writing {n} events to the outbox...");
    let subjects: Vec<uuid::Uuid> = (0..100).map(|_| uuid::Uuid::now_v7()).collect();
    for chunk in 0..n.div_ceil(1000) {
        let txn = db.begin().await.unwrap();
        for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
            let event = Envelope::new(
                "bench",
                &UserUpdated {
                    user_id: subjects[(i % 100) as usize],
                    name: format!("name {i}"),
                    changed: vec!["name".into()],
                },
            )
            .unwrap();
            outbox::enqueue(&txn, &event).await.unwrap();
        }
        txn.commit().await.unwrap();
    }

    let transport = events.connect().await.unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let consumer = Consumer::new(
        transport.clone(),
        ConsumerConfig::new(&format!("bench-{}", uuid::Uuid::new_v4().simple()), &events),
    )
    .on("user.updated", {
        let handled = handled.clone();
        move |_: Envelope| {
            let handled = handled.clone();
            async move {
                handled.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    });
    let stop = CancellationToken::new();
    eprintln!("[{label}] relaying and consuming...");
    let started = Instant::now();
    let consuming = tokio::spawn(consumer.run(stop.clone()));
    let relaying = tokio::spawn(Relay::new(db.clone(), transport, &events).run(stop.clone()));
    let mut last_report = Instant::now();
    while handled.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("[{label}] {} / {n}", handled.load(Ordering::Relaxed));
            last_report = Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "gave up after 10 minutes"
        );
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = consuming.await;
    let _ = relaying.await;
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{label:<10} {n:>8} events in {:>7.2} s = {rate:>9.0} events/s",
        elapsed.as_secs_f64()
    );
    rate
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut base = EventsConfig::embedded(".");
    base.relay_interval = Duration::from_millis(10);
    base.batch = 500;
    println!(
        "outbox (SQLite) -> relay -> bus -> consumer, batch {}",
        base.batch
    );
    let embedded = run("embedded", base.clone(), n).await;
    match std::env::var("REDIS_URL") {
        Ok(url) => {
            // The benchmark's streams are deleted when this goes out of scope.
            let scratch = platform_test_backends::RedisNamespace {
                url: url.clone(),
                namespace: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            };
            let mut redis = base.clone();
            redis.redis = Some(platform_redis::RedisConfig::new(&url));
            redis.namespace = scratch.namespace.clone();
            let rate = run("redis", redis, n).await;
            println!("ratio redis/embedded: {:.2}", rate / embedded);
        }
        Err(_) => println!("(set REDIS_URL to measure Redis Streams too)"),
    }
}
