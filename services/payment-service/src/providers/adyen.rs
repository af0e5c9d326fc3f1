//! Adyen: the Checkout API (`/v71/payments`, `/v71/payments/{pspReference}/refunds`; JSON,
//! `X-API-Key`, `Idempotency-Key`) and HMAC-signed standard notifications.
//!
//! A charge pays with the stored card the token names (`storedPaymentMethodId`, card on
//! file). The merchant account is assumed to capture automatically, so `Authorised` means the
//! money is taken. `resultCode` maps to the outcome: `Authorised` → captured, `Refused` →
//! declined (code: Adyen's numeric `refusalReasonCode`, e.g. `"2"`), `Pending`/`Received` →
//! pending, `IdentifyShopper`/`ChallengeShopper`/`RedirectShopper` → requires review, `Error`
//! → rejected. A connect error or a 429 is "not sent"; a timeout, a 5xx or an unreadable
//! answer is an unknown outcome (asked again under the same `Idempotency-Key`, which Adyen
//! answers with the first request's result); any other 4xx is a rejection. Refunds are always pending: Adyen confirms them with a `REFUND` notification.
//!
//! Notifications carry no event id and no timestamp. Each item is signed on its own:
//! base64(HMAC-SHA256(hex-decoded HMAC key, the item's `pspReference`, `originalReference`,
//! `merchantAccountCode`, `merchantReference`, `amount.value`, `amount.currency`,
//! `eventCode` and `success` joined by `:`, with `\` and `:` in values escaped as `\\` and
//! `\:`)). One bad item refuses the whole request: Adyen then retries it, and a forged item
//! never rides along with genuine ones. Since nothing dates a notification, a replayed one is
//! stopped only by the service applying each event id (`{pspReference}:{eventCode}:{success}`)
//! once. Handled: `AUTHORISATION` (captured, or failed when `success` is `false`) and
//! successful `REFUND`s; other event codes, and items for other merchant accounts (a
//! company-level webhook sends them all), are acknowledged and ignored.

use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, StatusCode};
use platform_config::{Env, ExposeSecret, SecretString};
use platform_money::{Currency, Money};
use serde::Deserialize;
use serde_json::{Value, json};

use super::support::{self, build_client, exchange, from_hex, hmac_sha256, same, status_error};
use super::{
    ChargeOutcome, ChargeRequest, PaymentProvider, ProviderCharge, ProviderError, ProviderRefund,
    RefundOutcome, RefundRequest, WebhookError, WebhookEvent, WebhookKind,
};
use crate::domain::{CardInfo, PaymentId};

pub const NAME: &str = "adyen";
/// Adyen's test environment. Live endpoints carry a per-merchant prefix
/// (`https://{prefix}-checkout-live.adyenpayments.com/checkout`) and must be configured.
pub const TEST_BASE_URL: &str = "https://checkout-test.adyen.com";

/// How to reach Adyen. `Debug` shows the secrets as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct AdyenConfig {
    pub api_key: SecretString,
    /// Without a trailing slash, and without the API version (`/v71` is appended).
    pub base_url: String,
    pub merchant_account: String,
    /// The notification HMAC key, hex-encoded as the Customer Area shows it.
    pub hmac_key: SecretString,
    /// For a whole API call, connecting included.
    pub timeout: Duration,
}

impl AdyenConfig {
    /// Reads `ADYEN_API_KEY`, `ADYEN_MERCHANT_ACCOUNT`, `ADYEN_HMAC_KEY`, `ADYEN_BASE_URL`
    /// (default: [`TEST_BASE_URL`]) and `PROVIDER_TIMEOUT`. `None` when no API key is set
    /// (Adyen is not used); a key without its companions is reported on `env`.
    pub fn from_env(env: &mut Env) -> Option<Self> {
        let api_key = env.secret("ADYEN_API_KEY")?;
        let merchant_account = env.optional::<String>("ADYEN_MERCHANT_ACCOUNT");
        if merchant_account.is_none() {
            env.report(
                "ADYEN_MERCHANT_ACCOUNT",
                "the merchant account code when ADYEN_API_KEY is set",
            );
        }
        let hmac_key = env.secret("ADYEN_HMAC_KEY");
        match &hmac_key {
            None => env.report(
                "ADYEN_HMAC_KEY",
                "the notification HMAC key (hex) when ADYEN_API_KEY is set",
            ),
            Some(key) if from_hex(key.expose_secret()).is_none() => {
                env.report("ADYEN_HMAC_KEY", "a hex-encoded HMAC key");
            }
            Some(_) => {}
        }
        let base_url = support::base_url(env, "ADYEN_BASE_URL", TEST_BASE_URL);
        let timeout = support::timeout(env);
        let hmac_key = hmac_key.filter(|key| from_hex(key.expose_secret()).is_some());
        Some(Self {
            api_key,
            base_url,
            merchant_account: merchant_account?,
            hmac_key: hmac_key?,
            timeout,
        })
    }
}

