//! `POST /api/v1/payments/{id}/refund`: partial and full refunds of captured payments, never
//! more than was captured, idempotent per key, even under concurrency.

use platform_http::audit::{Action, Actor, Outcome};
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_fields, json_of, new_key, problem, spawn_app, spawn_with};

fn refund_of(amount: i64, currency: &str) -> Value {
    json!({"amount": {"amount": amount, "currency": currency}, "reason": "returned"})
}

async fn partial_then_full_refund(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.charge(&app.user, "tok_visa", 1000).await;
    let id = payment["id"].as_str().unwrap();

    let partial = app.refund(&app.admin, id, Some(300)).await;
    assert_eq!(partial["status"], "partially_refunded");
    assert_eq!(partial["refunded_amount"], 300);
    assert_eq!(partial["id"], payment["id"]);

    let too_much = problem(
        app.post_refund(id, &new_key())
            .by(&app.admin)
            .json(&refund_of(701, "EUR"))
            .await,
        409,
    )
    .await;
    assert!(
        too_much["detail"].as_str().unwrap().contains("700"),
        "{too_much}"
    );

    let wrong_currency = problem(
        app.post_refund(id, &new_key())
            .by(&app.admin)
            .json(&refund_of(100, "USD"))
            .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&wrong_currency), ["amount.currency"]);
    let invalid = problem(
        app.post_refund(id, &new_key())
            .by(&app.admin)
            .json(&json!({"amount": {"amount": 0, "currency": "EUR"}, "reason": " "}))
            .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&invalid), ["amount.amount", "reason"]);

    // No amount: everything left.
    let rest = app.refund(&app.admin, id, None).await;
    assert_eq!(rest["status"], "refunded");
    assert_eq!(rest["refunded_amount"], 1000);
    assert_eq!(app.payment(&app.user, id).await, rest);

    problem(
        app.post_refund(id, &new_key())
            .by(&app.admin)
            .json(&refund_of(1, "EUR"))
            .await,
        409,
    )
    .await;
    problem(
        app.post_refund(id, &new_key())
            .by(&app.admin)
            .json(&json!({"reason": "again"}))
            .await,
        409,
    )
    .await;
    // An administrator may refund anyone's payment.
    let other = app.charge(&app.user, "tok_visa", 500).await;
    let by_admin = app
        .refund(&app.admin, other["id"].as_str().unwrap(), Some(500))
        .await;
    assert_eq!(by_admin["status"], "refunded");
}

async fn only_captured_payments_can_be_refunded(backend: Backend) {
    let app = spawn_app(backend).await;
    for token in ["tok_decline", "tok_authorize", "tok_review"] {
        let payment = app.charge(&app.user, token, 1000).await;
        let id = payment["id"].as_str().unwrap();
        let refused = problem(
            app.post_refund(id, &new_key())
                .by(&app.admin)
                .json(&refund_of(100, "EUR"))
                .await,
            409,
        )
        .await;
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains(payment["status"].as_str().unwrap()),
            "{refused}"
        );
        assert_eq!(app.payment(&app.user, id).await, payment, "unchanged");
    }
    problem(
        app.post_refund(&uuid::Uuid::now_v7().to_string(), &new_key())
            .by(&app.admin)
            .json(&refund_of(100, "EUR"))
            .await,
        404,
    )
    .await;
    let payment = app.charge(&app.user, "tok_visa", 1000).await;
    let id = payment["id"].as_str().unwrap();
    let missing_key = app
        .post(&format!("/api/v1/payments/{id}/refund"))
        .by(&app.admin)
        .json(&refund_of(100, "EUR"))
        .await;
    problem(missing_key, 400).await;
    assert_eq!(app.payment(&app.user, id).await["refunded_amount"], 0);
}

