//! Unknown outcomes: a charge whose answer was lost is never sent to another provider; it is
//! resolved at its own provider (by a repeat of the request, by the reconciler, or by a
//! webhook that names our payment id). Refunds left unfinished by a crash are taken over.

use std::time::Duration;

use chrono::Utc;
use payment_service::domain::PaymentId;
use payment_service::repo::{self, RefundRow};
use platform_testing::Backend;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, charge_body, json_of, new_key, spawn_app, spawn_with, unix_now};

/// Polls payment `id` until `done` holds (at most 15 s).
async fn eventually(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        let payment = app.payment(&app.admin, id).await;
        if done(&payment) {
            return payment;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "payment {id} never got there: {}",
        app.payment(&app.admin, id).await
    );
}

async fn a_repeat_resolves_a_lost_answer_at_the_same_provider(backend: Backend) {
    let app = spawn_with(backend, |config| {
        // Only the repeat may resolve it here.
        config.reconcile_interval = Duration::from_secs(3600);
    })
    .await;
    let key = new_key();
    let body = charge_body("tok_timeout", 1500, "EUR");
    let first = json_of(app.post_charge(&key).by(&app.user).json(&body).await, 201).await;
    assert_eq!(first["status"], "unknown", "{first}");
    assert_eq!(first["provider"], "sandbox");
    let id = first["id"].as_str().unwrap();
    assert!(app.events_of("payment.captured", id).await.is_empty());

    let again = json_of(app.post_charge(&key).by(&app.user).json(&body).await, 201).await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["status"], "captured", "{again}");
    assert_eq!(again["provider"], "sandbox");
    assert_eq!(app.events_of("payment.captured", id).await.len(), 1);
    // Settled: a further repeat asks nothing and changes nothing.
    let third = json_of(app.post_charge(&key).by(&app.user).json(&body).await, 201).await;
    assert_eq!(third["provider_payment_id"], again["provider_payment_id"]);
    assert_eq!(app.events_of("payment.captured", id).await.len(), 1);
}

async fn the_reconciler_resolves_what_nobody_asks_about(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.charge(&app.user, "tok_timeout", 1500).await;
    assert_eq!(first["status"], "unknown");
    let id = first["id"].as_str().unwrap();
    let settled = eventually(&app, id, |p| p["status"] != "unknown").await;
    assert_eq!(settled["status"], "captured", "{settled}");
    assert_eq!(app.events_of("payment.captured", id).await.len(), 1);
    assert_eq!(
        app.metrics()
            .await
            .sum("payment_amount_total", &[("kind", "captured")]),
        1500.0
    );
}

async fn a_webhook_naming_our_id_settles_a_charge_never_answered(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.charge(&app.user, "tok_no_answer", 2500).await;
    assert_eq!(payment["status"], "unknown");
    assert_eq!(payment["provider_payment_id"], Value::Null);
    let id = payment["id"].as_str().unwrap();
    // The provider's id was never recorded: only our id in the event finds the payment.
    let event = json!({
        "id": format!("evt_{}", Uuid::new_v4().simple()),
        "type": "payment.captured",
        "payment_id": "sbx_late_capture",
        "reference": id,
        "timestamp": unix_now(),
    });
    let answer = json_of(app.sandbox_webhook(&event).await, 200).await;
    assert_eq!(answer["applied"], 1);
    let settled = app.payment(&app.admin, id).await;
    assert_eq!(settled["status"], "captured", "{settled}");
    assert_eq!(settled["provider_payment_id"], "sbx_late_capture");
    assert_eq!(app.events_of("payment.captured", id).await.len(), 1);
    // Its refund goes to that charge.
    let refunded = app.refund(&app.admin, id, None).await;
    assert_eq!(refunded["status"], "refunded");

    // A webhook that names neither a known provider id nor one of our payments is retried.
    let stranger = json!({
        "id": format!("evt_{}", Uuid::new_v4().simple()),
        "type": "payment.captured",
        "payment_id": "sbx_nobody",
        "reference": Uuid::now_v7(),
        "timestamp": unix_now(),
    });
    assert_eq!(app.sandbox_webhook(&stranger).await.status(), 409);
}

/// The state a crash leaves between reserving a refund and hearing from the provider: the
/// key claimed without a response, the amount reserved, the refund row `requested`, all
/// `ago` in the past.
async fn crash_mid_refund(app: &TestApp, id: &str, amount: i64, key: &str, ago: chrono::Duration) {
    let db = app.connect().await;
    let payment = PaymentId::from_uuid(Uuid::parse_str(id).unwrap());
    let at = Utc::now() - ago;
    let txn = platform_db::begin_write(&db).await.unwrap();
    repo::claim_key(
        &txn,
        &format!("refund:{id}"),
        key,
        "hash-unused",
        payment,
        at,
    )
    .await
    .unwrap();
    assert!(
        repo::reserve_refund(&txn, payment, amount, at)
            .await
            .unwrap()
    );
    repo::insert_refund(
        &txn,
        RefundRow {
            id: Uuid::now_v7(),
            payment_id: payment.as_uuid(),
            amount,
            reason: "returned".into(),
            status: payment_service::domain::RefundStatus::Requested,
            provider_refund_id: None,
            created_at: at,
            idempotency_key: Some(format!("{id}:{key}")),
            updated_at: Some(at),
        },
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    db.close().await.unwrap();
}

async fn refunds_left_by_a_crash_are_taken_over(backend: Backend) {
    let app = spawn_app(backend).await;
    // Crashed a moment ago: still presumed running, so a repeat is told to wait…
    let paid = app.charge(&app.user, "tok_visa", 1000).await;
    let id = paid["id"].as_str().unwrap();
    crash_mid_refund(&app, id, 400, "crash-key", chrono::Duration::seconds(1)).await;
    assert_eq!(app.payment(&app.admin, id).await["refunded_amount"], 400);
    assert!(app.events_of("payment.refunded", id).await.is_empty());

    // …and once abandoned, the reconciler finishes it: refunded, announced, key answered.
    let paid2 = app.charge(&app.user, "tok_visa", 1000).await;
    let id2 = paid2["id"].as_str().unwrap();
    crash_mid_refund(&app, id2, 700, "crash-key-2", chrono::Duration::minutes(5)).await;
    let finished = eventually(&app, id2, |p| p["status"] == "partially_refunded").await;
    assert_eq!(finished["refunded_amount"], 700);
    let events = app.events_of("payment.refunded", id2).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["refund_amount"], 700);
    // Not refunded twice by the next rounds.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.events_of("payment.refunded", id2).await.len(), 1);
    assert_eq!(app.payment(&app.admin, id2).await["refunded_amount"], 700);
}

platform_testing::backend_tests!(
    a_repeat_resolves_a_lost_answer_at_the_same_provider,
    the_reconciler_resolves_what_nobody_asks_about,
    a_webhook_naming_our_id_settles_a_charge_never_answered,
    refunds_left_by_a_crash_are_taken_over,
);
