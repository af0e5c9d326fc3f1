//! Who hears what: preferences switching channels off, SMS and push reaching their providers
//! in the providers' shape, and every consumed event type becoming its notification.

use std::time::Duration;

use platform_events::catalogue::{
    InventoryLow, OrderConfirmed, OrderFailed, OrderShipped, PaymentFacts, PaymentRefunded,
    UserDeleted,
};
use platform_testing::Backend;
use serde_json::{Value, json};
use uuid::Uuid;

use super::facts;
use crate::fakes::{fake_api, fake_smtp};
use crate::helpers::{
    ACCOUNT_SID, Bus, PROJECT, all_channels, eventually, on, smtp_channels, spawn_app, spawn_with,
};

async fn preferences_suppress_a_channel(backend: Backend, bus: Bus) {
    let (smtp, mailbox) = fake_smtp("250 2.1.5 Ok\r\n").await;
    let app = spawn_with(backend, bus, |config| {
        config.channels = smtp_channels(smtp.port());
    })
    .await;
    app.register(&app.user, "ada@example.org", "user").await;
    app.settled(app.user.id, 2).await;
    app.subscribe(
        &app.user,
        &json!({"channel": "email", "event_types": ["order.confirmed"], "enabled": false}),
    )
    .await;
    let confirmed = facts(app.user.id);
    app.publish(&OrderConfirmed {
        order: confirmed.clone(),
        payment_id: Uuid::now_v7(),
    })
    .await;
    let shipped = facts(app.user.id);
    app.publish(&OrderShipped {
        order: shipped.clone(),
    })
    .await;

    let rows = app.settled(app.user.id, 6).await;
    let of = |kind: &str, channel: &str| -> Value {
        rows.iter()
            .find(|r| r["event_type"] == kind && r["channel"] == channel)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {channel} in {rows:#?}"))
    };
    let suppressed = of("order.confirmed", "email");
    assert_eq!(suppressed["status"], "suppressed");
    assert_eq!(suppressed["reason"], "opted_out");
    assert_eq!(suppressed["attempts"], 0);
    assert_eq!(of("order.confirmed", "in_app")["status"], "sent");
    assert_eq!(of("order.shipped", "email")["status"], "sent");

    let mails = mailbox.lock().unwrap().clone();
    assert_eq!(mails.len(), 2, "welcome and shipped only");
    assert!(
        mails
            .iter()
            .all(|m| !m.data.contains(&confirmed.order_id.to_string()))
    );
    assert!(
        mails[1]
            .data
            .contains(&format!("Order {} has shipped", shipped.order_id))
    );
    let series = [("channel", "email"), ("outcome", "suppressed")];
    assert_eq!(
        app.metrics().await.sum("notifications_sent_total", &series),
        1.0
    );
}

async fn sms_and_push_reach_providers_in_their_shape(backend: Backend, bus: Bus) {
    let (twilio, sms_seen) = fake_api(201, json!({"sid": "SM42"}), Duration::ZERO).await;
    let name = format!("projects/{PROJECT}/messages/1");
    let (fcm, push_seen) = fake_api(200, json!({ "name": name }), Duration::ZERO).await;
    let app = spawn_with(backend, bus, |config| {
        // No SMTP server: this user has no email on record anyway.
        config.channels = all_channels(1, &twilio, &fcm);
        // The email waits this long for a `user.registered` that never comes.
        config.delivery.contact_wait = Duration::from_millis(300);
    })
    .await;
    app.subscribe(
        &app.user,
        &json!({"channel": "sms", "event_types": ["order.shipped"], "enabled": true,
                "address": "+49 151 2345-6789"}),
    )
    .await;
    let token = "cQ3x-Fk9T0e:APA91bH_z.8-abc";
    app.subscribe(
        &app.user,
        &json!({"channel": "push", "event_types": ["*"], "enabled": true, "address": token}),
    )
    .await;
    let order = facts(app.user.id);
    app.publish(&OrderShipped {
        order: order.clone(),
    })
    .await;

    let rows = app.settled(app.user.id, 4).await;
    assert_eq!(on(&rows, "sms")["status"], "sent");
    assert_eq!(on(&rows, "sms")["provider_message_id"], "SM42");
    assert_eq!(on(&rows, "push")["status"], "sent");
    assert_eq!(on(&rows, "push")["provider_message_id"], name.as_str());
    assert_eq!(on(&rows, "in_app")["status"], "sent");
    // Never registered: no email address on record.
    assert_eq!(on(&rows, "email")["status"], "suppressed");
    assert_eq!(on(&rows, "email")["reason"], "no_address");

    let sms = crate::fakes::only_request(&sms_seen);
    assert_eq!(sms.method, "POST");
    assert_eq!(
        sms.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert!(crate::fakes::header(&sms, "authorization").starts_with("Basic "));
    let form: std::collections::HashMap<String, String> = reqwest::Url::parse(&format!(
        "http://f.test/?{}",
        std::str::from_utf8(&sms.body).unwrap()
    ))
    .unwrap()
    .query_pairs()
    .into_owned()
    .collect();
    assert_eq!(form["To"], "+4915123456789");
    assert_eq!(form["From"], "+15550001111");
    assert!(
        form["Body"].contains(&order.order_id.to_string()),
        "{form:?}"
    );

    let push = crate::fakes::only_request(&push_seen);
    assert_eq!(push.path, format!("/v1/projects/{PROJECT}/messages:send"));
    assert_eq!(
        crate::fakes::header(&push, "authorization"),
        "Bearer fcm-token"
    );
    let body: Value = serde_json::from_slice(&push.body).unwrap();
    assert_eq!(body["message"]["token"], token);
    assert_eq!(
        body["message"]["notification"]["title"],
        format!("Order {} has shipped", order.order_id)
    );
    assert_eq!(
        body["message"]["data"]["order_id"],
        order.order_id.to_string()
    );
}

async fn every_consumed_event_becomes_a_notification(backend: Backend, bus: Bus) {
    let app = spawn_app(backend, bus).await;
    app.register(&app.admin, "root@example.com", "admin").await;
    app.register(&app.user, "ada@example.org", "user").await;
    // Families are separate streams: the contacts must exist before the other events.
    app.settled(app.admin.id, 2).await;
    app.settled(app.user.id, 2).await;
    let order = facts(app.user.id);
    app.publish(&OrderConfirmed {
        order: order.clone(),
        payment_id: Uuid::now_v7(),
    })
    .await;
    app.publish(&OrderFailed {
        order: facts(app.user.id),
        reason: "card declined".to_owned(),
        refunded: 0,
    })
    .await;
    app.publish(&PaymentRefunded {
        payment: PaymentFacts {
            payment_id: Uuid::now_v7(),
            order_id: order.order_id,
            user_id: app.user.id,
            amount: 4999,
            currency: "EUR".to_owned(),
            provider: "sandbox".to_owned(),
        },
        refund_amount: 500,
        refunded_total: 500,
        reason: "returned".to_owned(),
    })
    .await;
    app.publish(&InventoryLow {
        product_id: Uuid::now_v7(),
        sku: "LAMP-1".to_owned(),
        available: 2,
        threshold: 5,
    })
    .await;

    // welcome, confirmed, failed, refunded: in-app and email each.
    let rows = app.settled(app.user.id, 8).await;
    assert!(rows.iter().all(|r| r["status"] == "sent"), "{rows:#?}");
    let inbox = app.inbox(&app.user, "").await;
    let subjects: Vec<&str> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&format!("Refund of 5.00 EUR for order {}", order.order_id).as_str()),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|s| s.ends_with("could not be completed")),
        "{subjects:?}"
    );
    let confirmed = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["event_type"] == "order.confirmed")
        .unwrap();
    assert!(
        confirmed["body"].as_str().unwrap().contains("49.99 EUR"),
        "{confirmed}"
    );
    assert_eq!(confirmed["data"]["order_id"], order.order_id.to_string());
    assert!(
        !subjects.iter().any(|s| s.starts_with("Low stock")),
        "inventory.low is for administrators"
    );

    // The administrator: welcome and low stock, in-app and by email (the log sink here).
    let rows = app.settled(app.admin.id, 4).await;
    let low: Vec<&Value> = rows
        .iter()
        .filter(|r| r["event_type"] == "inventory.low")
        .collect();
    assert_eq!(low.len(), 2, "{rows:#?}");
    assert!(low.iter().all(|r| r["status"] == "sent"));
    let logged = app.log.logged();
    assert!(
        logged.iter().any(|m| m.subject == "Low stock: LAMP-1"
            && m.recipient.as_str() == "root@example.com"),
        "{logged:?}"
    );

    // user.deleted forgets the user.
    app.publish(&UserDeleted {
        user_id: app.user.id,
    })
    .await;
    eventually(
        "the user to be forgotten",
        Duration::from_secs(10),
        || async { app.inbox(&app.user, "").await["total"] == 0 },
    )
    .await;
    assert!(
        app.deliveries(&format!("?user_id={}", app.user.id))
            .await
            .is_empty()
    );
    let preferences = crate::helpers::json_of(
        app.get("/api/v1/notifications/preferences")
            .by(&app.user)
            .await,
        200,
    )
    .await;
    assert_eq!(preferences["channels"][0]["channel"], "email");
    assert!(
        preferences["channels"][0]["address"].is_null(),
        "{preferences}"
    );
}

crate::db_tests!(
    preferences_suppress_a_channel,
    sms_and_push_reach_providers_in_their_shape,
    every_consumed_event_becomes_a_notification,
);
