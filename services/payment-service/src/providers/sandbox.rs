//! The sandbox provider: built in, no network, the default in embedded mode. The card token
//! alone decides the outcome, so every path of the service (captures, declines, failover,
//! review) can be exercised without a provider account.
//!
//! | Token | Outcome |
//! |---|---|
//! | `tok_visa`, `tok_success` | captured; card `visa` ending `4242` |
//! | `tok_mastercard` | captured; card `mastercard` ending `4444` |
//! | `tok_authorize` | authorized (held, not captured); card `visa` ending `4242` |
//! | `tok_decline` | declined, code `card_declined` |
//! | `tok_insufficient_funds` | declined, code `insufficient_funds` |
//! | `tok_expired` | declined, code `expired_card` |
//! | `tok_network_error` | provider unavailable: the next configured provider is tried |
//! | `tok_review` | requires review; card `visa` ending `4242` |
//! | any other valid token | captured; card `unknown` ending `0000` |
//!
//! Payment ids look like `sbx_<32 hex>`; refunds always succeed at once (`sbxr_<32 hex>`).
//!
//! Webhooks: the body is JSON
//! `{"id", "type", "payment_id", "amount"?, "reason"?, "timestamp"?}` where `type` is one of
//! `payment.authorized`, `payment.captured`, `payment.failed` (with `reason`) and
//! `payment.refunded` (with `amount`, e.g. `{"amount": 500, "currency": "EUR"}`, the amount of
//! this refund); `payment_id` is the `sbx_…` id. The `Sandbox-Signature` header carries the
//! lower-case hex HMAC-SHA256 of the raw body under the webhook secret
//! ([`DEV_WEBHOOK_SECRET`] unless configured; [`SandboxProvider::sign`] computes it). The
//! optional `timestamp` (unix seconds) is covered by the signature and must be within
//! [`TOLERANCE`] of now, so a captured webhook cannot be replayed later; other event types are
//! acknowledged and ignored.

use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use futures::future::BoxFuture;
use http::HeaderMap;
use platform_config::{ExposeSecret, SecretString};
use platform_money::Money;
use serde::Deserialize;
use uuid::Uuid;

use super::support::{header, hmac_sha256, outside_tolerance, same, to_hex};
use super::{
    ChargeOutcome, ChargeRequest, PaymentProvider, ProviderCharge, ProviderError, ProviderRefund,
    RefundOutcome, RefundRequest, WebhookError, WebhookEvent, WebhookKind,
};
use crate::domain::CardInfo;

pub const NAME: &str = "sandbox";

/// The header carrying a sandbox webhook's signature.
pub const SIGNATURE_HEADER: &str = "Sandbox-Signature";

/// The webhook secret when none is configured. Public on purpose: the sandbox moves no money,
/// and local tools need it to sign test webhooks.
pub const DEV_WEBHOOK_SECRET: &str = "sandbox-dev-webhook-secret";

/// How far a webhook's `timestamp` may be from now.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// The deterministic test provider (see the module documentation for its tokens).
#[derive(Debug)]
pub struct SandboxProvider {
    webhook_secret: SecretString,
}

impl Default for SandboxProvider {
    fn default() -> Self {
        Self::new(SecretString::from(DEV_WEBHOOK_SECRET))
    }
}

impl SandboxProvider {
    pub fn new(webhook_secret: SecretString) -> Self {
        Self { webhook_secret }
    }

    /// The `Sandbox-Signature` value for `body`, for tests and local tools that send webhooks.
    pub fn sign(&self, body: &[u8]) -> String {
        to_hex(hmac_sha256(&self.key(), &[body]).as_ref())
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(
            hmac::HMAC_SHA256,
            self.webhook_secret.expose_secret().as_bytes(),
        )
    }

    fn decide(token: &str) -> Result<(ChargeOutcome, Option<CardInfo>), ProviderError> {
        let card = |brand: &str, last4: &str| {
            Some(CardInfo {
                brand: brand.to_owned(),
                last4: last4.to_owned(),
            })
        };
        let declined = |code: &str, message: &str| ProviderError::Declined {
            code: code.to_owned(),
            message: message.to_owned(),
        };
        match token {
            "tok_visa" | "tok_success" => Ok((ChargeOutcome::Captured, card("visa", "4242"))),
            "tok_mastercard" => Ok((ChargeOutcome::Captured, card("mastercard", "4444"))),
            "tok_authorize" => Ok((ChargeOutcome::Authorized, card("visa", "4242"))),
            "tok_review" => Ok((ChargeOutcome::RequiresReview, card("visa", "4242"))),
            "tok_decline" => Err(declined("card_declined", "The card was declined.")),
            "tok_insufficient_funds" => Err(declined(
                "insufficient_funds",
                "The card has insufficient funds.",
            )),
            "tok_expired" => Err(declined("expired_card", "The card has expired.")),
            "tok_network_error" => Err(ProviderError::Unavailable(
                "simulated network error (tok_network_error)".into(),
            )),
            _ => Ok((ChargeOutcome::Captured, card("unknown", "0000"))),
        }
    }
}

/// A sandbox webhook body; only `id` and `type` are needed to acknowledge an unknown event.
#[derive(Deserialize)]
struct SandboxEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    payment_id: Option<String>,
    amount: Option<Money>,
    reason: Option<String>,
    timestamp: Option<i64>,
}

impl PaymentProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<ProviderCharge, ProviderError>> {
        let answer = Self::decide(request.token.as_str()).map(|(outcome, card)| ProviderCharge {
            provider_payment_id: format!("sbx_{}", Uuid::new_v4().simple()),
            outcome,
            card,
        });
        Box::pin(std::future::ready(answer))
    }

    fn refund<'a>(
        &'a self,
        _request: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<ProviderRefund, ProviderError>> {
        Box::pin(std::future::ready(Ok(ProviderRefund {
            provider_refund_id: format!("sbxr_{}", Uuid::new_v4().simple()),
            outcome: RefundOutcome::Succeeded,
        })))
    }

    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        let given = header(headers, SIGNATURE_HEADER).ok_or(WebhookError::BadSignature)?;
        let expected = self.sign(body);
        if !same(
            expected.as_bytes(),
            given.trim().to_ascii_lowercase().as_bytes(),
        ) {
            return Err(WebhookError::BadSignature);
        }

        let event: SandboxEvent = serde_json::from_slice(body)
            .map_err(|e| WebhookError::Malformed(format!("not a sandbox event: {e}")))?;
        if event
            .timestamp
            .is_some_and(|signed_at| outside_tolerance(signed_at, now, TOLERANCE))
        {
            return Err(WebhookError::Stale);
        }
        let kind = match event.kind.as_str() {
            "payment.authorized" => WebhookKind::Authorized,
            "payment.captured" => WebhookKind::Captured,
            "payment.failed" => WebhookKind::Failed {
                reason: event.reason.unwrap_or_else(|| "payment failed".into()),
            },
            "payment.refunded" => WebhookKind::Refunded {
                amount: event.amount.ok_or_else(|| {
                    WebhookError::Malformed("payment.refunded needs an amount".into())
                })?,
            },
            _ => return Ok(Vec::new()),
        };
        let provider_payment_id = event
            .payment_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| WebhookError::Malformed("missing payment_id".into()))?;
        if event.id.is_empty() {
            return Err(WebhookError::Malformed("empty event id".into()));
        }
        Ok(vec![WebhookEvent {
            id: event.id,
            provider_payment_id,
            kind,
        }])
    }
}
