//! Stripe: webhooks, signed here independently and verified by the client.

use axum::http::HeaderMap;
use payment_service::providers::stripe;
use payment_service::providers::{PaymentProvider, WebhookError, WebhookEvent, WebhookKind};
use serde_json::{Value, json};

use crate::fakes::stripe_at;
use crate::signing::{headers, stripe_signature};
use crate::{NOW_SECS, STRIPE_WHSEC, eur, now};

fn stripe_event(kind: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "evt_1Pfake", "object": "event", "type": kind, "api_version": "2024-06-20",
        "data": {"object": object},
    }))
    .unwrap()
}

fn stripe_signed(body: &[u8], t: i64) -> HeaderMap {
    headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={t},v1={}", stripe_signature(STRIPE_WHSEC, t, body)),
    )
}

const T: i64 = NOW_SECS as i64;

#[test]
fn stripe_webhooks_map_payment_intent_events() {
    let provider = stripe_at("http://unused.invalid");
    let cases = [
        (
            "payment_intent.succeeded",
            json!({"id": "pi_1", "object": "payment_intent", "status": "succeeded"}),
            WebhookKind::Captured,
        ),
        (
            "payment_intent.amount_capturable_updated",
            json!({"id": "pi_1", "status": "requires_capture"}),
            WebhookKind::Authorized,
        ),
        (
            "payment_intent.payment_failed",
            json!({"id": "pi_1", "last_payment_error": {"code": "card_declined",
                "message": "Your card was declined."}}),
            WebhookKind::Failed {
                reason: "Your card was declined.".into(),
            },
        ),
    ];
    for (kind_name, object, kind) in cases {
        let body = stripe_event(kind_name, object);
        let events = provider
            .verify_webhook(&stripe_signed(&body, T), &body, now())
            .unwrap();
        assert_eq!(
            events,
            vec![WebhookEvent {
                id: "evt_1Pfake".into(),
                provider_payment_id: "pi_1".into(),
                reference: None,
                kind,
            }],
            "{kind_name}"
        );
    }
}

#[test]
fn stripe_charge_refunded_reports_this_refunds_amount() {
    let provider = stripe_at("http://unused.invalid");
    let check = |data: Value| {
        let body = serde_json::to_vec(&json!({
            "id": "evt_r", "type": "charge.refunded", "data": data,
        }))
        .unwrap();
        provider.verify_webhook(&stripe_signed(&body, T), &body, now())
    };
    let charge = json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_1",
        "amount": 1999, "amount_refunded": 1500, "currency": "eur"});
    // A second partial refund: 1000 before, 1500 now.
    let second =
        check(json!({"object": charge, "previous_attributes": {"amount_refunded": 1000}})).unwrap();
    assert_eq!(
        second,
        vec![WebhookEvent {
            id: "evt_r".into(),
            provider_payment_id: "pi_1".into(),
            reference: None,
            kind: WebhookKind::Refunded { amount: eur(500) },
        }]
    );
    let first = check(json!({"object": charge})).unwrap();
    assert_eq!(first[0].kind, WebhookKind::Refunded { amount: eur(1500) });
    // Not a PaymentIntent charge: not ours.
    let dashboard = json!({"id": "ch_2", "payment_intent": null, "amount_refunded": 100,
        "currency": "eur"});
    assert_eq!(check(json!({"object": dashboard})), Ok(vec![]));
    let no_amount = json!({"id": "ch_3", "payment_intent": "pi_3", "currency": "eur"});
    assert!(matches!(
        check(json!({"object": no_amount})),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn stripe_webhook_signatures_are_enforced() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    assert!(
        provider
            .verify_webhook(&stripe_signed(&body, T), &body, now())
            .is_ok()
    );

    let tampered = stripe_event("payment_intent.succeeded", json!({"id": "pi_2"}));
    assert_eq!(
        provider.verify_webhook(&stripe_signed(&body, T), &tampered, now()),
        Err(WebhookError::BadSignature)
    );
    let wrong_secret = headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={T},v1={}", stripe_signature("whsec_other", T, &body)),
    );
    assert_eq!(
        provider.verify_webhook(&wrong_secret, &body, now()),
        Err(WebhookError::BadSignature)
    );
    // The timestamp is signed: moving it breaks the signature.
    let moved = headers(
        stripe::SIGNATURE_HEADER,
        &format!(
            "t={},v1={}",
            T + 1,
            stripe_signature(STRIPE_WHSEC, T, &body)
        ),
    );
    assert_eq!(
        provider.verify_webhook(&moved, &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn stripe_accepts_any_matching_v1_and_ignores_v0() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    let valid = stripe_signature(STRIPE_WHSEC, T, &body);
    let old_secret = stripe_signature("whsec_rolled_away", T, &body);
    let several = headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={T},v1={old_secret},v1={valid},v0={old_secret}"),
    );
    assert_eq!(
        provider
            .verify_webhook(&several, &body, now())
            .unwrap()
            .len(),
        1
    );
    let none_valid = headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={T},v1={old_secret},v1={}", "0".repeat(64)),
    );
    assert_eq!(
        provider.verify_webhook(&none_valid, &body, now()),
        Err(WebhookError::BadSignature)
    );
    let only_v0 = headers(stripe::SIGNATURE_HEADER, &format!("t={T},v0={valid}"));
    assert_eq!(
        provider.verify_webhook(&only_v0, &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn stripe_malformed_signature_headers_are_refused() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    let valid = stripe_signature(STRIPE_WHSEC, T, &body);
    for header in [
        String::new(),
        "garbage".into(),
        format!("v1={valid}"),
        format!("t={T}"),
        format!("t=soon,v1={valid}"),
        format!("t={T},v1={valid},t={T}"),
        format!("t={T};v1={valid}"),
    ] {
        assert_eq!(
            provider.verify_webhook(&headers(stripe::SIGNATURE_HEADER, &header), &body, now()),
            Err(WebhookError::BadSignature),
            "{header}"
        );
    }
    assert_eq!(
        provider.verify_webhook(&HeaderMap::new(), &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn stripe_stale_signatures_are_refused() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    for t in [T - 301, T + 301] {
        assert_eq!(
            provider.verify_webhook(&stripe_signed(&body, t), &body, now()),
            Err(WebhookError::Stale),
            "{t}"
        );
    }
    assert!(
        provider
            .verify_webhook(&stripe_signed(&body, T - 300), &body, now())
            .is_ok()
    );
    // A forged request is a bad signature, however old.
    let forged = headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={},v1={}", T - 10_000, "ab".repeat(32)),
    );
    assert_eq!(
        provider.verify_webhook(&forged, &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn stripe_unknown_events_are_acknowledged_and_ignored() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("customer.created", json!({"id": "cus_1"}));
    assert_eq!(
        provider.verify_webhook(&stripe_signed(&body, T), &body, now()),
        Ok(vec![])
    );
    let not_json = b"definitely not json".to_vec();
    assert!(matches!(
        provider.verify_webhook(&stripe_signed(&not_json, T), &not_json, now()),
        Err(WebhookError::Malformed(_))
    ));
}