async fn a_refund_key_refunds_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.charge(&app.user, "tok_visa", 1000).await;
    let id = payment["id"].as_str().unwrap();
    let key = new_key();
    let first = app
        .post_refund(id, &key)
        .by(&app.admin)
        .json(&refund_of(400, "EUR"))
        .await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_of(first, 200).await;
    assert_eq!(first["refunded_amount"], 400);
    let again = app
        .post_refund(id, &key)
        .by(&app.admin)
        .json(&refund_of(400, "EUR"))
        .await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(again, 200).await, first);
    assert_eq!(app.payment(&app.user, id).await["refunded_amount"], 400);
    assert_eq!(app.events_of("payment.refunded", id).await.len(), 1);

    // The same key for another refund is refused, whatever differs.
    for other in [
        refund_of(500, "EUR"),
        refund_of(400, "USD"),
        json!({"amount": {"amount": 400, "currency": "EUR"}, "reason": "damaged"}),
        json!({"reason": "returned"}),
    ] {
        let refused = problem(
            app.post_refund(id, &key).by(&app.admin).json(&other).await,
            422,
        )
        .await;
        assert_eq!(error_fields(&refused), ["Idempotency-Key"], "{other}");
    }
    assert_eq!(app.payment(&app.user, id).await["refunded_amount"], 400);
}

/// Ten concurrent refunds of `amount` (distinct keys) on a payment: the answers.
async fn refund_storm(app: &TestApp, id: &str, amount: i64) -> Vec<(u16, Value)> {
    let body = refund_of(amount, "EUR");
    let keys: Vec<String> = (0..10).map(|_| new_key()).collect();
    let responses = futures::future::join_all(
        keys.iter()
            .map(|key| app.post_refund(id, key).by(&app.admin).json(&body).send()),
    )
    .await;
    let mut answers = Vec::new();
    for response in responses {
        let status = response.status().as_u16();
        answers.push((status, response.json().await.unwrap()));
    }
    answers
}

async fn concurrent_refunds_never_exceed_the_payment(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.fraud.max_payments_per_user = 100;
        config.fraud.max_payments_per_card = 100;
    })
    .await;
    // Several payments at once, to give lost updates every chance to show.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let payment = app.charge(&app.user, "tok_visa", 1000).await;
        ids.push(payment["id"].as_str().unwrap().to_owned());
    }
    let storms = futures::future::join_all(ids.iter().map(|id| refund_storm(&app, id, 300))).await;
    for (id, answers) in ids.iter().zip(storms) {
        let mut succeeded = 0;
        for (status, body) in answers {
            match status {
                200 => {
                    let refunded = body["refunded_amount"].as_i64().unwrap();
                    assert!((300..=900).contains(&refunded), "{body}");
                    succeeded += 1;
                }
                409 => assert_eq!(body["status"], 409),
                status => panic!("unexpected {status}: {body}"),
            }
        }
        assert_eq!(succeeded, 3, "three refunds of 300 fit in 1000");
        let after = app.payment(&app.user, id).await;
        assert_eq!(after["refunded_amount"], 900);
        assert_eq!(after["status"], "partially_refunded");
        let events = app.events_of("payment.refunded", id).await;
        assert_eq!(events.len(), 3);
        let mut totals: Vec<i64> = events
            .iter()
            .map(|e| e["refunded_total"].as_i64().unwrap())
            .collect();
        totals.sort_unstable();
        // Each total counts the refunds reserved so far (in flight ones included).
        assert!(totals.iter().all(|t| (300..=900).contains(t)), "{totals:?}");
        assert_eq!(totals.last(), Some(&900));
        let amounts: Vec<&Value> = events.iter().map(|e| &e["refund_amount"]).collect();
        assert_eq!(amounts, [300, 300, 300]);

        // The last 100 is still refundable, and nothing more.
        let last = app.refund(&app.admin, id, None).await;
        assert_eq!(last["refunded_amount"], 1000);
        assert_eq!(last["status"], "refunded");
    }
}

/// Refunds that all fit are all counted: none is lost to another's concurrent write.
async fn concurrent_refunds_are_all_counted(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.fraud.max_payments_per_user = 100;
        config.fraud.max_payments_per_card = 100;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let payment = app.charge(&app.user, "tok_visa", 1000).await;
        ids.push(payment["id"].as_str().unwrap().to_owned());
    }
    let storms = futures::future::join_all(ids.iter().map(|id| refund_storm(&app, id, 100))).await;
    for (id, answers) in ids.iter().zip(storms) {
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
        }
        let after = app.payment(&app.user, id).await;
        assert_eq!(after["refunded_amount"], 1000, "{after}");
        assert_eq!(after["status"], "refunded");
        assert_eq!(app.events_of("payment.refunded", id).await.len(), 10);
    }
}

