//! The gRPC `PaymentService` the order saga calls: charge (idempotent), refund, read, and
//! status codes for what it refuses.

use platform_proto::payment::v1 as proto;
use platform_testing::Backend;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{new_key, spawn_app};

fn eur(amount: i64) -> Option<proto::Money> {
    Some(proto::Money {
        amount,
        currency: "EUR".to_owned(),
    })
}

fn charge_request(user: Uuid, token: &str, amount: i64, key: &str) -> proto::ChargeRequest {
    proto::ChargeRequest {
        order_id: Uuid::now_v7().to_string(),
        user_id: user.to_string(),
        amount: eur(amount),
        token: token.to_owned(),
        idempotency_key: key.to_owned(),
        ..Default::default()
    }
}

async fn charge_refund_and_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.grpc_client().await;
    let user = Uuid::now_v7();
    let key = new_key();
    let request = charge_request(user, "tok_visa", 3000, &key);
    let payment = client.charge(request.clone()).await.unwrap().into_inner();
    assert_eq!(payment.status, "captured");
    assert_eq!(payment.state(), proto::PaymentStatus::Captured);
    assert_eq!(payment.provider, "sandbox");
    assert!(payment.provider_payment_id.starts_with("sbx_"));
    assert_eq!(payment.user_id, user.to_string());
    assert_eq!(payment.order_id, request.order_id);
    assert_eq!(payment.amount, eur(3000));
    let risk = payment.risk.clone().unwrap();
    assert_eq!(risk.decision, "allow");
    assert!(risk.reasons.is_empty());
    assert_eq!(payment.refunded_amount, 0);
    assert_eq!(payment.failure_reason, "");

    // Idempotent by key: the same payment, not a second one.
    let again = client.charge(request.clone()).await.unwrap().into_inner();
    assert_eq!(again, payment);
    let mut other = request.clone();
    other.amount = eur(3001);
    let refused = client.charge(other).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(app.list(&app.admin, &[]).await["total"], 1);
    // The payment is the user's, as the REST API shows it.
    let rest = app.payment(&app.admin, &payment.id).await;
    assert_eq!(rest["user_id"], user.to_string());

    // A partial refund, idempotent too.
    let refund = proto::RefundRequest {
        payment_id: payment.id.clone(),
        amount: eur(1000),
        reason: String::new(),
        idempotency_key: new_key(),
    };
    let refunded = client.refund(refund.clone()).await.unwrap().into_inner();
    assert_eq!(refunded.status, "partially_refunded");
    assert_eq!(refunded.state(), proto::PaymentStatus::PartiallyRefunded);
    assert_eq!(refunded.refunded_amount, 1000);
    assert_eq!(client.refund(refund).await.unwrap().into_inner(), refunded);
    let read = client
        .get_payment(proto::GetPaymentRequest {
            payment_id: payment.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, refunded);
    let events = app.events_of("payment.refunded", &payment.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "order cancelled", "the default reason");
    // Money that moved is counted once, replays aside (minor units).
    let metrics = app.metrics().await;
    let moved = |kind| {
        metrics.sum(
            "payment_amount_total",
            &[("currency", "EUR"), ("kind", kind)],
        )
    };
    assert_eq!(moved("captured"), 3000.0);
    assert_eq!(moved("refunded"), 1000.0);

    // More than is left, then the rest (no amount).
    let too_much = client
        .refund(proto::RefundRequest {
            payment_id: payment.id.clone(),
            amount: eur(2001),
            reason: "cancelled".to_owned(),
            idempotency_key: new_key(),
        })
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), Code::FailedPrecondition);
    let rest = client
        .refund(proto::RefundRequest {
            payment_id: payment.id.clone(),
            amount: None,
            reason: "cancelled".to_owned(),
            idempotency_key: new_key(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.status, "refunded");
    assert_eq!(rest.refunded_amount, 3000);

    // Declines and blocks are payments, not errors.
    let declined = client
        .charge(charge_request(user, "tok_decline", 100, &new_key()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(declined.status, "failed");
    assert!(declined.failure_reason.contains("card_declined"));
    let refused = client
        .refund(proto::RefundRequest {
            payment_id: declined.id.clone(),
            amount: None,
            reason: String::new(),
            idempotency_key: new_key(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
}

async fn invalid_requests_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.grpc_client().await;
    let user = Uuid::now_v7();

    let unknown = Uuid::now_v7().to_string();
    let missing = client
        .get_payment(proto::GetPaymentRequest {
            payment_id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing = client
        .refund(proto::RefundRequest {
            payment_id: unknown,
            amount: None,
            reason: String::new(),
            idempotency_key: new_key(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bad = client
        .get_payment(proto::GetPaymentRequest {
            payment_id: "not-a-uuid".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let valid = charge_request(user, "tok_visa", 100, &new_key());
    let mut cases = Vec::new();
    let mut r = valid.clone();
    r.token = "4242424242424242".to_owned();
    cases.push(("card number", r));
    let mut r = valid.clone();
    r.order_id = "order-1".to_owned();
    cases.push(("order id", r));
    let mut r = valid.clone();
    r.user_id = String::new();
    cases.push(("user id", r));
    let mut r = valid.clone();
    r.amount = None;
    cases.push(("no amount", r));
    let mut r = valid.clone();
    r.amount = eur(0);
    cases.push(("zero amount", r));
    let mut r = valid.clone();
    r.amount = Some(proto::Money {
        amount: 100,
        currency: "ZZZ".to_owned(),
    });
    cases.push(("currency", r));
    let mut r = valid.clone();
    r.idempotency_key = String::new();
    cases.push(("no key", r));
    for (what, request) in cases {
        let refused = client.charge(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{what}: {refused:?}");
        assert!(!refused.message().contains("4242424242"), "{what}");
    }
    assert_eq!(app.list(&app.admin, &[]).await["total"], 0);

    let payment = client.charge(valid).await.unwrap().into_inner();
    let wrong_currency = client
        .refund(proto::RefundRequest {
            payment_id: payment.id,
            amount: Some(proto::Money {
                amount: 10,
                currency: "USD".to_owned(),
            }),
            reason: String::new(),
            idempotency_key: new_key(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_currency.code(), Code::InvalidArgument);
}

platform_testing::backend_tests!(charge_refund_and_read, invalid_requests_are_refused);
