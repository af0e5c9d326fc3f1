//! Payment providers behind one trait, and the failover between them.
//!
//! A provider charges a card token, refunds a charge, and verifies its own webhooks. The
//! service holds them in priority order ([`Providers`]): a charge goes to the first; when it is
//! *unavailable* (connect error, timeout, 5xx) the next is tried; a *decline* is an answer
//! and never fails over (the same card would be charged twice).
//!
//! Implementations: [`sandbox`] (built in, deterministic test tokens), [`stripe`]
//! (PaymentIntents and Refunds over Stripe's REST API, `Stripe-Signature` webhooks) and
//! [`adyen`] (Checkout API, HMAC-signed notification items).

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use http::HeaderMap;
use platform_metrics::Metrics;
use platform_money::Money;

use crate::domain::{CardInfo, CardToken, PaymentId};

pub mod adyen;
pub mod sandbox;
pub mod stripe;
mod support;

/// A charge to make.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub token: CardToken,
    /// Who pays (our user id): the reference a provider files stored cards under (Adyen's
    /// `shopperReference`, required with a stored card).
    pub customer: String,
    /// Sent to the provider so a retried request never charges twice.
    pub idempotency_key: String,
    pub description: String,
}

/// How the provider answered a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Money taken.
    Captured,
    /// Held on the card, to be captured later.
    Authorized,
    /// The provider holds it for review (e.g. 3-D Secure, manual risk check); a webhook says
    /// how it ends.
    RequiresReview,
    /// Accepted; the outcome arrives by webhook.
    Pending,
}

/// A provider's answer to a charge it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCharge {
    /// The provider's id of the payment (`pi_…`, a PSP reference, …).
    pub provider_payment_id: String,
    pub outcome: ChargeOutcome,
    pub card: Option<CardInfo>,
}

/// A refund to make.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub provider_payment_id: String,
    pub amount: Money,
    pub idempotency_key: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOutcome {
    Succeeded,
    /// Accepted; a webhook confirms it.
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub provider_refund_id: String,
    pub outcome: RefundOutcome,
}

/// Why a provider call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Could not be reached, timed out, or failed on its side (5xx): try the next provider.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the card: final, never retried elsewhere.
    #[error("declined ({code}): {message}")]
    Declined { code: String, message: String },
    /// The provider rejected the request itself (4xx other than a decline): a bug or a
    /// misconfiguration on our side; not retried elsewhere.
    #[error("rejected by the provider: {0}")]
    Rejected(String),
}

/// What a verified webhook says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookKind {
    Authorized,
    Captured,
    Failed { reason: String },
    Refunded { amount: Money },
}

/// One event from a verified webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The provider's event id: applied once, duplicates acknowledged and ignored.
    pub id: String,
    pub provider_payment_id: String,
    pub kind: WebhookKind,
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Missing, malformed or wrong signature (or signed with another secret): 401.
    #[error("invalid signature")]
    BadSignature,
    /// Signed too long ago (outside the tolerance window): a replay; 401.
    #[error("stale signature")]
    Stale,
    /// Signed correctly but not understood: 400.
    #[error("malformed event: {0}")]
    Malformed(String),
}

/// One payment provider.
pub trait PaymentProvider: Send + Sync + 'static {
    /// The name used in configuration, in payments (`provider`) and in the webhook path.
    fn name(&self) -> &'static str;

    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<ProviderCharge, ProviderError>>;

    fn refund<'a>(
        &'a self,
        request: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<ProviderRefund, ProviderError>>;

    /// Checks the signature over the raw `body` and parses the events it carries. `now` is
    /// passed in so the tolerance window is testable.
    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<WebhookEvent>, WebhookError>;
}

/// The configured providers, in priority order. Cheap to clone.
#[derive(Clone)]
pub struct Providers {
    ordered: Arc<[Arc<dyn PaymentProvider>]>,
    /// Times every call (`provider_request_duration_seconds`).
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.ordered.iter().map(|p| p.name()).collect();
        f.debug_struct("Providers")
            .field("ordered", &names)
            .finish()
    }
}

impl Providers {
    pub fn new(ordered: Vec<Arc<dyn PaymentProvider>>) -> Self {
        Self {
            ordered: ordered.into(),
            metrics: None,
        }
    }

    /// Times every provider call into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// How a provider call failed, as the `outcome` label names it.
    fn outcome(error: &ProviderError) -> &'static str {
        match error {
            ProviderError::Unavailable(_) => "unavailable",
            ProviderError::Declined { .. } => "declined",
            ProviderError::Rejected(_) => "rejected",
        }
    }

    /// Refunds with `provider` (the one that took the charge).
    pub async fn refund(
        &self,
        provider: &Arc<dyn PaymentProvider>,
        request: &RefundRequest,
    ) -> Result<ProviderRefund, ProviderError> {
        let call = provider.refund(request);
        platform_outbound::observed(
            self.metrics.as_ref(),
            provider.name(),
            "refund",
            call,
            Self::outcome,
        )
        .await
    }

    /// The provider called `name`, for refunds and webhooks.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn PaymentProvider>> {
        self.ordered.iter().find(|p| p.name() == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.ordered.iter().map(|p| p.name()).collect()
    }

    /// Charges with the first provider that is available; returns which one answered.
    /// Declines and rejections end the attempt; only unavailability moves on.
    pub async fn charge(
        &self,
        request: &ChargeRequest,
    ) -> Result<(&'static str, ProviderCharge), ProviderError> {
        let mut last = ProviderError::Unavailable("no payment provider is configured".into());
        for provider in self.ordered.iter() {
            let call = provider.charge(request);
            let charged = platform_outbound::observed(
                self.metrics.as_ref(),
                provider.name(),
                "charge",
                call,
                Self::outcome,
            );
            match charged.await {
                Ok(charge) => return Ok((provider.name(), charge)),
                Err(ProviderError::Unavailable(reason)) => {
                    tracing::warn!(provider = provider.name(), %reason, "provider unavailable; trying the next");
                    last = ProviderError::Unavailable(format!("{}: {reason}", provider.name()));
                }
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }
}
