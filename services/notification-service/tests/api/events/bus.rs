//! What depends on how events arrive: a user's first event, the bus delivering an event
//! again, an order's event overtaking its customer's on another stream. These run on both
//! buses.

use std::time::Duration;

use platform_events::catalogue::{OrderConfirmed, OrderFailed};
use platform_testing::Backend;
use serde_json::Value;
use uuid::Uuid;

use super::facts;
use crate::fakes::fake_smtp;
use crate::helpers::{Bus, TestApp, eventually, on, smtp_channels, spawn_app, spawn_with};

async fn a_registered_user_receives_the_welcome_email(backend: Backend, bus: Bus) {
    let (smtp, mailbox) = fake_smtp("250 2.1.5 Ok\r\n").await;
    let app = spawn_with(backend, bus, |config| {
        config.channels = smtp_channels(smtp.port());
    })
    .await;
    app.register(&app.user, "Ada@Example.org", "user").await;

    eventually("the welcome email", Duration::from_secs(10), || async {
        !mailbox.lock().unwrap().is_empty()
    })
    .await;
    let mail = mailbox.lock().unwrap()[0].clone();
    assert_eq!(mail.mail_from, "MAIL FROM:<no-reply@example.com>");
    assert_eq!(mail.rcpt_to, ["RCPT TO:<Ada@example.org>"]);
    assert!(
        mail.data
            .contains("Subject: Welcome to the shop, Ada Lovelace!"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);
    assert!(mail.data.contains("text/html"), "{}", mail.data);

    let rows = app.settled(app.user.id, 2).await;
    let email = on(&rows, "email");
    assert_eq!(email["status"], "sent");
    assert_eq!(email["attempts"], 1);
    assert_eq!(email["event_type"], "user.registered");
    assert_eq!(email["recipient"], "Ada@example.org");
    assert_eq!(email["provider_message_id"], "2.0.0 Ok: queued as FAKE123");
    // The Message-ID names our record.
    let id = email["id"].as_str().unwrap();
    assert!(
        mail.data
            .contains(&format!("Message-ID: <{id}@example.com>")),
        "{}",
        mail.data
    );
    assert_eq!(on(&rows, "in_app")["status"], "sent");
    let inbox = app.inbox(&app.user, "").await;
    assert_eq!(inbox["total"], 1);
    assert_eq!(
        inbox["items"][0]["subject"],
        "Welcome to the shop, Ada Lovelace!"
    );

    let metrics = app.metrics().await;
    let sent = [("channel", "email"), ("outcome", "sent")];
    assert_eq!(metrics.sum("notifications_sent_total", &sent), 1.0);
    assert_eq!(
        metrics.sum(
            "notification_delivery_latency_seconds_count",
            &[("channel", "email")]
        ),
        1.0
    );
}

async fn a_redelivered_event_sends_nothing_twice(backend: Backend, bus: Bus) {
    let (smtp, mailbox) = fake_smtp("250 2.1.5 Ok\r\n").await;
    let app = spawn_with(backend, bus, |config| {
        config.channels = smtp_channels(smtp.port());
    })
    .await;
    let registered = app.register(&app.user, "ada@example.org", "user").await;
    // Families are separate streams: the contact must exist before the order's email.
    app.settled(app.user.id, 2).await;
    let confirmed = app
        .publish(&OrderConfirmed {
            order: facts(app.user.id),
            payment_id: Uuid::now_v7(),
        })
        .await;
    // The bus delivers them again (a consumer crashed before acking, a replay, …).
    for _ in 0..2 {
        app.bus.publish(&registered).await.unwrap();
        app.bus.publish(&confirmed).await.unwrap();
    }
    for kind in ["user.registered", "order.confirmed"] {
        eventually(
            "every delivery to be handled",
            Duration::from_secs(10),
            || async {
                app.metrics().await.sum(
                    "events_consumed_total",
                    &[("type", kind), ("outcome", "ok")],
                ) == 3.0
            },
        )
        .await;
    }
    let rows = app.settled(app.user.id, 4).await;
    assert!(rows.iter().all(|r| r["status"] == "sent"), "{rows:#?}");
    // Give a wrongly queued duplicate every chance to go out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mailbox.lock().unwrap().len(),
        2,
        "one welcome, one confirmation"
    );
    assert_eq!(
        app.deliveries(&format!("?user_id={}", app.user.id))
            .await
            .len(),
        4
    );
    assert_eq!(app.inbox(&app.user, "").await["total"], 2);
}

/// Users' and orders' events travel on separate streams: a quick checkout's `order.failed`
/// can be handled before its customer's `user.registered`. The email waits for the contact
/// and is then sent to it, greeting the customer by name; the in-app message does not wait.
async fn an_order_seen_before_its_customer_is_emailed_once_the_customer_is_known(
    backend: Backend,
    bus: Bus,
) {
    let app = spawn_app(backend, bus).await;
    let order = facts(app.user.id);
    app.publish(&OrderFailed {
        order: order.clone(),
        reason: "payment declined: card_declined".to_owned(),
        refunded: 0,
    })
    .await;
    let subject = format!("Order {} could not be completed", order.order_id);
    let waiting = wait_for_row(&app, "email", |row| row["reason"] == "awaiting_contact").await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert_eq!(waiting["recipient"], Value::Null, "{waiting}");
    let inbox = app.inbox(&app.user, "").await;
    assert_eq!(
        inbox["total"], 1,
        "the in-app message does not wait: {inbox}"
    );
    // Nothing is sent while the contact is unknown, however many rounds the worker makes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(app.log.logged().is_empty(), "{:?}", app.log.logged());

    app.register(&app.user, "Ada@Example.org", "user").await;
    let rows = app.settled(app.user.id, 4).await;
    let failed: Vec<&Value> = rows
        .iter()
        .filter(|r| r["channel"] == "email" && r["event_type"] == "order.failed")
        .collect();
    assert_eq!(failed.len(), 1, "{rows:#?}");
    assert_eq!(failed[0]["status"], "sent", "{rows:#?}");
    assert_eq!(failed[0]["recipient"], "Ada@example.org");
    assert_eq!(failed[0]["reason"], Value::Null);
    let logged = app.log.logged();
    let mail = logged
        .iter()
        .find(|m| m.subject == subject)
        .unwrap_or_else(|| panic!("no {subject:?} in {logged:?}"));
    assert_eq!(mail.recipient.as_str(), "Ada@example.org");
    assert!(
        mail.text.starts_with("Hello Ada Lovelace,") && mail.text.contains("card_declined"),
        "rendered again for the customer: {}",
        mail.text
    );
    assert!(
        mail.html
            .as_deref()
            .is_some_and(|html| html.contains("Hello Ada Lovelace")),
        "{mail:?}"
    );
    // Sent once: the welcome email and this one.
    assert_eq!(
        logged
            .iter()
            .filter(|m| m.recipient.as_str() == "Ada@example.org")
            .count(),
        2,
        "{logged:?}"
    );
}

/// The row of `channel` for the test's user once `ready` holds for it.
async fn wait_for_row(app: &TestApp, channel: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let query = format!("?user_id={}", app.user.id);
    let started = std::time::Instant::now();
    loop {
        let rows = app.deliveries(&query).await;
        if let Some(row) = rows.iter().find(|r| r["channel"] == channel && ready(r)) {
            return row.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no matching {channel} row: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

crate::bus_tests!(
    a_registered_user_receives_the_welcome_email,
    a_redelivered_event_sends_nothing_twice,
    an_order_seen_before_its_customer_is_emailed_once_the_customer_is_known,
);
