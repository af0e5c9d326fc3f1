//! The fraud rules in the charge path: a reviewed or blocked payment never reaches a provider,
//! blocks are announced, and decisions are counted in `/metrics`.

use platform_auth::Role;
use platform_money::Currency;
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{actor, charge_body, spawn_with};

fn assert_not_sent(payment: &Value) {
    assert_eq!(payment["provider"], "", "{payment}");
    assert_eq!(payment["provider_payment_id"], Value::Null);
    assert_eq!(payment["card"], Value::Null);
}

async fn too_many_payments_are_held_then_blocked(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.fraud.max_payments_per_user = 2;
        config.fraud.max_payments_per_card = 3;
    })
    .await;
    // Different cards: only the user's velocity counts. `tok_shared_card` is not a sandbox
    // test token: it is one card whoever uses it.
    let first = app.charge(&app.user, "tok_shared_card", 1000).await;
    let second = app.charge(&app.user, "tok_mastercard", 1000).await;
    assert_eq!(first["status"], "captured");
    assert_eq!(second["status"], "captured");
    let third = app.charge(&app.user, "tok_success", 1000).await;
    assert_eq!(third["status"], "requires_review", "{third}");
    assert_eq!(
        third["risk"],
        json!({"score": 50, "decision": "review", "reasons": ["velocity_user"]})
    );
    assert_not_sent(&third);

    // Another user is not affected by the first one's count, but the card's count is shared.
    let other = actor(Role::User);
    let fourth = app.charge(&other, "tok_shared_card", 1000).await;
    assert_eq!(fourth["status"], "captured");
    let fifth = app.charge(&other, "tok_shared_card", 1000).await;
    assert_eq!(fifth["status"], "captured");
    let sixth = app.charge(&other, "tok_shared_card", 1000).await;
    // The user's 3rd and the card's 4th: two signals at once block.
    assert_eq!(sixth["status"], "blocked", "{sixth}");
    assert_eq!(sixth["risk"]["decision"], "block");
    assert_eq!(
        sixth["risk"]["reasons"],
        json!(["velocity_user", "velocity_card"])
    );
    assert_eq!(sixth["risk"]["score"], 100);
    assert_not_sent(&sixth);
    let blocked = app
        .events_of("payment.blocked", sixth["id"].as_str().unwrap())
        .await;
    assert_eq!(blocked.len(), 1);
    assert_eq!(
        blocked[0]["reasons"],
        json!(["velocity_user", "velocity_card"])
    );
    assert!(
        app.events_of("payment.blocked", third["id"].as_str().unwrap())
            .await
            .is_empty()
    );
}

async fn amounts_over_the_limits_are_stopped(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.fraud.review_limits.insert(Currency::EUR, 5_000);
        config.fraud.block_limits.insert(Currency::EUR, 10_000);
    })
    .await;
    let at_limit = app.charge(&app.user, "tok_visa", 5_000).await;
    assert_eq!(at_limit["status"], "captured");
    assert_eq!(at_limit["risk"]["reasons"], json!([]));

    let reviewed = app.charge(&app.user, "tok_visa", 5_001).await;
    assert_eq!(reviewed["status"], "requires_review");
    assert_eq!(
        reviewed["risk"]["reasons"],
        json!(["amount_over_review_limit"])
    );
    assert_not_sent(&reviewed);

    let blocked = app.charge(&app.user, "tok_visa", 10_001).await;
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    assert_eq!(blocked["risk"]["decision"], "block");
    let reasons = blocked["risk"]["reasons"].as_array().unwrap();
    assert!(
        reasons.contains(&json!("amount_over_block_limit")),
        "{reasons:?}"
    );
    assert_not_sent(&blocked);
    assert_eq!(blocked["failure_reason"], Value::Null);
    let id = blocked["id"].as_str().unwrap();
    let events = app.events_of("payment.blocked", id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["amount"], 10_001);
    assert_eq!(events[0]["provider"], "");
    assert_eq!(events[0]["score"], blocked["risk"]["score"]);
    assert!(
        events[0]["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("amount_over_block_limit"))
    );
    assert_eq!(app.payment(&app.user, id).await, blocked);

    // Limits are per currency: USD keeps its default ones.
    let usd = app
        .charge_body(&app.user, &charge_body("tok_visa", 10_001, "USD"))
        .await;
    assert_eq!(usd["status"], "captured");
}