async fn a_refund_is_audited_once_however_often_it_is_repeated(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = app.charge(&app.user, "tok_visa", 1000).await;
    let id = payment["id"].as_str().unwrap();
    let key = new_key();
    for _ in 0..2 {
        let response = app
            .post_refund(id, &key)
            .by(&app.admin)
            .json(&refund_of(400, "EUR"))
            .await;
        json_of(response, 200).await;
    }
    let target = format!("payment:{id}");
    let record = platform_testing::grpc::audited(&app.events, "the refund", |record| {
        record.action == Action::PaymentRefund && record.target.as_deref() == Some(&target)
    })
    .await;
    assert_eq!(record.actor, Some(Actor::User(app.admin.id)));
    assert_eq!(record.outcome, Outcome::Success);
    assert!(record.client_ip.is_some() && record.request_id.is_some());
    // The replay under the same key repeated the answer, not the refund.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let refunds = platform_testing::grpc::audit_records(&app.events)
        .await
        .into_iter()
        .filter(|record| record.action == Action::PaymentRefund)
        .count();
    assert_eq!(refunds, 1);
}

/// A payment the checkout made for an order is refunded through the order (so the order and
/// its stock agree); direct charges can be switched off.
async fn order_payments_are_refunded_through_their_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.grpc_client().await;
    let paid = client
        .charge(platform_proto::payment::v1::ChargeRequest {
            order_id: uuid::Uuid::now_v7().to_string(),
            user_id: app.user.id.to_string(),
            amount: Some(platform_proto::payment::v1::Money {
                amount: 1500,
                currency: "EUR".into(),
            }),
            token: "tok_visa".into(),
            idempotency_key: new_key(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.status, "captured");
    let refused = problem(
        app.post_refund(&paid.id, &new_key())
            .by(&app.admin)
            .json(&refund_of(100, "EUR"))
            .await,
        409,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("/api/v1/admin/orders/{}/refund", paid.order_id)),
        "{refused}"
    );
    // A payment belongs to its order: another charge for it, under another key, is refused
    // (422 when its amount is not the order's), and so is a direct charge.
    let again = |amount: i64| platform_proto::payment::v1::ChargeRequest {
        order_id: paid.order_id.clone(),
        user_id: app.user.id.to_string(),
        amount: Some(platform_proto::payment::v1::Money {
            amount,
            currency: "EUR".into(),
        }),
        token: "tok_visa".into(),
        idempotency_key: new_key(),
        ..Default::default()
    };
    let mismatch = client.charge(again(2000)).await.unwrap_err();
    assert_eq!(
        mismatch.code(),
        tonic::Code::InvalidArgument,
        "{mismatch:?}"
    );
    assert!(
        mismatch.message().contains("does not match"),
        "{mismatch:?}"
    );
    let twice = client.charge(again(1500)).await.unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition, "{twice:?}");
    let response = app
        .charge_order(&paid.order_id, 1500, "EUR")
        .by(&app.user)
        .await;
    problem(response, 409).await;
    assert_eq!(
        app.list(&app.admin, &[]).await["total"],
        1,
        "nothing more was charged"
    );

    // The order service's own refund goes through.
    let refunded = client
        .refund(platform_proto::payment::v1::RefundRequest {
            payment_id: paid.id.clone(),
            amount: None,
            reason: "order cancelled".into(),
            idempotency_key: new_key(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refunded.refunded_amount, 1500);
}

async fn direct_payments_can_be_switched_off(backend: Backend) {
    let app = spawn_with(backend, |config| config.direct_payments = false).await;
    let response = app
        .post_charge(&new_key())
        .by(&app.user)
        .json(&crate::helpers::charge_body("tok_visa", 1000, "EUR"))
        .await;
    let refused = problem(response, 403).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("DIRECT_PAYMENTS"),
        "{refused}"
    );
    assert_eq!(app.list(&app.admin, &[]).await["total"], 0);
}

platform_testing::backend_tests!(
    order_payments_are_refunded_through_their_order,
    direct_payments_can_be_switched_off,
    a_refund_is_audited_once_however_often_it_is_repeated,
    concurrent_refunds_are_all_counted,
    partial_then_full_refund,
    only_captured_payments_can_be_refunded,
    a_refund_key_refunds_once,
    concurrent_refunds_never_exceed_the_payment,
);
