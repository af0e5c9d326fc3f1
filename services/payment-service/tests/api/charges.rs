//! `POST /api/v1/payments`: every outcome of a charge is a payment; invalid requests are
//! refused with problems naming what is wrong.

use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{charge_body, error_fields, json_of, new_key, problem, spawn_app};

async fn a_good_card_is_captured(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = charge_body("tok_visa", 4999, "EUR");
    let payment = app.charge_body(&app.user, &body).await;
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["order_id"], body["order_id"]);
    assert_eq!(payment["user_id"], app.user.id.to_string());
    assert_eq!(
        payment["amount"],
        json!({"amount": 4999, "currency": "EUR"})
    );
    assert_eq!(payment["provider"], "sandbox");
    let provider_id = payment["provider_payment_id"].as_str().unwrap();
    assert!(provider_id.starts_with("sbx_"), "{provider_id}");
    assert_eq!(payment["card"], json!({"brand": "visa", "last4": "4242"}));
    assert_eq!(payment["risk"]["decision"], "allow");
    assert_eq!(payment["risk"]["reasons"], json!([]));
    assert!(payment["risk"]["score"].is_u64());
    assert_eq!(payment["refunded_amount"], 0);
    assert_eq!(payment["failure_reason"], Value::Null);
    // The token never comes back, in any form.
    assert!(!payment.to_string().contains("tok_visa"));

    let id = payment["id"].as_str().unwrap();
    assert_eq!(app.payment(&app.user, id).await, payment, "GET = POST");
}

async fn every_provider_outcome_is_a_payment(backend: Backend) {
    let app = spawn_app(backend).await;
    let declined = app.charge(&app.user, "tok_decline", 1000).await;
    assert_eq!(declined["status"], "failed");
    let reason = declined["failure_reason"].as_str().unwrap();
    assert!(reason.contains("card_declined"), "{reason}");
    assert_eq!(declined["card"], Value::Null);

    let review = app.charge(&app.user, "tok_review", 1000).await;
    assert_eq!(review["status"], "requires_review");
    assert_eq!(review["provider"], "sandbox");
    assert_eq!(review["risk"]["decision"], "allow", "held by the provider");

    let authorized = app.charge(&app.user, "tok_authorize", 1000).await;
    assert_eq!(authorized["status"], "authorized");
    assert_eq!(authorized["card"]["last4"], "4242");

    let mastercard = app.charge(&app.user, "tok_mastercard", 1000).await;
    assert_eq!(mastercard["status"], "captured");
    assert_eq!(
        mastercard["card"],
        json!({"brand": "mastercard", "last4": "4444"})
    );

    // Only the sandbox is configured: a network error has nowhere to fail over to.
    let unavailable = app.charge(&app.user, "tok_network_error", 1000).await;
    assert_eq!(unavailable["status"], "failed");
    assert_eq!(unavailable["provider"], "");
    assert!(
        unavailable["failure_reason"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
}

async fn a_charge_needs_a_token_and_a_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = charge_body("tok_visa", 1000, "EUR");
    problem(app.post_charge(&new_key()).json(&body).await, 401).await;
    problem(
        app.post_charge(&new_key())
            .by("not-a-jwt")
            .json(&body)
            .await,
        401,
    )
    .await;
    let missing = problem(
        app.post("/api/v1/payments").by(&app.user).json(&body).await,
        400,
    )
    .await;
    assert!(
        missing["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{missing}"
    );
    let too_long = "k".repeat(256);
    problem(
        app.post_charge(&too_long).by(&app.user).json(&body).await,
        400,
    )
    .await;
    // Nothing was created.
    let page = app.list(&app.admin, &[]).await;
    assert_eq!(page["total"], 0);
}

async fn invalid_fields_are_all_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let charge = |body: Value| {
        let app = &app;
        async move { app.post_charge(&new_key()).by(&app.user).json(&body).await }
    };
    let mut body = charge_body("4242424242424242", 0, "ZZZ");
    body["method"]["type"] = json!("paypal");
    body["method"]["bin"] = json!("42x");
    body["method"]["country"] = json!("Germany");
    let refused = problem(charge(body).await, 422).await;
    assert_eq!(
        error_fields(&refused),
        [
            "amount.amount",
            "amount.currency",
            "method.bin",
            "method.country",
            "method.token",
            "method.type",
        ],
        "{refused}"
    );

    for (amount, currency, field) in [
        (0, "EUR", "amount.amount"),
        (-5, "EUR", "amount.amount"),
        (100, "XYZ", "amount.currency"),
    ] {
        let refused = problem(charge(charge_body("tok_visa", amount, currency)).await, 422).await;
        assert_eq!(error_fields(&refused), [field], "{amount} {currency}");
    }
    for token in [
        "4242424242424242",
        "4242 4242 4242 4242",
        "tok_4242424242424242",
        "visa",
    ] {
        let refused = problem(charge(charge_body(token, 100, "EUR")).await, 422).await;
        assert_eq!(error_fields(&refused), ["method.token"], "{token}");
        // A card number is never echoed back.
        assert!(!refused.to_string().contains("4242424242"), "{refused}");
    }
    let mut bad_bin = charge_body("tok_visa", 100, "EUR");
    bad_bin["method"]["bin"] = json!("12345");
    assert_eq!(
        error_fields(&problem(charge(bad_bin).await, 422).await),
        ["method.bin"]
    );
    let mut bad_country = charge_body("tok_visa", 100, "EUR");
    bad_country["method"]["country"] = json!("D1");
    assert_eq!(
        error_fields(&problem(charge(bad_country).await, 422).await),
        ["method.country"]
    );
    let mut bad_order = charge_body("tok_visa", 100, "EUR");
    bad_order["order_id"] = json!("order-1");
    assert_eq!(
        error_fields(&problem(charge(bad_order).await, 422).await),
        ["order_id"]
    );

    // A valid bin and country (any case) are accepted.
    let mut good = charge_body("tok_visa", 100, "eur");
    good["method"]["bin"] = json!("424242");
    good["method"]["country"] = json!("de");
    let payment = json_of(charge(good).await, 201).await;
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["amount"]["currency"], "EUR");
    assert_eq!(
        app.list(&app.admin, &[]).await["total"],
        1,
        "only the valid one"
    );
}

async fn unknown_and_malformed_ids_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let path = format!("/api/v1/payments/{unknown}");
    problem(app.get(&path).by(&app.user).await, 404).await;
    problem(app.get(&path).by(&app.admin).await, 404).await;
    problem(
        app.get("/api/v1/payments/not-a-uuid").by(&app.user).await,
        400,
    )
    .await;
    problem(app.get(&path).await, 401).await;
}

platform_testing::backend_tests!(
    a_good_card_is_captured,
    every_provider_outcome_is_a_payment,
    a_charge_needs_a_token_and_a_key,
    invalid_fields_are_all_named,
    unknown_and_malformed_ids_are_refused,
);
