//! Failover between providers: the sandbox first, then Stripe (a fake Stripe API on
//! 127.0.0.1:0 that counts what it receives). Unavailability moves on; a decline never does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use payment_service::providers::stripe::StripeConfig;
use platform_config::SecretString;
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, new_key, problem, spawn_with};

/// What the fake Stripe received.
#[derive(Default)]
struct Received {
    intents: AtomicUsize,
    refunds: AtomicUsize,
    idempotency_keys: std::sync::Mutex<Vec<String>>,
    /// How long a PaymentIntent takes to answer, in milliseconds.
    intent_delay_ms: std::sync::atomic::AtomicU64,
    /// While set, refunds are refused with a 429 (not processed).
    fail_refunds: AtomicBool,
    /// While set, refunds fail with a 500 after being made (the answer is lost).
    lose_refund_answers: AtomicBool,
    /// Refund idempotency keys Stripe made a refund under (a repeat is replayed).
    refund_keys: std::sync::Mutex<Vec<String>>,
}

async fn payment_intents(
    State(received): State<Arc<Received>>,
    headers: HeaderMap,
) -> axum::Json<Value> {
    let n = received.intents.fetch_add(1, Ordering::SeqCst) + 1;
    let delay = received.intent_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(key) = headers.get("idempotency-key") {
        received
            .idempotency_keys
            .lock()
            .unwrap()
            .push(key.to_str().unwrap().to_owned());
    }
    axum::Json(json!({
        "id": format!("pi_fake_{n}"),
        "object": "payment_intent",
        "status": "succeeded",
        "latest_charge": {
            "id": format!("ch_fake_{n}"),
            "payment_method_details": {"card": {"brand": "mastercard", "last4": "5454"}},
        },
    }))
}

async fn refunds(
    State(received): State<Arc<Received>>,
    headers: HeaderMap,
) -> (StatusCode, axum::Json<Value>) {
    let n = received.refunds.fetch_add(1, Ordering::SeqCst) + 1;
    if received.fail_refunds.load(Ordering::SeqCst) {
        let error = json!({"error": {"type": "invalid_request_error", "code": "rate_limit"}});
        return (StatusCode::TOO_MANY_REQUESTS, axum::Json(error));
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    {
        let mut keys = received.refund_keys.lock().unwrap();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    if received.lose_refund_answers.load(Ordering::SeqCst) {
        let error = json!({"error": {"type": "api_error", "message": "try again"}});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error));
    }
    let refund = json!({"id": format!("re_fake_{n}"), "object": "refund", "status": "succeeded"});
    (StatusCode::OK, axum::Json(refund))
}

/// A fake Stripe API; returns what it received and its base URL.
async fn fake_stripe() -> (Arc<Received>, String) {
    let received = Arc::new(Received::default());
    let app = Router::new()
        .route("/v1/payment_intents", post(payment_intents))
        .route("/v1/refunds", post(refunds))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (received, base)
}

/// The service with the sandbox first and the fake Stripe second.
async fn spawn_with_stripe(backend: Backend) -> (TestApp, Arc<Received>) {
    let (received, base) = fake_stripe().await;
    let app = spawn_with(backend, |config| {
        let mut stripe = StripeConfig::new(
            SecretString::from("sk_test_fake_key_0123456789"),
            SecretString::from("whsec_fake_secret"),
        );
        stripe.base_url = base;
        stripe.timeout = Duration::from_secs(5);
        config.providers.stripe = Some(stripe);
        config.providers.order = vec!["sandbox".to_owned(), "stripe".to_owned()];
    })
    .await;
    (app, received)
}

async fn an_unavailable_provider_fails_over(backend: Backend) {
    let (app, received) = spawn_with_stripe(backend).await;
    // The sandbox answers what it can answer: Stripe is not called.
    let captured = app.charge(&app.user, "tok_visa", 1000).await;
    assert_eq!(captured["provider"], "sandbox");
    assert_eq!(received.intents.load(Ordering::SeqCst), 0);

    let payment = app.charge(&app.user, "tok_network_error", 2000).await;
    assert_eq!(payment["status"], "captured", "{payment}");
    assert_eq!(payment["provider"], "stripe");
    assert_eq!(payment["provider_payment_id"], "pi_fake_1");
    assert_eq!(
        payment["card"],
        json!({"brand": "mastercard", "last4": "5454"})
    );
    assert_eq!(received.intents.load(Ordering::SeqCst), 1);
    // Stripe got our payment id as its idempotency key.
    assert_eq!(
        received.idempotency_keys.lock().unwrap().as_slice(),
        [payment["id"].as_str().unwrap()]
    );
    let id = payment["id"].as_str().unwrap();
    let events = app.events_of("payment.captured", id).await;
    assert_eq!(events[0]["provider"], "stripe");

    // The refund goes to the provider that took the money.
    let refunded = app.refund(&app.admin, id, Some(500)).await;
    assert_eq!(refunded["status"], "partially_refunded");
    assert_eq!(received.refunds.load(Ordering::SeqCst), 1);
    app.refund(&app.admin, captured["id"].as_str().unwrap(), Some(500))
        .await;
    assert_eq!(
        received.refunds.load(Ordering::SeqCst),
        1,
        "the sandbox refunded its own"
    );
}

