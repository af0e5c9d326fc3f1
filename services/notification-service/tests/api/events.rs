//! Events from the bus become notifications: per preferences, through templates, once.

use std::time::Duration;

use platform_auth::Role;
use platform_events::catalogue::{
    InventoryLow, OrderConfirmed, OrderFacts, OrderFailed, OrderShipped, PaymentFacts,
    PaymentRefunded, PaymentReviewDecided, PaymentReviewRequested, UserDeleted,
};
use platform_testing::Backend;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fakes::{fake_api, fake_smtp};
use crate::helpers::{
    ACCOUNT_SID, Bus, PROJECT, TestApp, actor, all_channels, on, smtp_channels, spawn_app,
    spawn_with, wait_until,
};

/// The inbox item an `event_type` event about `order` produced.
fn inbox_item(inbox: &Value, event_type: &str, order: Uuid) -> Value {
    inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| {
            item["event_type"] == event_type && item["data"]["order_id"] == order.to_string()
        })
        .cloned()
        .unwrap_or_else(|| panic!("no {event_type} for {order} in {inbox:#}"))
}

fn facts(user: Uuid) -> OrderFacts {
    OrderFacts {
        order_id: Uuid::now_v7(),
        user_id: user,
        total: 4999,
        currency: "EUR".to_owned(),
    }
}