/// Why the provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("the HMAC key must be hex-encoded, as Adyen shows it")]
    HmacKey,
    #[error("the API key is not a valid HTTP header value")]
    ApiKey,
}

/// Adyen behind [`PaymentProvider`]. One HTTP client (one connection pool) per provider.
#[derive(Debug)]
pub struct AdyenProvider {
    config: AdyenConfig,
    client: reqwest::Client,
    api_key: HeaderValue,
    hmac_key: hmac::Key,
}

impl AdyenProvider {
    pub fn new(mut config: AdyenConfig) -> Result<Self, SetupError> {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        let key = from_hex(config.hmac_key.expose_secret()).ok_or(SetupError::HmacKey)?;
        let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &key);
        let mut api_key = HeaderValue::from_str(config.api_key.expose_secret())
            .map_err(|_| SetupError::ApiKey)?;
        // Keeps the key out of any Debug output of the request (and of this provider).
        api_key.set_sensitive(true);
        let client = build_client(config.timeout)?;
        Ok(Self {
            config,
            client,
            api_key,
            hmac_key,
        })
    }

    async fn post(
        &self,
        path: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> Result<Value, ProviderError> {
        let request = self
            .client
            .post(format!("{}/v71{path}", self.config.base_url))
            .header("X-API-Key", self.api_key.clone())
            .header("Idempotency-Key", idempotency_key)
            .json(body);
        let (status, body) = exchange(request).await?;
        if !status.is_success() {
            return Err(error_from(status, &body));
        }
        // The call may have taken effect: an answer we cannot read leaves it unknown.
        serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unknown(format!("unreadable Adyen answer: {e}")))
    }

    async fn make_payment(&self, request: &ChargeRequest) -> Result<ProviderCharge, ProviderError> {
        let body = json!({
            "amount": {
                "value": request.amount.amount(),
                "currency": request.amount.currency().as_str(),
            },
            "reference": request.payment_id.to_string(),
            "paymentMethod": {
                "type": "scheme",
                "storedPaymentMethodId": request.token.as_str(),
            },
            "merchantAccount": self.config.merchant_account,
            "shopperReference": request.customer,
            "shopperInteraction": "ContAuth",
            "recurringProcessingModel": "CardOnFile",
        });
        let answer = self
            .post("/payments", &request.idempotency_key, &body)
            .await?;
        let result_code = str_at(&answer, "/resultCode").unwrap_or_default();
        let outcome = match result_code {
            "Authorised" => ChargeOutcome::Captured,
            "Pending" | "Received" => ChargeOutcome::Pending,
            "IdentifyShopper" | "ChallengeShopper" | "RedirectShopper" => {
                ChargeOutcome::RequiresReview
            }
            "Refused" | "Cancelled" => {
                return Err(ProviderError::Declined {
                    code: refusal_code(&answer).unwrap_or_else(|| result_code.to_lowercase()),
                    message: str_at(&answer, "/refusalReason")
                        .unwrap_or(result_code)
                        .to_owned(),
                });
            }
            other => {
                return Err(ProviderError::Rejected(format!(
                    "resultCode {other:?}: {}",
                    str_at(&answer, "/refusalReason").unwrap_or("no reason given")
                )));
            }
        };
        let provider_payment_id = str_at(&answer, "/pspReference")
            .ok_or_else(|| ProviderError::Unknown("payment without a pspReference".into()))?
            .to_owned();
        let card = str_at(&answer, "/additionalData/cardSummary").map(|last4| CardInfo {
            brand: str_at(&answer, "/paymentMethod/brand")
                .unwrap_or("unknown")
                .to_owned(),
            last4: last4.to_owned(),
        });
        Ok(ProviderCharge {
            provider_payment_id,
            outcome,
            card,
        })
    }

    async fn make_refund(&self, request: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        let psp_reference = &request.provider_payment_id;
        // It becomes part of the URL path.
        if psp_reference.is_empty() || !psp_reference.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ProviderError::Rejected(format!(
                "{psp_reference:?} is not an Adyen pspReference"
            )));
        }
        let body = json!({
            "amount": {
                "value": request.amount.amount(),
                "currency": request.amount.currency().as_str(),
            },
            "merchantAccount": self.config.merchant_account,
            "reference": request.idempotency_key,
        });
        let answer = self
            .post(
                &format!("/payments/{psp_reference}/refunds"),
                &request.idempotency_key,
                &body,
            )
            .await?;
        if str_at(&answer, "/status") != Some("received") {
            return Err(ProviderError::Rejected(format!(
                "refund answered with status {:?}",
                str_at(&answer, "/status")
            )));
        }
        let provider_refund_id = str_at(&answer, "/pspReference")
            .ok_or_else(|| ProviderError::Rejected("refund without a pspReference".into()))?
            .to_owned();
        Ok(ProviderRefund {
            provider_refund_id,
            outcome: RefundOutcome::Pending,
        })
    }

    /// Checks one notification item's signature.
    fn verify_item(&self, item: &NotificationItem) -> bool {
        let Some(given) = item
            .additional_data
            .get("hmacSignature")
            .and_then(Value::as_str)
            .and_then(|signature| BASE64.decode(signature.trim()).ok())
        else {
            return false;
        };
        let value = item.amount.value.to_string();
        let fields = [
            item.psp_reference.as_str(),
            item.original_reference.as_deref().unwrap_or_default(),
            item.merchant_account_code.as_str(),
            item.merchant_reference.as_str(),
            value.as_str(),
            item.amount.currency.as_str(),
            item.event_code.as_str(),
            item.success.as_str(),
        ]
        .map(escape)
        .join(":");
        let expected = hmac_sha256(&self.hmac_key, &[fields.as_bytes()]);
        same(expected.as_ref(), &given)
    }
}

