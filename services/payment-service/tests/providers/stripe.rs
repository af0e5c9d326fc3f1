//! Stripe: the API, against the fake server.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use payment_service::domain::CardToken;
use payment_service::providers::sandbox::SandboxProvider;
use payment_service::providers::{
    ChargeOutcome, PaymentProvider, ProviderCharge, ProviderError, ProviderRefund, RefundOutcome,
};

use crate::failover::{Counting, chain};
use crate::fakes::{closed_port_url, fake_stripe, stripe_at};
use crate::{STRIPE_KEY, card, charge_request, declined, is_not_sent, is_unknown, refund_request};

#[tokio::test]
async fn stripe_charge_sends_a_confirmed_payment_intent() {
    let (fake, base) = fake_stripe().await;
    let provider = stripe_at(&base);
    assert_eq!(provider.name(), "stripe");
    let request = charge_request("pm_card_visa");
    let charge = provider.charge(&request).await.unwrap();
    assert_eq!(
        charge,
        ProviderCharge {
            provider_payment_id: "pi_3Pfake".into(),
            outcome: ChargeOutcome::Captured,
            card: card("visa", "4242"),
        }
    );

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let sent = &seen[0];
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {STRIPE_KEY}").as_str())
    );
    assert_eq!(sent.header("idempotency-key"), Some("idem-pm_card_visa"));
    assert_eq!(
        sent.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let payment_id = request.payment_id.to_string();
    for (name, value) in [
        ("amount", "1999"),
        ("currency", "eur"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("capture_method", "automatic"),
        ("description", "Order 42"),
        ("metadata[payment_id]", payment_id.as_str()),
    ] {
        assert_eq!(sent.field(name), Some(value), "{name}");
    }
}

#[tokio::test]
async fn stripe_statuses_map_to_outcomes() {
    let (_fake, base) = fake_stripe().await;
    let provider = stripe_at(&base);
    for (token, outcome, expected_card) in [
        (
            "pm_card_authorize",
            ChargeOutcome::Authorized,
            card("mastercard", "4444"),
        ),
        ("pm_card_processing", ChargeOutcome::Pending, None),
        (
            "pm_card_3ds",
            ChargeOutcome::RequiresReview,
            card("amex", "0005"),
        ),
    ] {
        let charge = provider.charge(&charge_request(token)).await.unwrap();
        assert_eq!(charge.outcome, outcome, "{token}");
        assert_eq!(charge.card, expected_card, "{token}");
    }
}

#[tokio::test]
async fn stripe_402_is_a_decline_with_the_most_specific_code() {
    let (_fake, base) = fake_stripe().await;
    let provider = stripe_at(&base);
    let error = provider
        .charge(&charge_request("pm_card_funds"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ProviderError::Declined {
            code: "insufficient_funds".into(),
            message: "Your card has insufficient funds.".into(),
        }
    );
    let error = provider
        .charge(&charge_request("pm_card_expired"))
        .await
        .unwrap_err();
    assert!(declined("expired_card")(&error), "{error:?}");
}

#[tokio::test]
async fn stripe_failures_on_its_side_are_unknown_rate_limits_unsent_and_ours_rejected() {
    let (_fake, base) = fake_stripe().await;
    let provider = stripe_at(&base);
    // A 500 may come after the charge went through.
    assert!(is_unknown(
        &provider.charge(&charge_request("pm_server_error")).await
    ));
    // A 429 is documented as not processed.
    assert!(is_not_sent(
        &provider.charge(&charge_request("pm_rate_limited")).await
    ));
    let rejected = provider.charge(&charge_request("pm_bad_request")).await;
    assert!(
        matches!(&rejected, Err(ProviderError::Rejected(m)) if m.contains("resource_missing")),
        "{rejected:?}"
    );
}

#[tokio::test]
async fn stripe_unreachable_is_not_sent() {
    let provider = stripe_at(&closed_port_url().await);
    let result = provider.charge(&charge_request("pm_card_visa")).await;
    assert!(is_not_sent(&result), "{result:?}");
}

#[tokio::test]
async fn stripe_timeout_is_an_unknown_outcome() {
    let (_fake, base) = fake_stripe().await;
    let provider = stripe_at(&base);
    let started = Instant::now();
    let result = provider.charge(&charge_request("pm_slow")).await;
    assert!(is_unknown(&result), "{result:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// Stripe captures, the answer is lost to a timeout, and the charge is asked about again under
/// the same key: one capture, found by the repeat, and the next provider never called.
#[tokio::test]
async fn a_timeout_after_capture_is_resolved_at_the_same_provider_never_failed_over() {
    let (fake, base) = fake_stripe().await;
    let counting = Arc::new(Counting::default());
    let providers = chain(Arc::new(stripe_at(&base)), &counting);
    let request = charge_request("pm_timeout_once");
    let (name, first) = providers.charge(&request).await;
    assert_eq!(name, Some("stripe"));
    assert!(is_unknown(&first), "{first:?}");
    assert_eq!(counting.charges.load(Ordering::SeqCst), 0, "no failover");

    let resolved = providers.resolve("stripe", &request).await.unwrap();
    assert_eq!(resolved.outcome, ChargeOutcome::Captured);
    assert_eq!(resolved.provider_payment_id, "pi_timeout_once");
    assert_eq!(fake.captures(), 1, "one capture for two requests");
    let keys: Vec<_> = fake
        .seen()
        .iter()
        .filter(|seen| seen.path == "/v1/payment_intents")
        .map(|seen| seen.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        [request.idempotency_key.clone(), request.idempotency_key]
    );
    assert_eq!(counting.charges.load(Ordering::SeqCst), 0);

    // The sandbox behaves the same (`tok_timeout`), and remembers by key.
    let sandbox = chain(Arc::new(SandboxProvider::default()), &counting);
    let request = charge_request("tok_timeout");
    let (name, first) = sandbox.charge(&request).await;
    assert_eq!(name, Some("sandbox"));
    assert!(is_unknown(&first), "{first:?}");
    let again = sandbox.resolve("sandbox", &request).await.unwrap();
    let once_more = sandbox.resolve("sandbox", &request).await.unwrap();
    assert_eq!(again.outcome, ChargeOutcome::Captured);
    assert_eq!(again.provider_payment_id, once_more.provider_payment_id);
    assert_eq!(counting.charges.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn card_details_come_from_the_provider() {
    let (_fake, base) = fake_stripe().await;
    let stripe = stripe_at(&base);
    let token = CardToken::parse("pm_card_visa").unwrap();
    let details = stripe.card_details(&token, "user-1").await;
    assert_eq!(details.fingerprint.as_deref(), Some("fp_Visa4242"));
    assert_eq!(details.country.as_deref(), Some("US"));
    // Unknown to Stripe: nothing, and the charge is not stopped by it.
    let unknown = CardToken::parse("pm_missing").unwrap();
    assert_eq!(
        stripe.card_details(&unknown, "user-1").await.fingerprint,
        None
    );

    // The sandbox's test tokens are one card per shopper; other tokens one card for all.
    let sandbox = SandboxProvider::default();
    let visa = CardToken::parse("tok_visa").unwrap();
    let a = sandbox.card_details(&visa, "shopper-a").await;
    let b = sandbox.card_details(&visa, "shopper-b").await;
    assert_ne!(a.fingerprint, b.fingerprint);
    assert_eq!(
        a.fingerprint,
        sandbox.card_details(&visa, "shopper-a").await.fingerprint
    );
    assert_eq!(
        (a.bin.as_deref(), a.country.as_deref()),
        (Some("424242"), Some("US"))
    );
    let own = CardToken::parse("tok_my_own_card").unwrap();
    assert_eq!(
        sandbox.card_details(&own, "shopper-a").await.fingerprint,
        sandbox.card_details(&own, "shopper-b").await.fingerprint
    );
}

#[tokio::test]
async fn stripe_refund_keeps_free_text_in_metadata() {
    let (fake, base) = fake_stripe().await;
    let provider = stripe_at(&base);
    let refund = provider.refund(&refund_request("pi_3Pfake")).await.unwrap();
    assert_eq!(
        refund,
        ProviderRefund {
            provider_refund_id: "re_3Pfake".into(),
            outcome: RefundOutcome::Succeeded,
        }
    );
    let sent = &fake.seen()[0];
    assert_eq!(sent.path, "/v1/refunds");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {STRIPE_KEY}").as_str())
    );
    assert_eq!(sent.header("idempotency-key"), Some("refund-idem-1"));
    assert_eq!(sent.field("payment_intent"), Some("pi_3Pfake"));
    assert_eq!(sent.field("amount"), Some("500"));
    assert_eq!(
        sent.field("metadata[reason]"),
        Some("customer changed their mind: returned")
    );
    assert_eq!(sent.field("reason"), None);

    let pending = provider
        .refund(&refund_request("pi_pending"))
        .await
        .unwrap();
    assert_eq!(pending.outcome, RefundOutcome::Pending);
    let broken = provider.refund(&refund_request("pi_broken")).await;
    // A 502 may come after the refund was made.
    assert!(
        matches!(broken, Err(ProviderError::Unknown(_))),
        "{broken:?}"
    );
}
