//! Refunds go through the order: an administrator's whole refund of an order that has not
//! shipped cancels it (stock back), part of it (or after shipping) refunds the payment and is
//! recorded; an order with refunds ships only when forced with an audited reason code.

use platform_http::audit::{Action, Actor};
use platform_testing::grpc::{audit_records, audited};
use platform_testing::{Backend, Call};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, new_key, order_body, problem, settle, spawn_app};

impl TestApp {
    /// `POST /api/v1/admin/orders/{id}/refund` under a fresh idempotency key: add `.by(..)` and
    /// `.json(..)`.
    fn refund_order(&self, id: &str) -> Call {
        self.post(&format!("/api/v1/admin/orders/{id}/refund"))
            .header("Idempotency-Key", new_key())
    }
}

fn eur(amount: i64) -> Value {
    json!({"amount": {"amount": amount, "currency": "EUR"}, "reason": "damaged in transit"})
}

async fn a_whole_refund_before_shipping_cancels_and_restocks(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let order = app
        .place(&app.user, &order_body(&[(&mug, 2)], "tok_visa"))
        .await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.stock(&mug).await, (8, 0, 8));
    // Customers cancel; refunds are for administrators.
    problem(
        app.refund_order(id).by(&app.user).json(&eur(2500)).await,
        403,
    )
    .await;

    let refunded = app
        .refund_order(id)
        .by(&app.admin)
        .json(&json!({"reason": "customer called"}))
        .await;
    assert!([200, 202].contains(&refunded.status().as_u16()));
    let order = settle(&app, id).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["refunded"], 2500);
    assert_eq!(app.stock(&mug).await, (10, 0, 10), "restocked");
    let payment = app.payments_for(id).await.remove(0);
    assert_eq!(payment["status"], "refunded");
    // Nothing left to refund on a cancelled order.
    problem(
        app.refund_order(id).by(&app.admin).json(&eur(100)).await,
        409,
    )
    .await;
}

async fn a_partial_refund_is_recorded_and_stops_shipping_unless_forced(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let order = app
        .place(&app.user, &order_body(&[(&mug, 2)], "tok_visa"))
        .await;
    let id = order["id"].as_str().unwrap();
    let after = json_of(
        app.refund_order(id).by(&app.admin).json(&eur(500)).await,
        200,
    )
    .await;
    assert_eq!(after["status"], "confirmed");
    assert_eq!(after["refunded"], 500);
    assert_eq!(app.stock(&mug).await, (8, 0, 8), "the goods are still sold");
    // Wrong currency, or more than is left: refused, nothing moves.
    let usd = json!({"amount": {"amount": 100, "currency": "USD"}, "reason": "x"});
    problem(app.refund_order(id).by(&app.admin).json(&usd).await, 422).await;
    problem(
        app.refund_order(id).by(&app.admin).json(&eur(2001)).await,
        409,
    )
    .await;
    assert_eq!(app.order(&app.user, id).await["refunded"], 500);

    // It does not ship by accident…
    problem(app.set_status(id, "shipped").by(&app.admin).await, 409).await;
    let status = format!("/api/v1/orders/{id}/status");
    problem(
        app.put(&status)
            .by(&app.admin)
            .json(&json!({"status": "shipped", "force": true}))
            .await,
        422,
    )
    .await;
    problem(
        app.put(&status)
            .by(&app.admin)
            .json(&json!({"status": "shipped", "force": true, "reason": "because"}))
            .await,
        422,
    )
    .await;
    // …only on purpose, audited with the reason code.
    let shipped = json_of(
        app.put(&status)
            .by(&app.admin)
            .json(&json!({"status": "shipped", "force": true, "reason": "partial_refund_agreed"}))
            .await,
        200,
    )
    .await;
    assert_eq!(shipped["status"], "shipped");
    let target = format!("order:{id}");
    let record = audited(&app.config.events, "the forced shipping", |record| {
        record.action == Action::OrderStatusChange
            && record.target.as_deref() == Some(&target)
            && record.reason.as_deref() == Some("partial_refund_agreed")
    })
    .await;
    assert_eq!(record.actor, Some(Actor::User(app.admin.id)));

    // After shipping a refund is still possible, and recorded.
    let key = new_key();
    let refund = format!("/api/v1/admin/orders/{id}/refund");
    let refund_once = || {
        app.post(&refund)
            .by(&app.admin)
            .header("Idempotency-Key", &key)
            .json(&eur(1000))
    };
    let first = refund_once().await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let later = json_of(first, 200).await;
    assert_eq!(later["status"], "shipped");
    assert_eq!(later["refunded"], 1500);
    let is_admin_refund = |record: &platform_http::audit::AuditRecord| {
        record.action == Action::PaymentRefund
            && record.target.as_deref() == Some(&target)
            && record.reason.as_deref() == Some("admin_refund")
    };
    audited(&app.config.events, "the refund", is_admin_refund).await;
    // The same key again: the same answer, marked as a replay; no money moves, and the audit
    // trail gains nothing (the refund happened once).
    let again = refund_once().await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = json_of(again, 200).await;
    assert_eq!(again["refunded"], 1500);
    assert_eq!(app.payments_for(id).await[0]["refunded_amount"], 1500);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Two refunds (500, then 1000), two records.
    let records = audit_records(&app.config.events).await;
    assert_eq!(records.iter().filter(|r| is_admin_refund(r)).count(), 2);
    // The same key for another refund: refused as everywhere else, naming the key.
    let other = app
        .post(&refund)
        .by(&app.admin)
        .header("Idempotency-Key", &key)
        .json(&eur(100))
        .await;
    let refused = problem(other, 422).await;
    assert!(refused["errors"]["Idempotency-Key"].is_array(), "{refused}");
}

async fn orders_still_in_checkout_or_ended_have_nothing_to_refund(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let failed = app
        .place(&app.user, &order_body(&[(&mug, 1)], "tok_decline"))
        .await;
    assert_eq!(failed["status"], "failed");
    let refused = problem(
        app.refund_order(failed["id"].as_str().unwrap())
            .by(&app.admin)
            .json(&eur(100))
            .await,
        409,
    )
    .await;
    assert!(
        refused["detail"].as_str().unwrap().contains("failed"),
        "{refused}"
    );
    let missing = uuid::Uuid::now_v7().to_string();
    problem(
        app.refund_order(&missing)
            .by(&app.admin)
            .json(&eur(100))
            .await,
        404,
    )
    .await;
    problem(
        app.refund_order(failed["id"].as_str().unwrap())
            .by(&app.admin)
            .json(&json!({"reason": ""}))
            .await,
        422,
    )
    .await;
}

platform_testing::backend_tests!(
    a_whole_refund_before_shipping_cancels_and_restocks,
    a_partial_refund_is_recorded_and_stops_shipping_unless_forced,
    orders_still_in_checkout_or_ended_have_nothing_to_refund,
);