/// Adyen's signing escapes its separator and its escape character.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// A string in the API reference, but accepted as a number too.
fn refusal_code(answer: &Value) -> Option<String> {
    match answer.get("refusalReasonCode")? {
        Value::String(code) if !code.is_empty() => Some(code.clone()),
        Value::Number(code) => Some(code.to_string()),
        _ => None,
    }
}

fn error_from(status: StatusCode, body: &[u8]) -> ProviderError {
    let answer = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let what = format!(
        "HTTP {} ({}/{}): {}",
        status.as_u16(),
        str_at(&answer, "/errorType").unwrap_or("-"),
        str_at(&answer, "/errorCode").unwrap_or("-"),
        str_at(&answer, "/message").unwrap_or("no error message"),
    );
    status_error(status, what)
}

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "notificationItems")]
    items: Vec<NotificationWrapper>,
}

#[derive(Deserialize)]
struct NotificationWrapper {
    #[serde(rename = "NotificationRequestItem")]
    item: NotificationItem,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationItem {
    psp_reference: String,
    original_reference: Option<String>,
    merchant_account_code: String,
    #[serde(default)]
    merchant_reference: String,
    amount: ItemAmount,
    event_code: String,
    success: String,
    reason: Option<String>,
    #[serde(default)]
    additional_data: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct ItemAmount {
    value: i64,
    currency: String,
}

impl NotificationItem {
    fn event(self, merchant_account: &str) -> Result<Option<WebhookEvent>, WebhookError> {
        if self.merchant_account_code != merchant_account {
            tracing::debug!(
                merchant_account = %self.merchant_account_code,
                "ignoring an Adyen notification for another merchant account"
            );
            return Ok(None);
        }
        let id = format!(
            "{}:{}:{}",
            self.psp_reference, self.event_code, self.success
        );
        let success = self.success == "true";
        // A payment's `merchantReference` is our payment id (a refund's is its own key).
        let reference = (self.event_code == "AUTHORISATION")
            .then(|| uuid::Uuid::parse_str(&self.merchant_reference).ok())
            .flatten()
            .map(PaymentId::from_uuid);
        let (provider_payment_id, kind) = match (self.event_code.as_str(), success) {
            ("AUTHORISATION", true) => (self.psp_reference, WebhookKind::Captured),
            ("AUTHORISATION", false) => (
                self.psp_reference,
                WebhookKind::Failed {
                    reason: self
                        .reason
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "refused".into()),
                },
            ),
            ("REFUND", true) => {
                let currency = Currency::parse(&self.amount.currency).map_err(|_| {
                    WebhookError::Malformed(format!("unknown currency {:?}", self.amount.currency))
                })?;
                let amount = Money::new(self.amount.value, currency)
                    .map_err(|e| WebhookError::Malformed(format!("refund amount {e}")))?;
                let original = self
                    .original_reference
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| {
                        WebhookError::Malformed("REFUND without an originalReference".into())
                    })?;
                (original, WebhookKind::Refunded { amount })
            }
            _ => return Ok(None),
        };
        Ok(Some(WebhookEvent {
            id,
            provider_payment_id,
            reference,
            kind,
        }))
    }
}

impl PaymentProvider for AdyenProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<ProviderCharge, ProviderError>> {
        Box::pin(self.make_payment(request))
    }

    fn refund<'a>(
        &'a self,
        request: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<ProviderRefund, ProviderError>> {
        Box::pin(self.make_refund(request))
    }

    fn verify_webhook(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        _now: SystemTime,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        // The signatures are inside the items: a body we cannot read cannot be authenticated.
        let notification: Notification =
            serde_json::from_slice(body).map_err(|_| WebhookError::BadSignature)?;
        if notification.items.is_empty()
            || !notification
                .items
                .iter()
                .all(|wrapper| self.verify_item(&wrapper.item))
        {
            return Err(WebhookError::BadSignature);
        }
        let mut events = Vec::new();
        for wrapper in notification.items {
            events.extend(wrapper.item.event(&self.config.merchant_account)?);
        }
        Ok(events)
    }
}
