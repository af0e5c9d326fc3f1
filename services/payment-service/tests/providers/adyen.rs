//! Adyen: the API, against the fake server.

use std::time::{Duration, Instant};

use payment_service::providers::{
    ChargeOutcome, PaymentProvider, ProviderCharge, ProviderError, ProviderRefund, RefundOutcome,
};
use serde_json::json;

use crate::fakes::{adyen_at, closed_port_url, fake_adyen};
use crate::{
    ADYEN_KEY, ADYEN_MERCHANT, card, charge_request, declined, is_not_sent, is_unknown,
    refund_request,
};

#[tokio::test]
async fn adyen_charge_sends_a_card_on_file_payment() {
    let (fake, base) = fake_adyen().await;
    let provider = adyen_at(&format!("{base}/"));
    assert_eq!(provider.name(), "adyen");
    let request = charge_request("tok_adyen_ok");
    let charge = provider.charge(&request).await.unwrap();
    assert_eq!(
        charge,
        ProviderCharge {
            provider_payment_id: "NC6HT9CRT65ZGN82".into(),
            outcome: ChargeOutcome::Captured,
            card: card("visa", "1111"),
        }
    );
    let sent = &fake.seen()[0];
    assert_eq!(sent.path, "/v71/payments");
    assert_eq!(sent.header("x-api-key"), Some(ADYEN_KEY));
    assert_eq!(sent.header("idempotency-key"), Some("idem-tok_adyen_ok"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.json,
        json!({
            "amount": {"value": 1999, "currency": "EUR"},
            "reference": request.payment_id.to_string(),
            "paymentMethod": {"type": "scheme", "storedPaymentMethodId": "tok_adyen_ok"},
            "merchantAccount": ADYEN_MERCHANT,
            "shopperReference": "user-7",
            "shopperInteraction": "ContAuth",
            "recurringProcessingModel": "CardOnFile",
        })
    );
    let no_brand = provider
        .charge(&charge_request("tok_adyen_nobrand"))
        .await
        .unwrap();
    assert_eq!(no_brand.card, card("unknown", "0008"));
}

#[tokio::test]
async fn adyen_result_codes_map_to_outcomes() {
    let (_fake, base) = fake_adyen().await;
    let provider = adyen_at(&base);
    let refused = provider
        .charge(&charge_request("tok_adyen_refused"))
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        ProviderError::Declined {
            code: "12".into(),
            message: "Not enough balance".into(),
        }
    );
    let bare = provider
        .charge(&charge_request("tok_adyen_refused_bare"))
        .await
        .unwrap_err();
    assert!(declined("refused")(&bare), "{bare:?}");

    let received = provider
        .charge(&charge_request("tok_adyen_received"))
        .await
        .unwrap();
    assert_eq!(received.outcome, ChargeOutcome::Pending);
    assert_eq!(received.card, None);
    let challenge = provider
        .charge(&charge_request("tok_adyen_challenge"))
        .await
        .unwrap();
    assert_eq!(challenge.outcome, ChargeOutcome::RequiresReview);
    assert_eq!(challenge.provider_payment_id, "CHALLENGE0000001");

    let error = provider.charge(&charge_request("tok_adyen_error")).await;
    assert!(
        matches!(error, Err(ProviderError::Rejected(_))),
        "{error:?}"
    );
    let invalid = provider.charge(&charge_request("tok_adyen_422")).await;
    assert!(
        matches!(&invalid, Err(ProviderError::Rejected(m)) if m.contains("14_012")),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn adyen_outages_leave_the_outcome_unknown_unless_nothing_was_sent() {
    let (_fake, base) = fake_adyen().await;
    let provider = adyen_at(&base);
    let server_error = provider.charge(&charge_request("tok_adyen_500")).await;
    assert!(is_unknown(&server_error), "{server_error:?}");

    let started = Instant::now();
    let slow = provider.charge(&charge_request("tok_adyen_slow")).await;
    assert!(is_unknown(&slow), "{slow:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));

    let closed = adyen_at(&closed_port_url().await)
        .charge(&charge_request("tok_adyen_ok"))
        .await;
    assert!(is_not_sent(&closed), "{closed:?}");
}

#[tokio::test]
async fn adyen_refund_is_pending_until_the_notification() {
    let (fake, base) = fake_adyen().await;
    let provider = adyen_at(&base);
    let refund = provider
        .refund(&refund_request("NC6HT9CRT65ZGN82"))
        .await
        .unwrap();
    assert_eq!(
        refund,
        ProviderRefund {
            provider_refund_id: "KHQC5N7G84BLNK43".into(),
            outcome: RefundOutcome::Pending,
        }
    );
    let sent = &fake.seen()[0];
    assert_eq!(sent.path, "/v71/payments/NC6HT9CRT65ZGN82/refunds");
    assert_eq!(sent.header("x-api-key"), Some(ADYEN_KEY));
    assert_eq!(sent.header("idempotency-key"), Some("refund-idem-1"));
    assert_eq!(
        sent.json,
        json!({
            "amount": {"value": 500, "currency": "EUR"},
            "merchantAccount": ADYEN_MERCHANT,
            "reference": "refund-idem-1",
        })
    );

    // Never sent: the reference would become part of the path.
    let odd = provider.refund(&refund_request("../../v71/payments")).await;
    assert!(matches!(odd, Err(ProviderError::Rejected(_))), "{odd:?}");
    assert_eq!(fake.seen().len(), 1);
}
