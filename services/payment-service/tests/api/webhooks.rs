//! `POST /api/v1/webhooks/payments/{provider}` with the sandbox: signed events move payments
//! along their state machine, once per event id; anything unsigned, forged or stale is refused.

use payment_service::providers::sandbox::SandboxProvider;
use platform_config::SecretString;
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, problem, signed, spawn_app, unix_now};

fn event(kind: &str, payment: &Value) -> Value {
    json!({
        "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "type": kind,
        "payment_id": payment["provider_payment_id"],
        "timestamp": unix_now(),
    })
}

fn refunded(payment: &Value, amount: i64, currency: &str) -> Value {
    let mut event = event("payment.refunded", payment);
    event["amount"] = json!({"amount": amount, "currency": currency});
    event
}

async fn send(app: &TestApp, event: &Value) -> Value {
    json_of(app.sandbox_webhook(event).await, 200).await
}

async fn signed_events_move_payments(backend: Backend) {
    let app = spawn_app(backend).await;
    // Authorized, then captured by the provider.
    let held = app.charge(&app.user, "tok_authorize", 1200).await;
    let id = held["id"].as_str().unwrap();
    let answer = send(&app, &event("payment.captured", &held)).await;
    assert_eq!(answer["applied"], 1);
    let captured = app.payment(&app.user, id).await;
    assert_eq!(captured["status"], "captured");
    assert_eq!(app.events_of("payment.captured", id).await.len(), 1);
    // A capture of a captured payment changes nothing.
    send(&app, &event("payment.captured", &held)).await;
    assert_eq!(app.payment(&app.user, id).await["status"], "captured");
    assert_eq!(app.events_of("payment.captured", id).await.len(), 1);

    // Refunded in full at the provider.
    let paid = app.charge(&app.user, "tok_visa", 800).await;
    let paid_id = paid["id"].as_str().unwrap();
    send(&app, &refunded(&paid, 800, "EUR")).await;
    let after = app.payment(&app.user, paid_id).await;
    assert_eq!(after["status"], "refunded");
    assert_eq!(after["refunded_amount"], 800);
    let events = app.events_of("payment.refunded", paid_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["refund_amount"], 800);
    assert_eq!(events[0]["refunded_total"], 800);

    // A review held by the provider, then declined.
    let review = app.charge(&app.user, "tok_review", 500).await;
    let mut failed = event("payment.failed", &review);
    failed["reason"] = json!("3-D Secure failed");
    send(&app, &failed).await;
    let after = app.payment(&app.user, review["id"].as_str().unwrap()).await;
    assert_eq!(after["status"], "failed");
    assert_eq!(after["failure_reason"], "3-D Secure failed");
    // Failed is final: a late capture is ignored.
    send(&app, &event("payment.captured", &review)).await;
    assert_eq!(
        app.payment(&app.user, review["id"].as_str().unwrap()).await["status"],
        "failed"
    );

    // An event about a payment not known (yet) is refused with 409, not recorded, so the
    // provider delivers it again; event types we do not handle are acknowledged.
    let stranger = json!({"provider_payment_id": "sbx_00000000000000000000000000000000"});
    let early = event("payment.captured", &stranger);
    let refused = app.sandbox_webhook(&early).await;
    assert_eq!(refused.status().as_u16(), 409);
    assert!(refused.headers().contains_key("retry-after"));
    let refused_again = app.sandbox_webhook(&early).await;
    assert_eq!(
        refused_again.status().as_u16(),
        409,
        "never recorded as seen"
    );
    let answer = send(&app, &json!({"id": "evt_other", "type": "payout.paid"})).await;
    assert_eq!(answer["applied"], 0);
}

async fn refund_events_add_up_once_each(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.charge(&app.user, "tok_visa", 1000).await;
    let id = payment["id"].as_str().unwrap();

    // The same event delivered twice (the provider retries): applied once.
    let first = refunded(&payment, 300, "EUR");
    assert_eq!(send(&app, &first).await["applied"], 1);
    assert_eq!(send(&app, &first).await["applied"], 0);
    let after = app.payment(&app.user, id).await;
    assert_eq!(after["refunded_amount"], 300);
    assert_eq!(after["status"], "partially_refunded");
    assert_eq!(app.events_of("payment.refunded", id).await.len(), 1);

    // Another refund of the same amount is another event: each carries its own amount.
    send(&app, &refunded(&payment, 300, "EUR")).await;
    let after = app.payment(&app.user, id).await;
    assert_eq!(after["refunded_amount"], 600);
    let events = app.events_of("payment.refunded", id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["refund_amount"], 300);
    assert_eq!(events[1]["refunded_total"], 600);

    // A refund in another currency is not this payment's money.
    send(&app, &refunded(&payment, 100, "USD")).await;
    assert_eq!(app.payment(&app.user, id).await["refunded_amount"], 600);

    // Never more than was paid, and the API agrees with what the provider did.
    problem(
        app.post_refund(id, &crate::helpers::new_key())
            .by(&app.admin)
            .json(&json!({"amount": {"amount": 401, "currency": "EUR"}, "reason": "x"}))
            .await,
        409,
    )
    .await;
    send(&app, &refunded(&payment, 5000, "EUR")).await;
    let after = app.payment(&app.user, id).await;
    assert_eq!(after["refunded_amount"], 1000);
    assert_eq!(after["status"], "refunded");
    let events = app.events_of("payment.refunded", id).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["refund_amount"], 400);
    assert_eq!(events[2]["refunded_total"], 1000);
}