async fn a_decline_never_fails_over(backend: Backend) {
    let (app, received) = spawn_with_stripe(backend).await;
    for token in ["tok_decline", "tok_insufficient_funds", "tok_expired"] {
        let payment = app.charge(&app.user, token, 1000).await;
        assert_eq!(payment["status"], "failed", "{token}");
        // The provider that declined it.
        assert_eq!(payment["provider"], "sandbox", "{token}");
        let reason = payment["failure_reason"].as_str().unwrap();
        assert!(!reason.is_empty());
    }
    assert_eq!(
        received.intents.load(Ordering::SeqCst),
        0,
        "Stripe never saw a declined card"
    );
}

async fn all_providers_unavailable_fails_the_payment(backend: Backend) {
    // Stripe configured at an address where nothing listens.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let app = spawn_with(backend, |config| {
        let mut stripe = StripeConfig::new(
            SecretString::from("sk_test_fake_key_0123456789"),
            SecretString::from("whsec_fake_secret"),
        );
        stripe.base_url = dead;
        stripe.timeout = Duration::from_secs(2);
        config.providers.stripe = Some(stripe);
        config.providers.order = vec!["sandbox".to_owned(), "stripe".to_owned()];
    })
    .await;
    let payment = app.charge(&app.user, "tok_network_error", 1000).await;
    assert_eq!(payment["status"], "failed");
    assert_eq!(
        payment["failure_reason"],
        "payment providers unavailable; nothing was charged"
    );
    let events = app
        .events_of("payment.failed", payment["id"].as_str().unwrap())
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["reason"],
        "payment providers unavailable; nothing was charged"
    );
}

async fn a_failed_refund_gives_the_amount_back(backend: Backend) {
    let (app, received) = spawn_with_stripe(backend).await;
    let payment = app.charge(&app.user, "tok_network_error", 1000).await;
    assert_eq!(payment["provider"], "stripe");
    let id = payment["id"].as_str().unwrap();
    let key = new_key();
    let body = json!({"amount": {"amount": 600, "currency": "EUR"}, "reason": "returned"});

    received.fail_refunds.store(true, Ordering::SeqCst);
    let refused = app.post_refund(id, &key).by(&app.admin).json(&body).await;
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, 503).await;
    let after = app.payment(&app.user, id).await;
    assert_eq!(after["refunded_amount"], 0, "nothing was refunded");
    assert_eq!(after["status"], "captured");
    assert!(app.events_of("payment.refunded", id).await.is_empty());

    // The key was released: the retry refunds.
    received.fail_refunds.store(false, Ordering::SeqCst);
    assert!(received.refund_keys.lock().unwrap().is_empty());
    let refunded = json_of(
        app.post_refund(id, &key).by(&app.admin).json(&body).await,
        200,
    )
    .await;
    assert_eq!(refunded["refunded_amount"], 600);
    assert_eq!(received.refunds.load(Ordering::SeqCst), 2);
    // And the whole amount is still bounded by what was paid.
    problem(
        app.post_refund(id, &new_key())
            .by(&app.admin)
            .json(&json!({"amount": {"amount": 401, "currency": "EUR"}, "reason": "more"}))
            .await,
        409,
    )
    .await;
}

