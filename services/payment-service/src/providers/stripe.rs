//! Stripe: PaymentIntents and Refunds over the REST API (form-encoded, `Bearer` API key,
//! `Idempotency-Key` on every write), and `Stripe-Signature` webhooks.
//!
//! A charge creates and confirms a PaymentIntent in one call, restricted to cards
//! (`payment_method_types[]=card`) so Stripe never asks for a redirect `return_url`. Its
//! `status` maps to the outcome: `succeeded` → captured, `requires_capture` → authorized,
//! `processing` → pending, `requires_action` (3-D Secure) → requires review. A 402 is a
//! decline whose code is Stripe's `decline_code` when it gives one (`insufficient_funds`), its
//! `code` otherwise (`expired_card`), so codes match the sandbox's; 429, 5xx, connect errors
//! and timeouts are unavailability; any other 4xx is a rejection (our bug or configuration).
//!
//! Webhooks are verified as Stripe documents: `t=<unix>,v1=<hex>[,v1=…][,v0=…]`, each `v1`
//! being HMAC-SHA256 of `"{t}.{raw body}"` under the endpoint's signing secret. Any matching
//! `v1` is accepted (several are sent while a secret is being rolled); `t` must be within the
//! tolerance of now. Handled events: `payment_intent.succeeded`, `.payment_failed`,
//! `.amount_capturable_updated` and `charge.refunded`; others are acknowledged and ignored.
//! `charge.refunded` carries the charge's *cumulative* `amount_refunded`; the refund's own
//! amount is that minus `previous_attributes.amount_refunded`, which Stripe sends with the
//! event (without it, the cumulative amount is all there is, right for a first refund).

use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use futures::future::BoxFuture;
use http::{HeaderMap, StatusCode};
use platform_config::{Env, ExposeSecret, SecretString};
use platform_money::{Currency, Money};
use serde::Deserialize;
use serde_json::Value;

use super::support::{
    self, build_client, exchange, header, hmac_sha256, outside_tolerance, same, status_error,
    to_hex,
};
use super::{
    CardDetails, ChargeOutcome, ChargeRequest, PaymentProvider, ProviderCharge, ProviderError,
    ProviderRefund, RefundOutcome, RefundRequest, WebhookError, WebhookEvent, WebhookKind,
};
use crate::domain::{CardInfo, CardToken, PaymentId};

pub const NAME: &str = "stripe";
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";
/// Stripe's own libraries' default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// How to reach Stripe. `Debug` shows the secrets as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `sk_live_…`/`sk_test_…` (or a restricted `rk_…` key).
    pub api_key: SecretString,
    /// Without a trailing slash; tests point it at a fake server.
    pub base_url: String,
    /// The webhook endpoint's signing secret (`whsec_…`).
    pub webhook_secret: SecretString,
    /// For a whole API call, connecting included.
    pub timeout: Duration,
    /// How old (or how far in the future) a webhook signature may be.
    pub tolerance: Duration,
}