async fn forged_and_stale_webhooks_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let held = app.charge(&app.user, "tok_authorize", 1200).await;
    let id = held["id"].as_str().unwrap();
    let genuine = serde_json::to_vec(&event("payment.captured", &held)).unwrap();

    // Unsigned.
    problem(app.webhook("sandbox", genuine.clone(), None).await, 401).await;
    // Signed, then tampered with.
    let mut tampered = event("payment.captured", &held);
    let signature = signed(&serde_json::to_vec(&tampered).unwrap());
    tampered["type"] = json!("payment.failed");
    problem(
        app.webhook(
            "sandbox",
            serde_json::to_vec(&tampered).unwrap(),
            Some(&signature),
        )
        .await,
        401,
    )
    .await;
    // Signed with another secret.
    let forger = SandboxProvider::new(SecretString::from("not-the-webhook-secret"));
    let forged = forger.sign(&genuine);
    problem(
        app.webhook("sandbox", genuine.clone(), Some(&forged)).await,
        401,
    )
    .await;
    problem(
        app.webhook("sandbox", genuine.clone(), Some("deadbeef"))
            .await,
        401,
    )
    .await;
    // Correctly signed, but long ago (or in the future): a replay.
    for timestamp in [unix_now() - 3600, unix_now() + 3600] {
        let mut stale = event("payment.captured", &held);
        stale["timestamp"] = json!(timestamp);
        problem(app.sandbox_webhook(&stale).await, 401).await;
    }
    assert_eq!(app.payment(&app.user, id).await["status"], "authorized");

    // Signed but not understood.
    let garbage = b"{\"id\": \"evt_1\", \"type\":".to_vec();
    let signature = signed(&garbage);
    problem(app.webhook("sandbox", garbage, Some(&signature)).await, 400).await;
    let no_amount = event("payment.refunded", &held);
    problem(app.sandbox_webhook(&no_amount).await, 400).await;

    // Providers that are not configured have no webhook.
    let signature = signed(&genuine);
    problem(
        app.webhook("paypal", genuine.clone(), Some(&signature))
            .await,
        404,
    )
    .await;
    problem(
        app.webhook("stripe", genuine.clone(), Some(&signature))
            .await,
        404,
    )
    .await;

    // Nothing of that changed the payment; the genuine one does.
    assert_eq!(app.payment(&app.user, id).await["status"], "authorized");
    assert_eq!(app.outbox().await.len(), 1, "only the authorization");
    json_of(app.webhook("sandbox", genuine, Some(&signature)).await, 200).await;
    assert_eq!(app.payment(&app.user, id).await["status"], "captured");
}

/// Refund events delivered at once (several refunds at the provider, each delivered twice)
/// all count, once each.
async fn concurrent_refund_events_all_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.charge(&app.user, "tok_visa", 1000).await;
    let id = payment["id"].as_str().unwrap();
    let events: Vec<Value> = (0..10).map(|_| refunded(&payment, 100, "EUR")).collect();
    let answers = futures::future::join_all(
        events
            .iter()
            .chain(&events)
            .map(|event| app.sandbox_webhook(event)),
    )
    .await;
    for answer in answers {
        assert_eq!(answer.status(), 200);
    }
    let after = app.payment(&app.user, id).await;
    assert_eq!(after["refunded_amount"], 1000, "{after}");
    assert_eq!(after["status"], "refunded");
    assert_eq!(app.events_of("payment.refunded", id).await.len(), 10);
}

async fn the_configured_secret_signs_webhooks(backend: Backend) {
    let app = crate::helpers::spawn_with(backend, |config| {
        config.providers.sandbox_secret = SecretString::from("a-configured-webhook-secret");
    })
    .await;
    let held = app.charge(&app.user, "tok_authorize", 1200).await;
    let body = serde_json::to_vec(&event("payment.captured", &held)).unwrap();
    // The development secret is no longer good.
    problem(
        app.webhook("sandbox", body.clone(), Some(&signed(&body)))
            .await,
        401,
    )
    .await;
    let signer = SandboxProvider::new(SecretString::from("a-configured-webhook-secret"));
    let signature = signer.sign(&body);
    json_of(app.webhook("sandbox", body, Some(&signature)).await, 200).await;
    let id = held["id"].as_str().unwrap();
    assert_eq!(app.payment(&app.user, id).await["status"], "captured");
}

platform_testing::backend_tests!(
    the_configured_secret_signs_webhooks,
    concurrent_refund_events_all_count,
    signed_events_move_payments,
    refund_events_add_up_once_each,
    forged_and_stale_webhooks_are_refused,
);
