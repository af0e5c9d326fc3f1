//! Delivery: retries with backoff on transient provider errors, dead letters after the
//! limit, permanent errors at once, the rate limit, quiet hours.

use std::time::Duration;

use notification_service::domain::{QuietHours, RateLimit};
use platform_testing::Backend;
use serde_json::json;

use crate::fakes::{fake_api, fake_api_script, fake_smtp};
use crate::helpers::{Bus, all_channels, on, spawn_with};

async fn transient_failures_are_retried_then_dead_lettered(backend: Backend, bus: Bus) {
    // SMS: one 503 then accepted; then a permanent 400.
    let (twilio, sms_seen) = fake_api_script(
        vec![
            (
                503,
                json!({"code": 20503, "message": "Service Unavailable"}),
            ),
            (201, json!({"sid": "SM1"})),
            (
                400,
                json!({"code": 21211, "message": "Invalid 'To' number"}),
            ),
        ],
        Duration::ZERO,
    )
    .await;
    // Push: always unavailable.
    let (fcm, push_seen) = fake_api(
        503,
        json!({"error": {"code": 503, "message": "Unavailable", "status": "UNAVAILABLE"}}),
        Duration::ZERO,
    )
    .await;
    let app = spawn_with(backend, bus, |config| {
        config.channels = all_channels(1, &twilio, &fcm);
        config.delivery.max_attempts = 3;
    })
    .await;
    for (channel, address) in [("sms", "+15557654321"), ("push", "device-token-1")] {
        app.subscribe(
            &app.user,
            &json!({"channel": channel, "event_types": ["*"], "enabled": true, "address": address}),
        )
        .await;
    }
    let sms = |subject: &str| json!({"user_id": app.user.id, "channel": "sms", "subject": subject, "body": "hello"});
    app.notify(&sms("first")).await;
    let rows = app.settled(app.user.id, 1).await;
    assert_eq!(rows[0]["status"], "sent", "{rows:#?}");
    assert_eq!(rows[0]["attempts"], 2);
    assert_eq!(sms_seen.lock().unwrap().len(), 2);

    app.notify(&sms("second")).await;
    let rows = app.settled(app.user.id, 2).await;
    let second = rows.iter().find(|r| r["subject"] == "second").unwrap();
    assert_eq!(
        second["status"], "failed",
        "a permanent error is not retried"
    );
    assert_eq!(second["attempts"], 1);
    assert!(
        second["reason"].as_str().unwrap().contains("21211"),
        "{second}"
    );

    app.notify(&json!({"user_id": app.user.id, "channel": "push", "subject": "p", "body": "b"}))
        .await;
    let rows = app.settled(app.user.id, 3).await;
    let push = on(&rows, "push");
    assert_eq!(push["status"], "failed");
    assert_eq!(push["attempts"], 3);
    assert!(
        push["reason"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 attempts"),
        "{push}"
    );
    assert_eq!(push_seen.lock().unwrap().len(), 3);
    // The dead letters, for the administrators.
    let dead = app.deliveries("?status=failed").await;
    assert_eq!(dead.len(), 2);

    let metrics = app.metrics().await;
    let count = |channel: &str, outcome: &str| {
        metrics.sum(
            "notifications_sent_total",
            &[("channel", channel), ("outcome", outcome)],
        )
    };
    assert_eq!(count("sms", "sent"), 1.0);
    assert_eq!(count("sms", "retry"), 1.0);
    assert_eq!(count("sms", "failed"), 1.0);
    assert_eq!(count("push", "retry"), 2.0);
    assert_eq!(count("push", "failed"), 1.0);
}

async fn the_rate_limit_suppresses_beyond_it(backend: Backend, bus: Bus) {
    let app = spawn_with(backend, bus, |config| {
        config.delivery.rate_limit = Some(RateLimit {
            max: 2,
            window: Duration::from_secs(3600),
        });
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..3 {
        let accepted = app
            .notify(&json!({"user_id": app.user.id, "channel": "in_app",
                            "subject": format!("#{n}"), "body": "b"}))
            .await;
        statuses.push(accepted["notifications"][0].clone());
    }
    assert_eq!(statuses[0]["status"], "sent");
    assert_eq!(statuses[1]["status"], "sent");
    assert_eq!(statuses[2]["status"], "suppressed");
    assert_eq!(statuses[2]["reason"], "rate_limited");
    assert_eq!(app.inbox(&app.user, "").await["total"], 2);
    // Per user: someone else is not affected.
    let accepted = app
        .notify(&json!({"user_id": app.admin.id, "channel": "in_app", "subject": "x", "body": "b"}))
        .await;
    assert_eq!(accepted["notifications"][0]["status"], "sent");
}

async fn quiet_hours_hold_sms_until_they_end(backend: Backend, bus: Bus) {
    let (twilio, sms_seen) = fake_api(201, json!({"sid": "SM1"}), Duration::ZERO).await;
    let (smtp, mailbox) = fake_smtp("250 2.1.5 Ok\r\n").await;
    let now = chrono::Utc::now();
    let window = format!(
        "{}-{}",
        (now - chrono::Duration::hours(1)).format("%H:%M"),
        (now + chrono::Duration::hours(1)).format("%H:%M")
    );
    let app = spawn_with(backend, bus, |config| {
        config.channels = all_channels(smtp.port(), &twilio, &twilio);
        config.delivery.quiet_hours = Some(QuietHours::parse(&window).unwrap());
    })
    .await;
    app.register(&app.user, "ada@example.org", "user").await;
    app.settled(app.user.id, 2).await;
    app.subscribe(
        &app.user,
        &json!({"channel": "sms", "event_types": ["*"], "enabled": true, "address": "+15557654321"}),
    )
    .await;
    let accepted = app
        .notify(&json!({"user_id": app.user.id, "subject": "Night", "body": "owl"}))
        .await;
    let created = accepted["notifications"].as_array().unwrap();
    assert_eq!(on(created, "sms")["status"], "queued");
    // Email is not held back.
    crate::helpers::eventually("the email", Duration::from_secs(10), || async {
        let rows = app
            .deliveries(&format!("?user_id={}&channel=email", app.user.id))
            .await;
        rows.iter().filter(|r| r["status"] == "sent").count() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rows = app
        .deliveries(&format!("?user_id={}&channel=sms", app.user.id))
        .await;
    assert_eq!(rows[0]["status"], "queued");
    assert_eq!(rows[0]["attempts"], 0);
    let due: chrono::DateTime<chrono::Utc> = rows[0]["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(due > now + chrono::Duration::minutes(55), "{due}");
    assert!(sms_seen.lock().unwrap().is_empty());
    assert_eq!(mailbox.lock().unwrap().len(), 2);
}

crate::db_tests!(
    transient_failures_are_retried_then_dead_lettered,
    the_rate_limit_suppresses_beyond_it,
    quiet_hours_hold_sms_until_they_end,
);