async fn a_registered_user_receives_the_welcome_email(backend: Backend, bus: Bus) {
    let (smtp, mailbox) = fake_smtp("250 2.1.5 Ok\r\n").await;
    let Some(app) = spawn_with(backend, bus, |config| {
        config.channels = smtp_channels(smtp.port());
    })
    .await
    else {
        return;
    };
    app.register(&app.user, "Ada@Example.org", "user").await;

    wait_until("the welcome email", Duration::from_secs(10), || async {
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

    let sent = r#"channel="email",outcome="sent""#;
    assert_eq!(app.metric("notifications_sent_total", &[sent]).await, 1);
    assert_eq!(
        app.metric(
            "notification_delivery_latency_seconds_count",
            &[r#"channel="email""#]
        )
        .await,
        1
    );
}

async fn a_redelivered_event_sends_nothing_twice(backend: Backend, bus: Bus) {
    let (smtp, mailbox) = fake_smtp("250 2.1.5 Ok\r\n").await;
    let Some(app) = spawn_with(backend, bus, |config| {
        config.channels = smtp_channels(smtp.port());
    })
    .await
    else {
        return;
    };
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
        let series = format!(r#"type="{kind}""#);
        wait_until(
            "every delivery to be handled",
            Duration::from_secs(10),
            || async {
                app.metric("events_consumed_total", &[&series, r#"outcome="ok""#])
                    .await
                    == 3
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

async fn preferences_suppress_a_channel(backend: Backend, bus: Bus) {
    let (smtp, mailbox) = fake_smtp("250 2.1.5 Ok\r\n").await;
    let Some(app) = spawn_with(backend, bus, |config| {
        config.channels = smtp_channels(smtp.port());
    })
    .await
    else {
        return;
    };
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
    let series = r#"channel="email",outcome="suppressed""#;
    assert_eq!(app.metric("notifications_sent_total", &[series]).await, 1);
}

async fn sms_and_push_reach_providers_in_their_shape(backend: Backend, bus: Bus) {
    let (twilio, sms_seen) = fake_api(201, json!({"sid": "SM42"}), Duration::ZERO).await;
    let name = format!("projects/{PROJECT}/messages/1");
    let (fcm, push_seen) = fake_api(200, json!({ "name": name }), Duration::ZERO).await;
    let Some(app) = spawn_with(backend, bus, |config| {
        // No SMTP server: this user has no email on record anyway.
        config.channels = all_channels(1, &twilio, &fcm);
        // The email waits this long for a `user.registered` that never comes.
        config.delivery.contact_wait = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
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
    let Some(app) = spawn_app(backend, bus).await else {
        return;
    };
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
    wait_until(
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
        app.get("/api/v1/notifications/preferences", &app.user)
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

fn payment(user: Uuid) -> PaymentFacts {
    PaymentFacts {
        payment_id: Uuid::now_v7(),
        order_id: Uuid::now_v7(),
        user_id: user,
        amount: 4999,
        currency: "EUR".to_owned(),
        provider: String::new(),
    }
}

/// The in-app message of `event_type` in the inbox of `who` (exactly one).
async fn in_app_of(app: &TestApp, who: &crate::helpers::Actor, event_type: &str) -> Value {
    let inbox = app.inbox(who, "").await;
    let found: Vec<Value> = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["event_type"] == event_type)
        .cloned()
        .collect();
    assert_eq!(found.len(), 1, "{inbox:#}");
    found.into_iter().next().unwrap()
}

async fn a_held_payment_tells_the_customer_and_every_admin(backend: Backend, bus: Bus) {
    let Some(app) = spawn_app(backend, bus).await else {
        return;
    };
    let second_admin = actor(Role::Admin);
    app.register(&app.admin, "root@example.com", "admin").await;
    app.register(&second_admin, "ops@example.com", "admin")
        .await;
    app.register(&app.user, "ada@example.org", "user").await;
    // Families are separate streams: the contacts must exist before the payment events.
    for who in [&app.admin, &second_admin, &app.user] {
        app.settled(who.id, 2).await;
    }
    let held = payment(app.user.id);
    let requested = app
        .publish(&PaymentReviewRequested {
            payment: held.clone(),
            held_by: "fraud".to_owned(),
            score: 85,
            reasons: vec!["velocity".to_owned(), "new_card".to_owned()],
        })
        .await;
    // Delivered again: nobody hears twice.
    app.bus.publish(&requested).await.unwrap();
    wait_until("both deliveries", Duration::from_secs(10), || async {
        app.metric(
            "events_consumed_total",
            &[r#"type="payment.review_requested""#, r#"outcome="ok""#],
        )
        .await
            == 2
    })
    .await;

    // The customer: welcome and the check, in-app and by email.
    let rows = app.settled(app.user.id, 4).await;
    assert!(rows.iter().all(|r| r["status"] == "sent"), "{rows:#?}");
    let mine = in_app_of(&app, &app.user, "payment.review_requested").await;
    assert_eq!(
        mine["subject"],
        format!("Your payment for order {} is being checked", held.order_id)
    );
    let body = mine["body"].as_str().unwrap();
    assert!(body.contains("49.99 EUR"), "{body}");
    assert!(
        body.contains("not charged until the check is done"),
        "{body}"
    );
    assert!(body.contains("let you know the outcome"), "{body}");
    assert!(
        !body.contains("fraud") && !body.contains("velocity"),
        "{body}"
    );
    assert_eq!(mine["data"]["payment_id"], held.payment_id.to_string());

    // Each administrator: welcome and one review request, in-app and by email.
    for (admin, email) in [
        (&app.admin, "root@example.com"),
        (&second_admin, "ops@example.com"),
    ] {
        let rows = app.settled(admin.id, 4).await;
        assert!(rows.iter().all(|r| r["status"] == "sent"), "{rows:#?}");
        let waiting = in_app_of(&app, admin, "payment.review_requested").await;
        assert_eq!(waiting["subject"], "A payment is waiting for review");
        let body = waiting["body"].as_str().unwrap();
        for needle in [
            held.order_id.to_string().as_str(),
            held.payment_id.to_string().as_str(),
            "Amount: 49.99 EUR",
            "Held by: fraud",
            "Score: 85",
            "Reasons: velocity, new_card",
        ] {
            assert!(body.contains(needle), "{needle} not in {body}");
        }
        let logged = app.log.logged();
        let mails: Vec<_> = logged
            .iter()
            .filter(|m| {
                m.recipient.as_str() == email && m.subject == "A payment is waiting for review"
            })
            .collect();
        assert_eq!(mails.len(), 1, "{logged:?}");
        assert!(
            mails[0].html.as_deref().unwrap().contains("Held by: fraud"),
            "{:?}",
            mails[0].html
        );
    }

    // An administrator's own held payment: the customer's message only, the others review.
    let own = payment(app.admin.id);
    app.publish(&PaymentReviewRequested {
        payment: own.clone(),
        held_by: "provider".to_owned(),
        score: 0,
        reasons: Vec::new(),
    })
    .await;
    app.settled(second_admin.id, 6).await;
    let rows = app.settled(app.admin.id, 6).await;
    assert!(rows.iter().all(|r| r["status"] == "sent"), "{rows:#?}");
    let inbox = app.inbox(&app.admin, "").await;
    assert!(
        inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["subject"]
                == format!("Your payment for order {} is being checked", own.order_id)),
        "{inbox:#}"
    );
    let inbox = app.inbox(&second_admin, "").await;
    let others = inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| {
            item["body"]
                .as_str()
                .unwrap()
                .contains(&own.payment_id.to_string())
        })
        .unwrap_or_else(|| panic!("{inbox:#}"));
    assert!(
        others["body"]
            .as_str()
            .unwrap()
            .contains("Reasons: none given"),
        "{others}"
    );
}

async fn a_review_decision_tells_the_customer_the_outcome(backend: Backend, bus: Bus) {
    let Some(app) = spawn_app(backend, bus).await else {
        return;
    };
    app.register(&app.admin, "root@example.com", "admin").await;
    app.register(&app.user, "ada@example.org", "user").await;
    app.settled(app.admin.id, 2).await;
    app.settled(app.user.id, 2).await;
    let approved = payment(app.user.id);
    let declined = payment(app.user.id);
    for (facts, decision) in [(&approved, "approved"), (&declined, "declined")] {
        app.publish(&PaymentReviewDecided {
            payment: facts.clone(),
            decision: decision.to_owned(),
            reason: "internal note: looked at the history".to_owned(),
        })
        .await;
    }

    let rows = app.settled(app.user.id, 6).await;
    assert!(rows.iter().all(|r| r["status"] == "sent"), "{rows:#?}");
    let inbox = app.inbox(&app.user, "").await;
    let of = |order: Uuid| inbox_item(&inbox, "payment.review_decided", order);
    let yes = of(approved.order_id);
    assert_eq!(
        yes["subject"],
        format!("Your payment for order {} was approved", approved.order_id)
    );
    let body = yes["body"].as_str().unwrap();
    assert!(
        body.contains("was approved; your order continues."),
        "{body}"
    );
    assert!(!body.contains("not approved"), "{body}");

    let no = of(declined.order_id);
    assert_eq!(
        no["subject"],
        format!(
            "Your payment for order {} was not approved",
            declined.order_id
        )
    );
    let body = no["body"].as_str().unwrap();
    assert!(
        body.contains("was not approved; nothing was charged."),
        "{body}"
    );
    assert!(!body.contains("continues"), "{body}");
    // The decider's words are not the customer's to read.
    for message in [&yes, &no] {
        assert!(
            !message["body"].as_str().unwrap().contains("internal note"),
            "{message}"
        );
    }
    // Decisions are the customer's business only.
    assert_eq!(app.settled(app.admin.id, 2).await.len(), 2);
}

async fn a_failed_order_names_its_refund_only_when_there_was_one(backend: Backend, bus: Bus) {
    let Some(app) = spawn_app(backend, bus).await else {
        return;
    };
    app.register(&app.user, "ada@example.org", "user").await;
    app.settled(app.user.id, 2).await;
    let refunded = facts(app.user.id);
    app.publish(&OrderFailed {
        order: refunded.clone(),
        reason: "an item sold out after payment".to_owned(),
        refunded: 2500,
    })
    .await;
    let unpaid = facts(app.user.id);
    app.publish(&OrderFailed {
        order: unpaid.clone(),
        reason: "the card was declined".to_owned(),
        refunded: 0,
    })
    .await;

    let rows = app.settled(app.user.id, 6).await;
    assert!(rows.iter().all(|r| r["status"] == "sent"), "{rows:#?}");
    let inbox = app.inbox(&app.user, "").await;
    let body_of = |order: Uuid| -> String {
        inbox_item(&inbox, "order.failed", order)["body"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        body_of(refunded.order_id),
        format!(
            "Hello Ada Lovelace,\n\nwe could not complete your order {}: an item sold out after \
             payment. We refunded 25.00 EUR to your card.",
            refunded.order_id
        )
    );
    assert_eq!(
        body_of(unpaid.order_id),
        format!(
            "Hello Ada Lovelace,\n\nwe could not complete your order {}: the card was declined.",
            unpaid.order_id
        )
    );
    // The email's HTML says the same.
    let logged = app.log.logged();
    let html_of = |order: Uuid| -> String {
        logged
            .iter()
            .find(|m| m.subject == format!("Order {order} could not be completed"))
            .and_then(|m| m.html.clone())
            .unwrap_or_else(|| panic!("no email for {order} in {logged:?}"))
    };
    let html = html_of(refunded.order_id);
    assert!(
        html.contains("We refunded <b>25.00 EUR</b> to your card."),
        "{html}"
    );
    assert!(!html.contains("Nothing was charged"), "{html}");
    let html = html_of(unpaid.order_id);
    assert!(
        !html.contains("refund") && !html.contains("Nothing was charged"),
        "{html}"
    );
}

/// Users' and orders' events travel on separate streams: a quick checkout's `order.failed`
/// can be handled before its customer's `user.registered`. The email waits for the contact
/// and is then sent to it, greeting the customer by name; the in-app message does not wait.
async fn an_order_seen_before_its_customer_is_emailed_once_the_customer_is_known(
    backend: Backend,
    bus: Bus,
) {
    let Some(app) = spawn_app(backend, bus).await else {
        return;
    };
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

mod preferences {
    use super::*;
    crate::db_tests!(
        preferences_suppress_a_channel,
        sms_and_push_reach_providers_in_their_shape,
        every_consumed_event_becomes_a_notification,
    );
}

mod payments {
    use super::*;
    crate::db_tests!(
        a_held_payment_tells_the_customer_and_every_admin,
        a_review_decision_tells_the_customer_the_outcome,
        a_failed_order_names_its_refund_only_when_there_was_one,
    );
}
