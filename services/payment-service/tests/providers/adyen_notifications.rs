//! Adyen: notifications, signed here independently and verified by the client.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use payment_service::providers::{PaymentProvider, WebhookError, WebhookEvent, WebhookKind};
use serde_json::json;

use crate::fakes::adyen_at;
use crate::signing::{Item, adyen_hmac_key, notification};
use crate::{eur, now};

#[test]
fn adyen_notifications_map_authorisations_and_refunds() {
    let provider = adyen_at("http://unused.invalid");
    let mut refused = Item::new("QJ5H8K2S7LP4QZ91", "AUTHORISATION", "false");
    refused.reason = "Not enough balance";
    let mut refund = Item::new("KHQC5N7G84BLNK43", "REFUND", "true");
    refund.original = "NC6HT9CRT65ZGN82";
    refund.value = 500;
    let body = notification(vec![
        Item::new("NC6HT9CRT65ZGN82", "AUTHORISATION", "true").json(),
        refused.json(),
        refund.json(),
        // Known to Adyen, not to us.
        Item::new("NC6HT9CRT65ZGN82", "CAPTURE", "true").json(),
        Item::new("KHQC5N7G84BLNK99", "REFUND", "false").json(),
    ]);
    // No timestamp in Adyen's scheme: any "now" will do.
    let far_future = now() + Duration::from_secs(365 * 86_400);
    let events = provider
        .verify_webhook(&HeaderMap::new(), &body, far_future)
        .unwrap();
    assert_eq!(
        events,
        vec![
            WebhookEvent {
                id: "NC6HT9CRT65ZGN82:AUTHORISATION:true".into(),
                provider_payment_id: "NC6HT9CRT65ZGN82".into(),
                reference: None,
                kind: WebhookKind::Captured,
            },
            WebhookEvent {
                id: "QJ5H8K2S7LP4QZ91:AUTHORISATION:false".into(),
                provider_payment_id: "QJ5H8K2S7LP4QZ91".into(),
                reference: None,
                kind: WebhookKind::Failed {
                    reason: "Not enough balance".into(),
                },
            },
            WebhookEvent {
                id: "KHQC5N7G84BLNK43:REFUND:true".into(),
                provider_payment_id: "NC6HT9CRT65ZGN82".into(),
                reference: None,
                kind: WebhookKind::Refunded { amount: eur(500) },
            },
        ]
    );
}

#[test]
fn adyen_notification_signatures_are_enforced() {
    let provider = adyen_at("http://unused.invalid");
    let good = Item::new("NC6HT9CRT65ZGN82", "AUTHORISATION", "true");
    let check = |body: Vec<u8>| provider.verify_webhook(&HeaderMap::new(), &body, now());
    assert_eq!(check(notification(vec![good.json()])).unwrap().len(), 1);

    // Tampered: the amount changed after signing.
    let mut tampered = good.json();
    tampered["NotificationRequestItem"]["amount"]["value"] = json!(1);
    assert_eq!(
        check(notification(vec![tampered])),
        Err(WebhookError::BadSignature)
    );
    // Tampered: turned into a success.
    let mut flipped = Item::new("NC6HT9CRT65ZGN82", "AUTHORISATION", "false").json();
    flipped["NotificationRequestItem"]["success"] = json!("true");
    assert_eq!(
        check(notification(vec![flipped])),
        Err(WebhookError::BadSignature)
    );
    // Another key.
    let wrong_key = good.json_signed_with(&good.signature(b"another hmac key", true));
    assert_eq!(
        check(notification(vec![wrong_key])),
        Err(WebhookError::BadSignature)
    );
    // One forged item spoils the batch.
    let forged = Item::new("FORGED0000000001", "AUTHORISATION", "true")
        .json_signed_with(&BASE64.encode([0u8; 32]));
    assert_eq!(
        check(notification(vec![good.json(), forged])),
        Err(WebhookError::BadSignature)
    );
    for signature in [json!(null), json!("%%% not base64 %%%"), json!("")] {
        let mut item = good.json();
        item["NotificationRequestItem"]["additionalData"]["hmacSignature"] = signature.clone();
        assert_eq!(
            check(notification(vec![item])),
            Err(WebhookError::BadSignature),
            "{signature}"
        );
    }
    assert_eq!(check(notification(vec![])), Err(WebhookError::BadSignature));
    assert_eq!(check(b"not json".to_vec()), Err(WebhookError::BadSignature));
}

#[test]
fn adyen_signature_escapes_separators() {
    let provider = adyen_at("http://unused.invalid");
    let mut item = Item::new("NC6HT9CRT65ZGN82", "AUTHORISATION", "true");
    item.reference = "order:42\\b";
    let escaped = item.json();
    assert_eq!(
        provider
            .verify_webhook(&HeaderMap::new(), &notification(vec![escaped]), now())
            .unwrap()
            .len(),
        1
    );
    let unescaped = item.json_signed_with(&item.signature(&adyen_hmac_key(), false));
    assert_eq!(
        provider.verify_webhook(&HeaderMap::new(), &notification(vec![unescaped]), now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn adyen_ignores_other_merchant_accounts_and_unknown_events() {
    let provider = adyen_at("http://unused.invalid");
    let mut elsewhere = Item::new("NC6HT9CRT65ZGN82", "AUTHORISATION", "true");
    elsewhere.merchant = "OtherShopECOM";
    let body = notification(vec![
        elsewhere.json(),
        Item::new("NC6HT9CRT65ZGN82", "REPORT_AVAILABLE", "true").json(),
        Item::new("NC6HT9CRT65ZGN82", "CANCELLATION", "true").json(),
    ]);
    assert_eq!(
        provider.verify_webhook(&HeaderMap::new(), &body, now()),
        Ok(vec![])
    );
}
