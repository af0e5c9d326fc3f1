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
//! | `tok_network_error` | not sent (connection refused): the next configured provider is tried |
//! | `tok_timeout` | captured, but the answer is lost (a timeout): the outcome is unknown until the charge is asked for again under its key |
//! | `tok_no_answer` | every call times out: unknown until a webhook says what happened |
//! | `tok_review` | requires review; card `visa` ending `4242` |
//! | any other valid token | captured; card `unknown` ending `0000` |
//!
//! Payment ids look like `sbx_<32 hex>`; refunds always succeed at once (`sbxr_<32 hex>`).
//! Like a real provider, the sandbox answers a repeated idempotency key with the first
//! answer (a ledger in memory, so a restart forgets it: the next call then charges once).
//!
//! Card details ([`PaymentProvider::card_details`]): the test tokens above stand for one card
//! *per shopper* (their fingerprint is derived from the token and the customer), so any number
//! of shoppers can use `tok_visa` while one shopper repeating a card is still one card. Visa
//! tokens report BIN `424242`, Mastercard `555555`, both issued in `US`.
//!
//! Webhooks: the body is JSON
//! `{"id", "type", "payment_id", "reference"?, "amount"?, "reason"?, "timestamp"?}` (`reference`:
//! our payment id, as real providers echo it) where `type` is one of
//! `payment.authorized`, `payment.captured`, `payment.failed` (with `reason`) and
//! `payment.refunded` (with `amount`, e.g. `{"amount": 500, "currency": "EUR"}`, the amount of
//! this refund); `payment_id` is the `sbx_…` id. The `Sandbox-Signature` header carries the
//! lower-case hex HMAC-SHA256 of the raw body under the webhook secret
//! ([`DEV_WEBHOOK_SECRET`] unless configured; [`SandboxProvider::sign`] computes it). The
//! optional `timestamp` (unix seconds) is covered by the signature and must be within
//! [`TOLERANCE`] of now, so a captured webhook cannot be replayed later; other event types are
//! acknowledged and ignored.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use futures::future::BoxFuture;
use http::HeaderMap;
use platform_config::{ExposeSecret, SecretString};
use platform_http::fingerprint;
use platform_money::Money;
use serde::Deserialize;
use uuid::Uuid;

use super::support::{header, hmac_sha256, outside_tolerance, same, to_hex};
use super::{
    CardDetails, ChargeOutcome, ChargeRequest, PaymentProvider, ProviderCharge, ProviderError,
    ProviderRefund, RefundOutcome, RefundRequest, WebhookError, WebhookEvent, WebhookKind,
};
use crate::domain::{CardInfo, CardToken, PaymentId};

fn timed_out() -> ProviderError {
    ProviderError::Unknown("simulated timeout after sending".into())
}

pub const NAME: &str = "sandbox";

/// The header carrying a sandbox webhook's signature.
pub const SIGNATURE_HEADER: &str = "Sandbox-Signature";

/// The webhook secret when none is configured. Public on purpose: the sandbox moves no money,
/// and local tools need it to sign test webhooks.
pub const DEV_WEBHOOK_SECRET: &str = "sandbox-dev-webhook-secret";

/// How far a webhook's `timestamp` may be from now.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// How many charges the ledger remembers (oldest forgotten first).
const LEDGER_SIZE: usize = 100_000;

/// The deterministic test provider (see the module documentation for its tokens).
#[derive(Debug)]
pub struct SandboxProvider {
    webhook_secret: SecretString,
    /// Answers by idempotency key, as a provider replays them.
    ledger: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    answers: HashMap<String, Result<ProviderCharge, ProviderError>>,
    order: VecDeque<String>,
}

impl Ledger {
    fn remember(&mut self, key: &str, answer: Result<ProviderCharge, ProviderError>) {
        if self.answers.insert(key.to_owned(), answer).is_none() {
            self.order.push_back(key.to_owned());
            while self.order.len() > LEDGER_SIZE {
                if let Some(oldest) = self.order.pop_front() {
                    self.answers.remove(&oldest);
                }
            }
        }
    }
}

/// Tokens that stand for a test card rather than one real card.
const TEST_TOKENS: &[&str] = &[
    "tok_visa",
    "tok_success",
    "tok_mastercard",
    "tok_authorize",
    "tok_review",
    "tok_decline",
    "tok_insufficient_funds",
    "tok_expired",
    "tok_network_error",
    "tok_timeout",
    "tok_no_answer",
];

impl Default for SandboxProvider {
    fn default() -> Self {
        Self::new(SecretString::from(DEV_WEBHOOK_SECRET))
    }
}

impl SandboxProvider {
    pub fn new(webhook_secret: SecretString) -> Self {
        Self {
            webhook_secret,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// What the provider id of a fresh charge looks like.
    fn payment_id() -> String {
        format!("sbx_{}", Uuid::new_v4().simple())
    }

    fn charge_now(&self, request: &ChargeRequest) -> Result<ProviderCharge, ProviderError> {
        let mut ledger = self
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let token = request.token.as_str();
        if let Some(answer) = ledger.answers.get(&request.idempotency_key) {
            return match (token, answer) {
                // Never answers: the payment is settled by webhook only.
                ("tok_no_answer", _) => Err(timed_out()),
                (_, answer) => answer.clone(),
            };
        }
        let answer = Self::decide(token).map(|(outcome, card)| ProviderCharge {
            provider_payment_id: Self::payment_id(),
            outcome,
            card,
        });
        match token {
            // Nothing arrived: nothing to remember.
            "tok_network_error" => answer,
            // Taken, but the answer never reaches the caller.
            "tok_timeout" | "tok_no_answer" => {
                ledger.remember(&request.idempotency_key, answer);
                Err(timed_out())
            }
            _ => {
                ledger.remember(&request.idempotency_key, answer.clone());
                answer
            }
        }
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
            "tok_network_error" => Err(ProviderError::NotSent(
                "simulated connection refused (tok_network_error)".into(),
            )),
            "tok_timeout" => Ok((ChargeOutcome::Captured, card("visa", "4242"))),
            "tok_no_answer" => Ok((ChargeOutcome::Pending, card("visa", "4242"))),
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
    reference: Option<Uuid>,
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
        Box::pin(std::future::ready(self.charge_now(request)))
    }

    fn card_details<'a>(
        &'a self,
        token: &'a CardToken,
        customer: &'a str,
    ) -> BoxFuture<'a, CardDetails> {
        let token = token.as_str();
        let fingerprint = if TEST_TOKENS.contains(&token) {
            fingerprint(&["sandbox", token, customer])
        } else {
            fingerprint(&["sandbox", token])
        };
        let (bin, country) = match token {
            "tok_mastercard" => (Some("555555"), Some("US")),
            "tok_visa" | "tok_success" | "tok_authorize" | "tok_review" | "tok_timeout"
            | "tok_no_answer" => (Some("424242"), Some("US")),
            _ => (None, None),
        };
        Box::pin(std::future::ready(CardDetails {
            fingerprint: Some(fingerprint),
            bin: bin.map(str::to_owned),
            country: country.map(str::to_owned),
        }))
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
            reference: event.reference.map(PaymentId::from_uuid),
            kind,
        }])
    }
}