impl StripeConfig {
    /// The production API with the default timeout and tolerance.
    pub fn new(api_key: SecretString, webhook_secret: SecretString) -> Self {
        Self {
            api_key,
            base_url: DEFAULT_BASE_URL.to_owned(),
            webhook_secret,
            timeout: support::DEFAULT_TIMEOUT,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Reads `STRIPE_API_KEY`, `STRIPE_WEBHOOK_SECRET`, `STRIPE_BASE_URL` and
    /// `PROVIDER_TIMEOUT`. `None` when no API key is set (Stripe is not used); a key without a
    /// webhook secret is reported on `env`, since Stripe's answers would never be confirmed.
    pub fn from_env(env: &mut Env) -> Option<Self> {
        let api_key = env.secret("STRIPE_API_KEY")?;
        let webhook_secret = env.secret("STRIPE_WEBHOOK_SECRET");
        if webhook_secret.is_none() {
            env.report(
                "STRIPE_WEBHOOK_SECRET",
                "the webhook signing secret (whsec_…) when STRIPE_API_KEY is set",
            );
        }
        let base_url = support::base_url(env, "STRIPE_BASE_URL", DEFAULT_BASE_URL);
        let timeout = support::timeout(env);
        Some(Self {
            api_key,
            base_url,
            webhook_secret: webhook_secret?,
            timeout,
            tolerance: DEFAULT_TOLERANCE,
        })
    }
}

/// Why a provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Stripe behind [`PaymentProvider`]. One HTTP client (one connection pool) per provider.
#[derive(Debug)]
pub struct StripeProvider {
    config: StripeConfig,
    client: reqwest::Client,
    webhook_key: hmac::Key,
}

impl StripeProvider {
    pub fn new(mut config: StripeConfig) -> Result<Self, SetupError> {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        let client = build_client(config.timeout)?;
        let webhook_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            config.webhook_secret.expose_secret().as_bytes(),
        );
        Ok(Self {
            config,
            client,
            webhook_key,
        })
    }

    fn post(&self, path: &str, idempotency_key: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.config.base_url))
            // `bearer_auth` marks the header sensitive, so it never shows in reqwest's Debug.
            .bearer_auth(self.config.api_key.expose_secret())
            .header("Idempotency-Key", idempotency_key)
    }

    async fn create_payment_intent(
        &self,
        request: &ChargeRequest,
    ) -> Result<ProviderCharge, ProviderError> {
        let amount = request.amount.amount().to_string();
        let currency = request.amount.currency().as_str().to_ascii_lowercase();
        let payment_id = request.payment_id.to_string();
        let form = [
            ("amount", amount.as_str()),
            ("currency", currency.as_str()),
            ("payment_method", request.token.as_str()),
            ("payment_method_types[]", "card"),
            ("confirm", "true"),
            ("capture_method", "automatic"),
            ("description", request.description.as_str()),
            ("metadata[payment_id]", payment_id.as_str()),
            // The card's brand and last digits live on the charge.
            ("expand[]", "latest_charge"),
        ];
        let request = self
            .post("/v1/payment_intents", &request.idempotency_key)
            .form(&form);
        let (status, body) = exchange(request).await?;
        if !status.is_success() {
            return Err(error_from(status, &body));
        }
        // A success we cannot read may still have taken the money: unknown, asked again.
        let intent: Value = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unknown(format!("unreadable PaymentIntent: {e}")))?;
        let id = str_at(&intent, "/id")
            .ok_or_else(|| ProviderError::Unknown("PaymentIntent without an id".into()))?;
        let outcome = match str_at(&intent, "/status").unwrap_or_default() {
            "succeeded" => ChargeOutcome::Captured,
            "requires_capture" => ChargeOutcome::Authorized,
            "processing" => ChargeOutcome::Pending,
            "requires_action" => ChargeOutcome::RequiresReview,
            "requires_payment_method" | "canceled" => {
                return Err(decline_of(intent.get("last_payment_error")));
            }
            other => {
                return Err(ProviderError::Rejected(format!(
                    "PaymentIntent {id} has the unexpected status {other:?}"
                )));
            }
        };
        Ok(ProviderCharge {
            provider_payment_id: id.to_owned(),
            outcome,
            card: card_of(&intent),
        })
    }

    /// The card behind a PaymentMethod (`GET /v1/payment_methods/{id}`): its fingerprint (the
    /// same for every PaymentMethod of one card number) and issuing country. Anything that
    /// goes wrong gives nothing: the fraud rules then key on the token.
    async fn payment_method_card(&self, token: &CardToken) -> CardDetails {
        if !token.as_str().starts_with("pm_") {
            return CardDetails::default();
        }
        let request = self
            .client
            .get(format!(
                "{}/v1/payment_methods/{}",
                self.config.base_url,
                token.as_str()
            ))
            .bearer_auth(self.config.api_key.expose_secret());
        let answer = match exchange(request).await {
            Ok((status, body)) if status.is_success() => {
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)
            }
            Ok((status, _)) => {
                tracing::debug!(status = status.as_u16(), "no card details from Stripe");
                return CardDetails::default();
            }
            Err(error) => {
                tracing::debug!(%error, "no card details from Stripe");
                return CardDetails::default();
            }
        };
        CardDetails {
            fingerprint: str_at(&answer, "/card/fingerprint").map(str::to_owned),
            // Stripe does not show the full BIN to most accounts.
            bin: None,
            country: str_at(&answer, "/card/country").map(str::to_ascii_uppercase),
        }
    }

    async fn create_refund(
        &self,
        request: &RefundRequest,
    ) -> Result<ProviderRefund, ProviderError> {
        let amount = request.amount.amount().to_string();
        let form = [
            ("payment_intent", request.provider_payment_id.as_str()),
            ("amount", amount.as_str()),
            // Stripe's own `reason` only takes a few fixed values.
            ("metadata[reason]", request.reason.as_str()),
        ];
        let request = self
            .post("/v1/refunds", &request.idempotency_key)
            .form(&form);
        let (status, body) = exchange(request).await?;
        if !status.is_success() {
            return Err(error_from(status, &body));
        }
        let refund: Value = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unknown(format!("unreadable Refund: {e}")))?;
        let id = str_at(&refund, "/id")
            .ok_or_else(|| ProviderError::Unknown("Refund without an id".into()))?;
        let outcome = match str_at(&refund, "/status").unwrap_or_default() {
            "succeeded" => RefundOutcome::Succeeded,
            "pending" | "requires_action" => RefundOutcome::Pending,
            _ => {
                return Err(ProviderError::Declined {
                    code: "refund_failed".into(),
                    message: str_at(&refund, "/failure_reason")
                        .unwrap_or("the refund failed")
                        .to_owned(),
                });
            }
        };
        Ok(ProviderRefund {
            provider_refund_id: id.to_owned(),
            outcome,
        })
    }
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Where Stripe puts the card, depending on the API version and what was expanded.
fn card_of(intent: &Value) -> Option<CardInfo> {
    [
        "/latest_charge/payment_method_details/card",
        "/charges/data/0/payment_method_details/card",
        "/payment_method/card",
    ]
    .iter()
    .find_map(|pointer| {
        let card = intent.pointer(pointer)?;
        Some(CardInfo {
            brand: str_at(card, "/brand")?.to_owned(),
            last4: str_at(card, "/last4")?.to_owned(),
        })
    })
}

