//! The transport contract, on the embedded bus and on Redis Streams alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use platform_events::Transport;
use platform_events::transport::embedded::EmbeddedTransport;
use support::{Kind, TestBus, happened, number};

fn families() -> Vec<String> {
    vec!["test".to_owned()]
}

async fn every_group_gets_every_event_once_in_order(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let t = &bus.transport;
    t.subscribe("orders", &families()).await.unwrap();
    for n in 0..10 {
        t.publish(&happened("a", n)).await.unwrap();
    }
    // A group created after publication still sees the retained history.
    t.subscribe("audit", &families()).await.unwrap();
    for group in ["orders", "audit"] {
        let deliveries = t
            .read(group, "c1", &families(), 100, Duration::ZERO)
            .await
            .unwrap();
        let numbers: Vec<u32> = deliveries
            .iter()
            .map(|d| number(d.envelope.as_ref().unwrap()))
            .collect();
        assert_eq!(numbers, (0..10).collect::<Vec<_>>(), "{group}");
        assert!(
            deliveries
                .iter()
                .all(|d| d.deliveries == 1 && d.family == "test")
        );
        for delivery in &deliveries {
            t.ack(group, delivery).await.unwrap();
        }
        let again = t
            .read(group, "c1", &families(), 100, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(again.is_empty(), "{group} gets nothing twice");
    }
    assert_eq!(t.history("test", 100).await.unwrap().len(), 10);
}

async fn a_blocked_read_wakes_up_for_a_new_event(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let t = bus.transport.clone();
    t.subscribe("g", &families()).await.unwrap();
    let reader = tokio::spawn({
        let t = t.clone();
        async move {
            t.read("g", "c1", &families(), 10, Duration::from_secs(5))
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    t.publish(&happened("a", 7)).await.unwrap();
    let deliveries = reader.await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "woken, not timed out"
    );
}

async fn unacked_deliveries_go_to_another_consumer_after_the_visibility_timeout(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let t = &bus.transport;
    t.subscribe("g", &families()).await.unwrap();
    t.publish(&happened("a", 1)).await.unwrap();
    let first = t
        .read("g", "dies", &families(), 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);

    let idle = Duration::from_millis(200);
    let early = t
        .claim_stale("g", "survivor", &families(), idle, 10)
        .await
        .unwrap();
    assert!(early.is_empty(), "not before the visibility timeout");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let claimed = t
        .claim_stale("g", "survivor", &families(), idle, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, first[0].id);
    assert_eq!(
        claimed[0].deliveries, 2,
        "the delivery count says it came back"
    );
    assert_eq!(number(claimed[0].envelope.as_ref().unwrap()), 1);
    t.ack("g", &claimed[0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        t.claim_stale("g", "survivor", &families(), idle, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn dead_letters_keep_the_error_and_replay_redelivers_them(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let t = &bus.transport;
    t.subscribe("g", &families()).await.unwrap();
    let event = happened("a", 3);
    t.publish(&event).await.unwrap();
    let delivery = t
        .read("g", "c1", &families(), 10, Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    t.dead_letter("g", &delivery, "handler exploded", 5)
        .await
        .unwrap();

    let dead = t.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].group, "g");
    assert_eq!(dead[0].family, "test");
    assert_eq!(dead[0].error, "handler exploded");
    assert_eq!(dead[0].attempts, 5);
    assert_eq!(dead[0].event["id"], event.id.to_string());
    // Dead-lettering acked it: nobody claims it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        t.claim_stale("g", "c2", &families(), Duration::from_millis(200), 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(!t.replay("0-1").await.unwrap(), "unknown ids are reported");
    assert!(t.replay(&dead[0].id).await.unwrap());
    assert!(t.dead_letters(10).await.unwrap().is_empty());
    let again = t
        .read("g", "c1", &families(), 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].envelope.as_ref().unwrap().id,
        event.id,
        "the same event, delivered again"
    );
}

async fn lag_counts_what_the_group_has_not_received(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let t = &bus.transport;
    t.subscribe("g", &families()).await.unwrap();
    for n in 0..5 {
        t.publish(&happened("a", n)).await.unwrap();
    }
    assert_eq!(t.lag("g", &families()).await.unwrap(), 5);
    t.read("g", "c1", &families(), 2, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(t.lag("g", &families()).await.unwrap(), 3);
}

async fn acking_many_at_once_settles_exactly_those(kind: Kind) {
    let bus = TestBus::new(kind).await;
    let t = &bus.transport;
    t.subscribe("g", &families()).await.unwrap();
    for n in 0..5 {
        t.publish(&happened("a", n)).await.unwrap();
    }
    let read = t
        .read("g", "c1", &families(), 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(read.len(), 5);
    t.ack_many("g", &[]).await.unwrap();
    let acked: Vec<_> = read.iter().step_by(2).collect();
    t.ack_many("g", &acked).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = t
        .claim_stale("g", "c2", &families(), Duration::from_millis(200), 10)
        .await
        .unwrap();
    let numbers: Vec<u32> = back
        .iter()
        .map(|d| number(d.envelope.as_ref().unwrap()))
        .collect();
    assert_eq!(numbers, vec![1, 3], "only the unacked ones come back");
}

transport_tests!(
    acking_many_at_once_settles_exactly_those,
    every_group_gets_every_event_once_in_order,
    a_blocked_read_wakes_up_for_a_new_event,
    unacked_deliveries_go_to_another_consumer_after_the_visibility_timeout,
    dead_letters_keep_the_error_and_replay_redelivers_them,
    lag_counts_what_the_group_has_not_received,
);

async fn redis_streams_are_capped_near_their_maximum_length() {
    let redis = platform_test_backends::RedisNamespace::create();
    let t =
        platform_events::transport::redis::RedisTransport::new(&redis.url, &redis.namespace, 100)
            .unwrap();
    for n in 0..1000 {
        t.publish(&happened("a", n)).await.unwrap();
    }
    let client = ::redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let length: u64 = ::redis::cmd("XLEN")
        .arg(format!("{}.test", redis.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    // `MAXLEN ~` trims whole radix-tree nodes (100 entries by default), so a little over 100.
    assert!((100..=300).contains(&length), "{length}");
}

#[tokio::test]
async fn the_embedded_bus_keeps_everything_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let families = families();
    {
        let t = EmbeddedTransport::open(dir.path(), 1000).await.unwrap();
        t.subscribe("g", &families).await.unwrap();
        t.publish(&happened("a", 1)).await.unwrap();
        t.publish(&happened("a", 2)).await.unwrap();
        // One delivered but not acked when the process "dies".
        assert_eq!(
            t.read("g", "c1", &families, 1, Duration::ZERO)
                .await
                .unwrap()
                .len(),
            1
        );
    }
    let t = EmbeddedTransport::open(dir.path(), 1000).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let claimed = t
        .claim_stale("g", "c2", &families, Duration::from_millis(50), 10)
        .await
        .unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|d| number(d.envelope.as_ref().unwrap()))
            .collect::<Vec<_>>(),
        [1]
    );
    let fresh = t
        .read("g", "c2", &families, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        fresh
            .iter()
            .map(|d| number(d.envelope.as_ref().unwrap()))
            .collect::<Vec<_>>(),
        [2]
    );
}

#[tokio::test]
async fn the_embedded_bus_trims_streams_to_their_maximum_length() {
    let dir = tempfile::tempdir().unwrap();
    let t = EmbeddedTransport::open(dir.path(), 100).await.unwrap();
    for n in 0..1000 {
        t.publish(&happened("a", n)).await.unwrap();
    }
    let kept = t.history("test", 10_000).await.unwrap();
    assert_eq!(kept.len(), 100);
    assert_eq!(number(&kept[0]), 900, "the oldest go first");
}

platform_test_backends::variant_tests!(
    redis_streams,
    [platform_test_backends::Need::Redis],
    (),
    redis_streams_are_capped_near_their_maximum_length,
);
