//! Every payment outcome is announced through the outbox, in the transaction that records it.

use platform_money::Currency;
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::spawn_with;

async fn outcomes_are_published_through_the_outbox(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.fraud.block_limits.insert(Currency::EUR, 50_000);
    })
    .await;
    let captured = app.charge(&app.user, "tok_visa", 1000).await;
    let failed = app.charge(&app.user, "tok_decline", 2000).await;
    let refunded = app
        .refund(&app.admin, captured["id"].as_str().unwrap(), Some(400))
        .await;
    let blocked = app.charge(&app.user, "tok_visa", 60_000).await;
    let authorized = app.charge(&app.user, "tok_authorize", 700).await;
    // Held for review: announced as waiting for a decision.
    let review = app.charge(&app.user, "tok_review", 800).await;
    assert_eq!(blocked["status"], "blocked");

    let outbox = app.outbox().await;
    let kinds: Vec<&str> = outbox.iter().map(|(kind, _, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "payment.captured",
            "payment.failed",
            "payment.refunded",
            "payment.blocked",
            "payment.authorized",
            "payment.review_requested",
        ]
    );
    let subjects: Vec<&Value> = [
        &captured,
        &failed,
        &refunded,
        &blocked,
        &authorized,
        &review,
    ]
    .iter()
    .map(|p| &p["id"])
    .collect();
    for ((kind, subject, envelope), id) in outbox.iter().zip(subjects) {
        assert_eq!(subject, id.as_str().unwrap(), "{kind}");
        assert_eq!(envelope["type"], kind.as_str());
        assert_eq!(envelope["subject"], *id);
        assert_eq!(envelope["source"], "payment-service");
        let data = &envelope["data"];
        assert_eq!(data["payment_id"], *id, "{kind}");
        assert_eq!(data["user_id"], app.user.id.to_string(), "{kind}");
        assert_eq!(data["currency"], "EUR", "{kind}");
    }
    let data = |i: usize| -> &Value { &outbox[i].2["data"] };
    assert_eq!(data(0)["amount"], 1000);
    assert_eq!(data(0)["order_id"], captured["order_id"]);
    assert_eq!(data(0)["provider"], "sandbox");
    assert_eq!(data(1)["amount"], 2000);
    // The provider that declined it.
    assert_eq!(data(1)["provider"], "sandbox");
    assert!(
        data(1)["reason"]
            .as_str()
            .unwrap()
            .contains("card_declined")
    );
    assert_eq!(data(2)["refund_amount"], 400);
    assert_eq!(data(2)["refunded_total"], 400);
    assert_eq!(data(2)["reason"], "returned");
    assert_eq!(data(2)["amount"], 1000);
    assert_eq!(data(3)["amount"], 60_000);
    assert_eq!(data(3)["score"], blocked["risk"]["score"]);
    assert_eq!(data(3)["reasons"], json!(["amount_over_block_limit"]));
    assert_eq!(data(4)["amount"], 700);
    assert_eq!(data(5)["held_by"], "provider");
    assert_eq!(data(5)["amount"], 800);
    // The outbox carries no card data.
    assert!(
        !serde_json::to_string(&outbox.iter().map(|r| &r.2).collect::<Vec<_>>())
            .unwrap()
            .contains("tok_")
    );
}

platform_testing::backend_tests!(outcomes_are_published_through_the_outbox);
