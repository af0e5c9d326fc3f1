//! Payments held for review: the order waits in `payment_review` (past the checkout deadline:
//! the review has its own TTL), and goes on when an administrator decides, when the review
//! expires, or when the customer cancels.

use std::time::Duration;

use payment_service::PaymentServiceConfig;
use platform_money::Currency;
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, place_running, settle, spawn_with_payments};

/// Orders over €50 are held; the checkout's own deadline is short, to show it does not apply.
async fn spawn(backend: Backend, ttl: Duration) -> TestApp {
    spawn_with_payments(
        backend,
        |config| config.saga.deadline = Duration::from_secs(2),
        move |payments: &mut PaymentServiceConfig| {
            payments.fraud.review_limits.insert(Currency::EUR, 5_000);
            payments.review_ttl = ttl;
        },
    )
    .await
}

/// Places an order of 6 mugs (€75) and waits until it is in review; its id and payment.
async fn held_order(app: &TestApp, mug: &str) -> (String, Value) {
    let id = place_running(app, mug, 6, "tok_visa").await;
    for _ in 0..100 {
        let order = app.order(&app.user, &id).await;
        if order["status"] == "payment_review" {
            let payment = app.payments_for(&id).await.remove(0);
            assert_eq!(payment["status"], "requires_review");
            return (id, payment);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("order {id} never reached payment_review");
}

async fn decide(app: &TestApp, payment: &Value, decision: &str) -> Value {
    let path = format!(
        "/api/v1/admin/payments/{}/{decision}",
        payment["id"].as_str().unwrap()
    );
    let response = app
        .payments
        .post(&path)
        .by(&app.admin)
        .json(&json!({"reason": "checked by hand"}))
        .await;
    json_of(response, 200).await
}

async fn an_approved_review_confirms_the_order(backend: Backend) {
    let app = spawn(backend, Duration::from_secs(3600)).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let (id, payment) = held_order(&app, &mug).await;
    assert_eq!(app.stock(&mug).await, (10, 6, 4), "the stock stays held");
    // Longer than the checkout deadline: a person may take their time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.order(&app.user, &id).await["status"], "payment_review");

    assert_eq!(
        decide(&app, &payment, "approve").await["status"],
        "captured"
    );
    let order = settle(&app, &id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(app.stock(&mug).await, (4, 0, 4));
}

async fn a_declined_review_fails_the_order_charging_nothing(backend: Backend) {
    let app = spawn(backend, Duration::from_secs(3600)).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let (id, payment) = held_order(&app, &mug).await;
    assert_eq!(decide(&app, &payment, "decline").await["status"], "failed");
    let order = settle(&app, &id).await;
    assert_eq!(order["status"], "failed", "{order}");
    let reason = order["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("not approved in review") && reason.contains("nothing was charged"),
        "{reason}"
    );
    assert_eq!(order["refunded"], 0);
    assert_eq!(app.stock(&mug).await, (10, 0, 10));
}

async fn an_expired_review_fails_the_order(backend: Backend) {
    let app = spawn(backend, Duration::from_secs(2)).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let (id, _) = held_order(&app, &mug).await;
    let order = settle(&app, &id).await;
    assert_eq!(order["status"], "failed", "{order}");
    assert!(
        order["failure_reason"]
            .as_str()
            .unwrap()
            .contains("not reviewed in time"),
        "{order}"
    );
    assert_eq!(app.stock(&mug).await, (10, 0, 10));
}

async fn cancelling_an_order_in_review_declines_its_payment(backend: Backend) {
    let app = spawn(backend, Duration::from_secs(3600)).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let (id, payment) = held_order(&app, &mug).await;
    let cancelled = app.cancel(&id).by(&app.user).await;
    assert!([200, 202].contains(&cancelled.status().as_u16()));
    let order = settle(&app, &id).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["refunded"], 0);
    assert_eq!(app.stock(&mug).await, (10, 0, 10));
    let after = app.payments_for(&id).await.remove(0);
    assert_eq!(after["id"], payment["id"]);
    assert_eq!(after["status"], "failed", "{after}");
    // Too late to approve it now: nothing can be charged for a cancelled order.
    let approve = format!(
        "/api/v1/admin/payments/{}/approve",
        payment["id"].as_str().unwrap()
    );
    let response = app.payments.post(&approve).by(&app.admin).await;
    assert_eq!(response.status(), 409);
}

platform_testing::backend_tests!(
    an_approved_review_confirms_the_order,
    a_declined_review_fails_the_order_charging_nothing,
    an_expired_review_fails_the_order,
    cancelling_an_order_in_review_declines_its_payment,
);