async fn blocked_bins_and_countries_are_refused(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.fraud.blocked_bins.insert("411111".to_owned());
        config.fraud.blocked_bins.insert("555555".to_owned());
        config.fraud.blocked_countries.insert("KP".to_owned());
    })
    .await;
    // What the client's tokenization reported (`tok_client_card` is no sandbox test card, so
    // the sandbox knows nothing of it).
    let mut body = charge_body("tok_client_card", 1000, "EUR");
    body["method"]["bin"] = json!("41111122");
    let blocked = app.charge_body(&app.user, &body).await;
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["risk"]["reasons"], json!(["blocked_bin"]));
    assert_eq!(
        blocked["risk"]["score"], 40,
        "a policy block with a low score"
    );
    assert_not_sent(&blocked);

    let mut body = charge_body("tok_client_card", 1000, "EUR");
    body["method"]["country"] = json!("kp");
    let blocked = app.charge_body(&app.user, &body).await;
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["risk"]["reasons"], json!(["blocked_country"]));

    let mut body = charge_body("tok_client_card", 1000, "EUR");
    body["method"]["bin"] = json!("424242");
    body["method"]["country"] = json!("DE");
    assert_eq!(
        app.charge_body(&app.user, &body).await["status"],
        "captured"
    );

    let outbox = app.outbox().await;
    let kinds: Vec<&str> = outbox.iter().map(|(kind, _, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["payment.blocked", "payment.blocked", "payment.captured"]
    );

    // Decisions and rules are counted.
    let metrics = app.metrics().await;
    let decisions = |decision| metrics.sum("fraud_decisions_total", &[("decision", decision)]);
    assert_eq!(decisions("block"), 2.0);
    assert_eq!(decisions("allow"), 1.0);
    assert_eq!(decisions("review"), 0.0);
    let fired = |rule| metrics.sum("fraud_rules_fired_total", &[("rule", rule)]);
    assert_eq!(fired("blocked_bin"), 1.0);
    assert_eq!(fired("blocked_country"), 1.0);
    let text = metrics.text();
    assert!(
        text.contains(r#"fraud_decisions_total{service="payment-service",decision="allow"} 1"#),
        "{text}"
    );

    // The provider's own card data applies with nothing from the client: the sandbox's
    // Mastercard has BIN 555555.
    let provider_bin = app.charge(&app.user, "tok_mastercard", 1000).await;
    assert_eq!(provider_bin["status"], "blocked", "{provider_bin}");
    assert_eq!(provider_bin["risk"]["reasons"], json!(["blocked_bin"]));
    // And it beats what the client claims.
    let mut body = charge_body("tok_mastercard", 1000, "EUR");
    body["method"]["bin"] = json!("424242");
    let claimed = app.charge_body(&app.user, &body).await;
    assert_eq!(claimed["status"], "blocked", "{claimed}");
}

/// The history rule reads the user's captured payments in the charge's currency, their count
/// and average, from the database: above ten times the average, a payment is held.
async fn an_amount_far_above_the_users_history_is_held(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.fraud.max_payments_per_user = 1_000;
        config.fraud.max_payments_per_card = 1_000;
        // The amounts stay under the default review limit (100,000).
    })
    .await;
    // Two payments are no history yet: any amount passes.
    for amount in [1000, 1000] {
        let paid = app.charge(&app.user, "tok_visa", amount).await;
        assert_eq!(paid["status"], "captured", "{paid}");
    }
    let early = app.charge(&app.user, "tok_visa", 1003).await;
    assert_eq!(early["status"], "captured", "{early}");
    // Three payments averaging 1001: ten times that is still fine, one unit more is not.
    let at_multiple = app.charge(&app.user, "tok_visa", 10_010).await;
    assert_eq!(at_multiple["status"], "captured", "{at_multiple}");
    assert_eq!(at_multiple["risk"]["reasons"], json!([]));
    // Four now, averaging 3253.25 (3253 rounded or truncated): 32,530 passes.
    let below = app.charge(&app.user, "tok_visa", 32_530).await;
    assert_eq!(below["status"], "captured", "{below}");
    // Five, averaging 9108.6: above ten times 9109 (the average rounded) is held.
    let held = app.charge(&app.user, "tok_visa", 91_091).await;
    assert_eq!(held["status"], "requires_review", "{held}");
    assert_eq!(held["risk"]["reasons"], json!(["amount_far_above_history"]));
    assert_not_sent(&held);
    // A held payment is not history; another currency has none; another user neither.
    let again = app.charge(&app.user, "tok_visa", 91_091).await;
    assert_eq!(
        again["risk"]["reasons"],
        json!(["amount_far_above_history"])
    );
    let usd = app
        .charge_body(&app.user, &charge_body("tok_visa", 91_091, "USD"))
        .await;
    assert_eq!(usd["status"], "captured", "{usd}");
    let other = app.charge(&actor(Role::User), "tok_visa", 91_091).await;
    assert_eq!(other["status"], "captured", "{other}");
}

platform_testing::backend_tests!(
    too_many_payments_are_held_then_blocked,
    amounts_over_the_limits_are_stopped,
    an_amount_far_above_the_users_history_is_held,
    blocked_bins_and_countries_are_refused,
    many_shoppers_share_a_test_token_but_one_card_is_still_one_card,
);

/// The sandbox's test tokens are one card per shopper: fifty shoppers paying with `tok_visa`
/// are fifty cards, all captured; one shopper hammering one card is still caught.
async fn many_shoppers_share_a_test_token_but_one_card_is_still_one_card(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let shoppers: Vec<_> = (0..50).map(|_| actor(Role::User)).collect();
    let paid = futures::future::join_all(
        shoppers
            .iter()
            .map(|shopper| app.charge(shopper, "tok_visa", 1500)),
    )
    .await;
    for payment in &paid {
        assert_eq!(payment["status"], "captured", "{payment}");
        assert_eq!(payment["risk"]["reasons"], json!([]), "{payment}");
    }

    let hammer = actor(Role::User);
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let payment = app.charge(&hammer, "tok_visa", 1500).await;
        statuses.push((
            payment["status"].as_str().unwrap().to_owned(),
            payment["risk"]["reasons"].clone(),
        ));
    }
    // The card's limit (5 an hour) is reached on the sixth: held, then blocked.
    assert!(
        statuses[..5].iter().all(|(s, _)| s == "captured"),
        "{statuses:?}"
    );
    assert_eq!(statuses[5].0, "requires_review", "{statuses:?}");
    assert_eq!(statuses[5].1, json!(["velocity_card"]));
    assert!(
        statuses[5..].iter().all(|(s, _)| s != "captured"),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|(s, _)| s == "blocked"), "{statuses:?}");
}