/// Stripe's error object, as in `{"error": {...}}` and a PaymentIntent's `last_payment_error`.
#[derive(Deserialize, Default)]
struct StripeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

fn decline_of(error: Option<&Value>) -> ProviderError {
    let error = error
        .and_then(|e| StripeError::deserialize(e).ok())
        .unwrap_or_default();
    ProviderError::Declined {
        code: error
            .decline_code
            .or(error.code)
            .unwrap_or_else(|| "card_declined".into()),
        message: error
            .message
            .unwrap_or_else(|| "The card was declined.".into()),
    }
}

fn error_from(status: StatusCode, body: &[u8]) -> ProviderError {
    let envelope = serde_json::from_slice::<Value>(body).ok();
    let error = envelope.as_ref().and_then(|e| e.get("error"));
    if status == StatusCode::PAYMENT_REQUIRED {
        return decline_of(error);
    }
    let detail = error
        .and_then(|e| StripeError::deserialize(e).ok())
        .unwrap_or_default();
    let message = detail.message.unwrap_or_else(|| "no error message".into());
    let what = format!(
        "HTTP {} ({}/{}): {message}",
        status.as_u16(),
        detail.kind.as_deref().unwrap_or("-"),
        detail.code.as_deref().unwrap_or("-"),
    );
    status_error(status, what)
}

/// `t=…,v1=…,v1=…,v0=…` → the timestamp as sent (it is signed as text), its value, and every
/// `v1`.
fn parse_signature_header(raw: &str) -> Option<(&str, i64, Vec<&str>)> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for element in raw.split(',') {
        let (key, value) = element.trim().split_once('=')?;
        match key {
            "t" if timestamp.is_none() => timestamp = Some(value),
            "t" => return None,
            "v1" => signatures.push(value),
            // `v0` is a test-mode scheme and any other is newer than this code: neither is
            // trusted, which is how Stripe's libraries behave too.
            _ => {}
        }
    }
    let timestamp = timestamp?;
    let signed_at = timestamp.parse::<i64>().ok()?;
    (!signatures.is_empty()).then_some((timestamp, signed_at, signatures))
}

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: EventData,
}

