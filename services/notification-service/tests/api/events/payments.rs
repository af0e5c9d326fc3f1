//! Payments and their orders: a held payment tells the customer and every administrator, a
//! review decision tells the customer only, a failed order names its refund only when there
//! was one.

use std::time::Duration;

use platform_auth::Role;
use platform_events::catalogue::{
    OrderFailed, PaymentFacts, PaymentReviewDecided, PaymentReviewRequested,
};
use platform_testing::Backend;
use serde_json::Value;
use uuid::Uuid;

use super::facts;
use crate::helpers::{Bus, TestApp, actor, eventually, spawn_app};

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
    let app = spawn_app(backend, bus).await;
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
    eventually("both deliveries", Duration::from_secs(10), || async {
        app.metrics().await.sum(
            "events_consumed_total",
            &[("type", "payment.review_requested"), ("outcome", "ok")],
        ) == 2.0
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
    let app = spawn_app(backend, bus).await;
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
    let app = spawn_app(backend, bus).await;
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

crate::db_tests!(
    a_held_payment_tells_the_customer_and_every_admin,
    a_review_decision_tells_the_customer_the_outcome,
    a_failed_order_names_its_refund_only_when_there_was_one,
);
