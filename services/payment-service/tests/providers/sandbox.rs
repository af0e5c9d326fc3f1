//! Sandbox: the token table that local development and the API tests rely on, and its
//! signed webhooks.

use axum::http::HeaderMap;
use payment_service::domain::CardInfo;
use payment_service::providers::sandbox::{self, SandboxProvider};
use payment_service::providers::{
    ChargeOutcome, PaymentProvider, ProviderError, RefundOutcome, WebhookError, WebhookEvent,
    WebhookKind,
};
use platform_config::SecretString;
use serde_json::{Value, json};

use crate::signing::{headers, hex, hmac_bytes};
use crate::{NOW_SECS, card, charge_request, declined, eur, now, refund_request};

#[tokio::test]
async fn sandbox_token_table_is_complete() {
    let provider = SandboxProvider::default();
    assert_eq!(provider.name(), "sandbox");
    let captured = |brand, last4| Ok((ChargeOutcome::Captured, card(brand, last4)));
    /// What a token should give: an outcome and a card, or an error code.
    type Expected = Result<(ChargeOutcome, Option<CardInfo>), &'static str>;
    let table: Vec<(&str, Expected)> = vec![
        ("tok_visa", captured("visa", "4242")),
        ("tok_success", captured("visa", "4242")),
        ("tok_mastercard", captured("mastercard", "4444")),
        (
            "tok_authorize",
            Ok((ChargeOutcome::Authorized, card("visa", "4242"))),
        ),
        (
            "tok_review",
            Ok((ChargeOutcome::RequiresReview, card("visa", "4242"))),
        ),
        ("tok_anything_else", captured("unknown", "0000")),
        ("pm_card_custom", captured("unknown", "0000")),
        ("tok_decline", Err("card_declined")),
        ("tok_insufficient_funds", Err("insufficient_funds")),
        ("tok_expired", Err("expired_card")),
        ("tok_network_error", Err("unavailable")),
        ("tok_timeout", Err("unknown")),
        ("tok_no_answer", Err("unknown")),
    ];
    for (token, expected) in table {
        let result = provider.charge(&charge_request(token)).await;
        match (expected, result) {
            (Ok((outcome, card)), Ok(charge)) => {
                assert_eq!(charge.outcome, outcome, "{token}");
                assert_eq!(charge.card, card, "{token}");
                let id = charge.provider_payment_id;
                let hex = id.strip_prefix("sbx_").unwrap_or_else(|| panic!("{id}"));
                assert_eq!(hex.len(), 32, "{id}");
                assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            }
            (Err("unavailable"), Err(ProviderError::NotSent(_))) => {}
            (Err("unknown"), Err(ProviderError::Unknown(_))) => {}
            (Err(code), Err(error)) => assert!(declined(code)(&error), "{token}: {error:?}"),
            (expected, got) => panic!("{token}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[tokio::test]
async fn sandbox_ids_are_unique_per_key_and_refunds_succeed() {
    let provider = SandboxProvider::default();
    let a = provider.charge(&charge_request("tok_visa")).await.unwrap();
    let mut other = charge_request("tok_visa");
    other.idempotency_key = "idem-another".into();
    let b = provider.charge(&other).await.unwrap();
    assert_ne!(a.provider_payment_id, b.provider_payment_id);
    // A repeated key is answered with the first answer, as a real provider does.
    let again = provider.charge(&charge_request("tok_visa")).await.unwrap();
    assert_eq!(again, a);
    let refund = provider
        .refund(&refund_request(&a.provider_payment_id))
        .await
        .unwrap();
    assert_eq!(refund.outcome, RefundOutcome::Succeeded);
    assert!(refund.provider_refund_id.starts_with("sbxr_"));
}

fn sandbox_body(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn sandbox_headers(secret: &str, body: &[u8]) -> HeaderMap {
    headers(
        sandbox::SIGNATURE_HEADER,
        &hex(&hmac_bytes(secret.as_bytes(), body)),
    )
}

#[test]
fn sandbox_webhooks_map_every_event_type() {
    let secret = "sandbox-test-secret";
    let provider = SandboxProvider::new(SecretString::from(secret));
    let cases = [
        (
            json!({"id": "evt_1", "type": "payment.captured", "payment_id": "sbx_1"}),
            WebhookKind::Captured,
        ),
        (
            json!({"id": "evt_2", "type": "payment.authorized", "payment_id": "sbx_1"}),
            WebhookKind::Authorized,
        ),
        (
            json!({"id": "evt_3", "type": "payment.failed", "payment_id": "sbx_1",
                "reason": "issuer unavailable"}),
            WebhookKind::Failed {
                reason: "issuer unavailable".into(),
            },
        ),
        (
            json!({"id": "evt_4", "type": "payment.refunded", "payment_id": "sbx_1",
                "amount": {"amount": 500, "currency": "EUR"}, "timestamp": NOW_SECS - 299}),
            WebhookKind::Refunded { amount: eur(500) },
        ),
    ];
    for (value, kind) in cases {
        let body = sandbox_body(value.clone());
        let events = provider
            .verify_webhook(&sandbox_headers(secret, &body), &body, now())
            .unwrap();
        assert_eq!(
            events,
            vec![WebhookEvent {
                id: value["id"].as_str().unwrap().into(),
                provider_payment_id: "sbx_1".into(),
                reference: None,
                kind,
            }]
        );
    }
}

#[test]
fn sandbox_webhook_signatures_are_enforced() {
    let provider = SandboxProvider::default();
    let body = sandbox_body(
        json!({"id": "evt_1", "type": "payment.captured", "payment_id": "sbx_1",
            "timestamp": NOW_SECS}),
    );
    let valid = sandbox_headers(sandbox::DEV_WEBHOOK_SECRET, &body);
    assert_eq!(
        provider.verify_webhook(&valid, &body, now()).unwrap().len(),
        1
    );
    // The helper for local tools signs exactly like this.
    assert_eq!(
        provider.sign(&body),
        valid[sandbox::SIGNATURE_HEADER].to_str().unwrap()
    );

    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("sbx_1", "sbx_2")
        .into_bytes();
    assert_eq!(
        provider.verify_webhook(&valid, &tampered, now()),
        Err(WebhookError::BadSignature)
    );
    let wrong_secret = sandbox_headers("another-secret", &body);
    assert_eq!(
        provider.verify_webhook(&wrong_secret, &body, now()),
        Err(WebhookError::BadSignature)
    );
    for (name, value) in [
        (sandbox::SIGNATURE_HEADER, "not-hex"),
        (sandbox::SIGNATURE_HEADER, ""),
        ("Stripe-Signature", "whatever"),
    ] {
        assert_eq!(
            provider.verify_webhook(&headers(name, value), &body, now()),
            Err(WebhookError::BadSignature),
            "{name}: {value}"
        );
    }
    assert_eq!(
        provider.verify_webhook(&HeaderMap::new(), &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn sandbox_webhooks_outside_the_window_are_stale() {
    let provider = SandboxProvider::default();
    for timestamp in [NOW_SECS - 301, NOW_SECS + 301] {
        let body = sandbox_body(json!({"id": "evt_1", "type": "payment.captured",
            "payment_id": "sbx_1", "timestamp": timestamp}));
        let signed = sandbox_headers(sandbox::DEV_WEBHOOK_SECRET, &body);
        assert_eq!(
            provider.verify_webhook(&signed, &body, now()),
            Err(WebhookError::Stale),
            "{timestamp}"
        );
    }
}

#[test]
fn sandbox_unknown_events_are_ignored_and_incomplete_ones_refused() {
    let provider = SandboxProvider::default();
    let check = |value: Value| {
        let body = sandbox_body(value);
        let signed = sandbox_headers(sandbox::DEV_WEBHOOK_SECRET, &body);
        provider.verify_webhook(&signed, &body, now())
    };
    assert_eq!(
        check(json!({"id": "evt_1", "type": "payment.disputed"})),
        Ok(vec![])
    );
    assert!(matches!(
        check(json!({"id": "evt_1", "type": "payment.refunded", "payment_id": "sbx_1"})),
        Err(WebhookError::Malformed(_))
    ));
    assert!(matches!(
        check(json!({"id": "evt_1", "type": "payment.captured"})),
        Err(WebhookError::Malformed(_))
    ));
    assert!(matches!(
        check(json!(["not", "an", "event"])),
        Err(WebhookError::Malformed(_))
    ));
}
