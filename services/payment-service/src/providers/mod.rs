//! Payment providers behind one trait, and the failover between them.
//!
//! A provider charges a card token, refunds a charge, and verifies its own webhooks. The
//! service holds them in priority order ([`Providers`]): a charge goes to the first; only when
//! it was *not sent* (no connection could be made, or an answer the provider documents as "not
//! processed", such as a rate limit) is the next tried. A timeout, a broken connection or any
//! other 5xx leaves the outcome *unknown*: the provider may have taken the money, so another
//! provider is never charged; the same provider is asked again under the same idempotency key
//! ([`Providers::resolve`]) until it says what happened. A *decline* is an answer and never
//! fails over either.
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
    /// Nothing reached the provider (connection refused, unreachable), or it answered that it
    /// did not process the request (429): the next provider may be tried.
    #[error("provider unavailable: {0}")]
    NotSent(String),
    /// The request may have reached the provider and been acted on (a timeout, a connection
    /// lost mid-call, a 5xx, an answer we cannot read): never tried elsewhere; the same
    /// provider is asked again under the same idempotency key.
    #[error("provider outcome unknown: {0}")]
    Unknown(String),
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
    /// Our payment id, as the provider echoes it (Stripe's `metadata.payment_id`, Adyen's
    /// `merchantReference`, the sandbox's `reference`): finds the payment even when its
    /// provider id was never recorded (the charge's answer was lost).
    pub reference: Option<PaymentId>,
    pub kind: WebhookKind,
}

/// What a provider can tell about a card before it is charged, for the fraud rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardDetails {
    /// The provider's fingerprint of the card number: the same card under any token (Stripe's
    /// `card.fingerprint`). Velocity counts payments per fingerprint.
    pub fingerprint: Option<String>,
    /// The card's first digits.
    pub bin: Option<String>,
    /// The issuing country, ISO 3166 alpha-2.
    pub country: Option<String>,
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

    /// What the provider knows of the card `token` of `customer` before any charge. A
    /// provider that cannot say returns nothing; a failure here never stops a charge (the
    /// rules then key on the token).
    fn card_details<'a>(
        &'a self,
        _token: &'a CardToken,
        _customer: &'a str,
    ) -> BoxFuture<'a, CardDetails> {
        Box::pin(std::future::ready(CardDetails::default()))
    }

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
            ProviderError::NotSent(_) => "unavailable",
            ProviderError::Unknown(_) => "unknown",
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

    /// Charges with the first provider the request can be sent to. Returns which provider
    /// handled it (answered, declined, or left the outcome unknown; none when nothing reached
    /// any) with its result: an [`ProviderError::Unknown`]
    /// outcome belongs to that provider, which is asked again ([`Self::resolve`]), never
    /// another. Only [`ProviderError::NotSent`] moves on to the next.
    pub async fn charge(
        &self,
        request: &ChargeRequest,
    ) -> (Option<&'static str>, Result<ProviderCharge, ProviderError>) {
        let mut last = (
            None,
            Err(ProviderError::NotSent(
                "no payment provider is configured".into(),
            )),
        );
        for provider in self.ordered.iter() {
            match self.charge_with(provider, request).await {
                Err(ProviderError::NotSent(reason)) => {
                    tracing::warn!(provider = provider.name(), %reason, "provider unavailable; trying the next");
                    // Nothing reached it: no provider handled this charge (yet).
                    last = (
                        None,
                        Err(ProviderError::NotSent(format!(
                            "{}: {reason}",
                            provider.name()
                        ))),
                    );
                }
                result => return (Some(provider.name()), result),
            }
        }
        last
    }

    /// Asks `provider` what became of a charge whose outcome is unknown, by charging again
    /// under the same idempotency key: every provider here answers a repeated key with the
    /// first request's result (Stripe and Adyen replay it; the sandbox keeps a ledger), and a
    /// request that never arrived is made now, once.
    pub async fn resolve(
        &self,
        provider: &str,
        request: &ChargeRequest,
    ) -> Result<ProviderCharge, ProviderError> {
        let provider = self
            .get(provider)
            .ok_or_else(|| ProviderError::Rejected(format!("no provider named {provider}")))?;
        self.charge_with(provider, request).await
    }

    async fn charge_with(
        &self,
        provider: &Arc<dyn PaymentProvider>,
        request: &ChargeRequest,
    ) -> Result<ProviderCharge, ProviderError> {
        let call = provider.charge(request);
        platform_outbound::observed(
            self.metrics.as_ref(),
            provider.name(),
            "charge",
            call,
            Self::outcome,
        )
        .await
    }

    /// What the primary provider knows of the card (for the fraud rules).
    pub async fn card_details(&self, token: &CardToken, customer: &str) -> CardDetails {
        match self.ordered.first() {
            Some(provider) => provider.card_details(token, customer).await,
            None => CardDetails::default(),
        }
    }
}