/// Stripe makes the refund but its answer is lost (a 500): the amount stays reserved and the
/// key unfinished, and the repeat under the same key finishes it, one refund at Stripe.
async fn a_refund_whose_answer_was_lost_is_finished_by_its_repeat(backend: Backend) {
    let (app, received) = spawn_with_stripe(backend).await;
    let payment = app.charge(&app.user, "tok_network_error", 1000).await;
    let id = payment["id"].as_str().unwrap();
    let key = new_key();
    let body = json!({"amount": {"amount": 600, "currency": "EUR"}, "reason": "returned"});
    received.lose_refund_answers.store(true, Ordering::SeqCst);
    let unknown = app.post_refund(id, &key).by(&app.admin).json(&body).await;
    let detail = problem(unknown, 503).await;
    assert!(
        detail["detail"]
            .as_str()
            .unwrap()
            .contains("may or may not"),
        "{detail}"
    );
    let meanwhile = app.payment(&app.admin, id).await;
    assert_eq!(meanwhile["refunded_amount"], 600, "still reserved");
    // Nothing more can be refunded than what is left beside the reserved amount.
    let over = json!({"amount": {"amount": 401, "currency": "EUR"}, "reason": "more"});
    problem(
        app.post_refund(id, &new_key())
            .by(&app.admin)
            .json(&over)
            .await,
        409,
    )
    .await;

    received.lose_refund_answers.store(false, Ordering::SeqCst);
    let finished = json_of(
        app.post_refund(id, &key).by(&app.admin).json(&body).await,
        200,
    )
    .await;
    assert_eq!(finished["refunded_amount"], 600);
    assert_eq!(finished["status"], "partially_refunded");
    assert_eq!(received.refunds.load(Ordering::SeqCst), 2, "asked twice");
    assert_eq!(
        received.refund_keys.lock().unwrap().len(),
        1,
        "under one key: one refund at Stripe"
    );
    assert_eq!(app.events_of("payment.refunded", id).await.len(), 1);
    // A third repeat is the stored answer.
    let replay = json_of(
        app.post_refund(id, &key).by(&app.admin).json(&body).await,
        200,
    )
    .await;
    assert_eq!(replay["refunded_amount"], 600);
    assert_eq!(received.refunds.load(Ordering::SeqCst), 2);
}

/// A checkout's charge (gRPC) that the sandbox cannot send, so it goes to the fake Stripe.
fn stripe_charge(app: &TestApp) -> platform_proto::payment::v1::ChargeRequest {
    platform_proto::payment::v1::ChargeRequest {
        order_id: uuid::Uuid::now_v7().to_string(),
        user_id: app.user.id.to_string(),
        amount: Some(platform_proto::payment::v1::Money {
            amount: 1000,
            currency: "EUR".into(),
        }),
        token: "tok_network_error".into(),
        idempotency_key: new_key(),
        ..Default::default()
    }
}

/// The caller goes away while the provider is still charging (the order service dying
/// mid-call resets its gRPC stream, which drops the handler): the charge still completes and
/// is recorded, so the repeat under the same key answers at once instead of "still in
/// progress" for a minute.
async fn a_caller_that_goes_away_does_not_leave_a_charge_half_done(backend: Backend) {
    let (app, received) = spawn_with_stripe(backend).await;
    received.intent_delay_ms.store(1_500, Ordering::SeqCst);
    let request = stripe_charge(&app);
    let mut client = app.grpc_client().await;
    let gave_up =
        tokio::time::timeout(Duration::from_millis(300), client.charge(request.clone())).await;
    assert!(gave_up.is_err(), "the caller should have given up");
    drop(client);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let mut client = app.grpc_client().await;
    let payment = client.charge(request).await.unwrap().into_inner();
    assert_eq!(payment.status, "captured", "{payment:?}");
    assert_eq!(payment.provider, "stripe");
    assert_eq!(received.intents.load(Ordering::SeqCst), 1, "charged once");
}

/// Retries of one charge racing each other (a saga's client retrying while its first attempt
/// still runs) are one charge: every answer is that payment or "still in progress", never a
/// refusal that would fail the order.
async fn racing_retries_of_one_charge_are_one_charge(backend: Backend) {
    let (app, received) = spawn_with_stripe(backend).await;
    received.intent_delay_ms.store(300, Ordering::SeqCst);
    let request = stripe_charge(&app);
    let client = app.grpc_client().await;
    let answers = futures::future::join_all((0..8).map(|i| {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(i * 15)).await;
            client.charge(request).await
        }
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    for answer in answers {
        match answer {
            Ok(payment) => {
                ids.insert(payment.into_inner().id);
            }
            Err(status) => assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}"),
        }
    }
    assert!(ids.len() <= 1, "{ids:?}");
    assert_eq!(received.intents.load(Ordering::SeqCst), 1, "charged once");
}

platform_testing::backend_tests!(
    a_caller_that_goes_away_does_not_leave_a_charge_half_done,
    racing_retries_of_one_charge_are_one_charge,
    a_refund_whose_answer_was_lost_is_finished_by_its_repeat,
    a_failed_refund_gives_the_amount_back,
    an_unavailable_provider_fails_over,
    a_decline_never_fails_over,
    all_providers_unavailable_fails_the_payment,
);
