//! Failover: which errors move a charge on to the next provider, and which must not.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use axum::http::HeaderMap;
use futures::future::BoxFuture;
use payment_service::providers::sandbox::SandboxProvider;
use payment_service::providers::{
    ChargeOutcome, ChargeRequest, PaymentProvider, ProviderCharge, ProviderError, ProviderRefund,
    Providers, RefundRequest, WebhookError, WebhookEvent,
};

use crate::fakes::{closed_port_url, fake_stripe, stripe_at};
use crate::{charge_request, charge_via, declined};

/// A provider that counts its charges and always captures.
#[derive(Default)]
pub(crate) struct Counting {
    pub(crate) charges: AtomicUsize,
}

impl PaymentProvider for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn charge<'a>(
        &'a self,
        _request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<ProviderCharge, ProviderError>> {
        self.charges.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(ProviderCharge {
                provider_payment_id: "cnt_1".into(),
                outcome: ChargeOutcome::Captured,
                card: None,
            })
        })
    }

    fn refund<'a>(
        &'a self,
        _request: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<ProviderRefund, ProviderError>> {
        Box::pin(async { Err(ProviderError::Rejected("not used".into())) })
    }

    fn verify_webhook(
        &self,
        _headers: &HeaderMap,
        _body: &[u8],
        _now: SystemTime,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        Err(WebhookError::BadSignature)
    }
}

pub(crate) fn chain(first: Arc<dyn PaymentProvider>, counting: &Arc<Counting>) -> Providers {
    Providers::new(vec![first, counting.clone()])
}

#[tokio::test]
async fn unavailability_fails_over_to_the_next_provider() {
    let counting = Arc::new(Counting::default());
    let providers = chain(Arc::new(SandboxProvider::default()), &counting);
    assert_eq!(providers.names(), ["sandbox", "counting"]);
    let (name, charge) = charge_via(&providers, &charge_request("tok_network_error"))
        .await
        .unwrap();
    assert_eq!(
        (name, charge.provider_payment_id.as_str()),
        ("counting", "cnt_1")
    );
    assert_eq!(counting.charges.load(Ordering::SeqCst), 1);

    // The same over a real transport: Stripe cannot be reached.
    let stripe = Arc::new(stripe_at(&closed_port_url().await));
    let (name, _) = charge_via(&chain(stripe, &counting), &charge_request("pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(name, "counting");
    assert_eq!(counting.charges.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_decline_never_reaches_the_next_provider() {
    let counting = Arc::new(Counting::default());
    let providers = chain(Arc::new(SandboxProvider::default()), &counting);
    for token in ["tok_decline", "tok_insufficient_funds", "tok_expired"] {
        let error = charge_via(&providers, &charge_request(token))
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Declined { .. }), "{error:?}");
    }
    let (name, _) = charge_via(&providers, &charge_request("tok_visa"))
        .await
        .unwrap();
    assert_eq!(name, "sandbox");

    let (_fake, base) = fake_stripe().await;
    let stripe = chain(Arc::new(stripe_at(&base)), &counting);
    let error = charge_via(&stripe, &charge_request("pm_card_funds"))
        .await
        .unwrap_err();
    assert!(declined("insufficient_funds")(&error), "{error:?}");
    let rejected = charge_via(&stripe, &charge_request("pm_bad_request")).await;
    assert!(
        matches!(rejected, Err(ProviderError::Rejected(_))),
        "{rejected:?}"
    );
    // Nor does an unknown outcome: the money may be at Stripe already.
    let unknown = charge_via(&stripe, &charge_request("pm_server_error")).await;
    assert!(
        matches!(unknown, Err(ProviderError::Unknown(_))),
        "{unknown:?}"
    );
    let slow = charge_via(&stripe, &charge_request("pm_slow")).await;
    assert!(matches!(slow, Err(ProviderError::Unknown(_))), "{slow:?}");
    let rejected = charge_via(&stripe, &charge_request("pm_bad_request")).await;
    assert!(
        matches!(rejected, Err(ProviderError::Rejected(_))),
        "{rejected:?}"
    );
    assert_eq!(counting.charges.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn when_every_provider_is_unavailable_the_last_reason_is_kept() {
    let providers = Providers::new(vec![Arc::new(SandboxProvider::default())]);
    let error = charge_via(&providers, &charge_request("tok_network_error"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::NotSent(m) if m.starts_with("sandbox:")),
        "{error:?}"
    );
}