#[derive(Deserialize, Default)]
struct EventData {
    #[serde(default)]
    object: Value,
    #[serde(default)]
    previous_attributes: Value,
}

fn malformed(what: &str) -> WebhookError {
    WebhookError::Malformed(what.to_owned())
}

fn refunded_amount(data: &EventData) -> Result<Money, WebhookError> {
    let total = data
        .object
        .get("amount_refunded")
        .and_then(Value::as_i64)
        .ok_or_else(|| malformed("charge.refunded without amount_refunded"))?;
    let before = data
        .previous_attributes
        .get("amount_refunded")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let currency = str_at(&data.object, "/currency")
        .and_then(|c| Currency::parse(c).ok())
        .ok_or_else(|| malformed("charge.refunded without a known currency"))?;
    Money::new(total.saturating_sub(before), currency)
        .map_err(|e| WebhookError::Malformed(format!("refunded amount {e}")))
}

impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<ProviderCharge, ProviderError>> {
        Box::pin(self.create_payment_intent(request))
    }

    fn refund<'a>(
        &'a self,
        request: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<ProviderRefund, ProviderError>> {
        Box::pin(self.create_refund(request))
    }

    fn card_details<'a>(
        &'a self,
        token: &'a CardToken,
        _customer: &'a str,
    ) -> BoxFuture<'a, CardDetails> {
        Box::pin(self.payment_method_card(token))
    }

    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        let raw = header(headers, SIGNATURE_HEADER).ok_or(WebhookError::BadSignature)?;
        let (timestamp, signed_at, signatures) =
            parse_signature_header(raw).ok_or(WebhookError::BadSignature)?;
        let expected =
            to_hex(hmac_sha256(&self.webhook_key, &[timestamp.as_bytes(), b".", body]).as_ref());
        if !signatures
            .iter()
            .any(|given| same(expected.as_bytes(), given.as_bytes()))
        {
            return Err(WebhookError::BadSignature);
        }
        // Only once the signature holds: a forged request is forged whatever its timestamp.
        if outside_tolerance(signed_at, now, self.config.tolerance) {
            return Err(WebhookError::Stale);
        }

        let event: StripeEvent = serde_json::from_slice(body)
            .map_err(|e| WebhookError::Malformed(format!("not a Stripe event: {e}")))?;
        let object = &event.data.object;
        let (provider_payment_id, kind) = match event.kind.as_str() {
            "payment_intent.succeeded" => (str_at(object, "/id"), WebhookKind::Captured),
            "payment_intent.amount_capturable_updated" => {
                (str_at(object, "/id"), WebhookKind::Authorized)
            }
            "payment_intent.payment_failed" => (
                str_at(object, "/id"),
                WebhookKind::Failed {
                    reason: str_at(object, "/last_payment_error/message")
                        .unwrap_or("payment failed")
                        .to_owned(),
                },
            ),
            "charge.refunded" => {
                // A string unless the endpoint expands it.
                let intent = str_at(object, "/payment_intent")
                    .or_else(|| str_at(object, "/payment_intent/id"));
                if intent.is_none() {
                    // A charge made outside PaymentIntents (e.g. from the Dashboard) is not
                    // one of ours; refusing it would only make Stripe retry it for days.
                    return Ok(Vec::new());
                }
                let amount = refunded_amount(&event.data)?;
                (intent, WebhookKind::Refunded { amount })
            }
            _ => return Ok(Vec::new()),
        };
        let provider_payment_id = provider_payment_id
            .ok_or_else(|| malformed("event without its PaymentIntent id"))?
            .to_owned();
        // The PaymentIntent carries our payment id in its metadata (a refunded charge's may not).
        let reference = str_at(object, "/metadata/payment_id")
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .map(PaymentId::from_uuid);
        Ok(vec![WebhookEvent {
            id: event.id,
            provider_payment_id,
            reference,
            kind,
        }])
    }
}
