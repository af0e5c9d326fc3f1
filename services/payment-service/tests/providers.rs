//! The payment providers against fake Stripe and Adyen servers (small axum apps on
//! 127.0.0.1:0) that record what the real client sent, the webhook signature schemes (signed
//! here with an independent implementation), the sandbox's token table, the environment
//! readers, and the failover between providers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use axum::Router;
use axum::extract::{Form, Json, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::future::BoxFuture;
use payment_service::domain::{CardInfo, CardToken, PaymentId};
use payment_service::providers::adyen::{self, AdyenConfig, AdyenProvider};
use payment_service::providers::sandbox::{self, SandboxProvider};
use payment_service::providers::stripe::{self, StripeConfig, StripeProvider};
use payment_service::providers::{
    ChargeOutcome, ChargeRequest, PaymentProvider, ProviderCharge, ProviderError, ProviderRefund,
    Providers, RefundOutcome, RefundRequest, WebhookError, WebhookEvent, WebhookKind,
};
use platform_config::{Env, SecretString};
use platform_money::{Currency, Money};
use serde_json::{Value, json};

const STRIPE_KEY: &str = "sk_test_fake_api_key_0123456789";
const STRIPE_WHSEC: &str = "whsec_test_fake_signing_secret";
const ADYEN_KEY: &str = "AQE_fake_adyen_api_key_0123456789";
const ADYEN_MERCHANT: &str = "ShopECOM";
/// 32 bytes, hex-encoded as Adyen's Customer Area shows it.
const ADYEN_HMAC_HEX: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
/// An arbitrary fixed "now" for webhook checks.
const NOW_SECS: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::EUR).unwrap()
}

fn charge_request(token: &str) -> ChargeRequest {
    ChargeRequest {
        payment_id: PaymentId::generate(),
        amount: eur(1999),
        token: CardToken::parse(token).unwrap(),
        customer: "user-7".into(),
        idempotency_key: format!("idem-{token}"),
        description: "Order 42".into(),
    }
}

fn refund_request(provider_payment_id: &str) -> RefundRequest {
    RefundRequest {
        provider_payment_id: provider_payment_id.into(),
        amount: eur(500),
        idempotency_key: "refund-idem-1".into(),
        reason: "customer changed their mind: returned".into(),
    }
}

fn card(brand: &str, last4: &str) -> Option<CardInfo> {
    Some(CardInfo {
        brand: brand.into(),
        last4: last4.into(),
    })
}

fn declined(code: &str) -> impl Fn(&ProviderError) -> bool + '_ {
    move |error| matches!(error, ProviderError::Declined { code: c, .. } if c == code)
}

/// Nothing reached the provider: another may be tried.
fn is_not_sent(result: &Result<ProviderCharge, ProviderError>) -> bool {
    matches!(result, Err(ProviderError::NotSent(_)))
}

/// The provider may have acted: only it may be asked again.
fn is_unknown(result: &Result<ProviderCharge, ProviderError>) -> bool {
    matches!(result, Err(ProviderError::Unknown(_)))
}

/// The failover's answer as a plain result: which provider answered, or the last error.
async fn charge_via(
    providers: &Providers,
    request: &ChargeRequest,
) -> Result<(&'static str, ProviderCharge), ProviderError> {
    let (name, result) = providers.charge(request).await;
    result.map(|charge| (name.unwrap(), charge))
}

// ---------------------------------------------------------------------------------------------
// Independent signing (not the code under test).

fn hmac_bytes(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn headers(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_str(value).unwrap());
    headers
}

fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    hex(&hmac_bytes(secret.as_bytes(), &signed))
}

fn adyen_hmac_key() -> Vec<u8> {
    (0..ADYEN_HMAC_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&ADYEN_HMAC_HEX[i..i + 2], 16).unwrap())
        .collect()
}

/// An Adyen notification item; `escape` off builds a wrong signature for values with `:`.
#[derive(Clone)]
struct Item {
    psp: &'static str,
    original: &'static str,
    merchant: &'static str,
    reference: &'static str,
    value: i64,
    currency: &'static str,
    event: &'static str,
    success: &'static str,
    reason: &'static str,
}

impl Item {
    fn new(psp: &'static str, event: &'static str, success: &'static str) -> Self {
        Self {
            psp,
            original: "",
            merchant: ADYEN_MERCHANT,
            reference: "0190b3c4-pay",
            value: 1999,
            currency: "EUR",
            event,
            success,
            reason: "",
        }
    }

    fn signature(&self, key: &[u8], escape: bool) -> String {
        let value = self.value.to_string();
        let fields = [
            self.psp,
            self.original,
            self.merchant,
            self.reference,
            &value,
            self.currency,
            self.event,
            self.success,
        ];
        let joined = fields
            .iter()
            .map(|f| {
                if escape {
                    f.replace('\\', "\\\\").replace(':', "\\:")
                } else {
                    (*f).to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(":");
        BASE64.encode(hmac_bytes(key, joined.as_bytes()))
    }

    fn json_signed_with(&self, signature: &str) -> Value {
        let mut item = json!({
            "pspReference": self.psp,
            "merchantAccountCode": self.merchant,
            "merchantReference": self.reference,
            "amount": {"value": self.value, "currency": self.currency},
            "eventCode": self.event,
            "success": self.success,
            "eventDate": "2024-01-01T10:00:00+01:00",
            "paymentMethod": "visa",
            "additionalData": {"hmacSignature": signature},
        });
        if !self.original.is_empty() {
            item["originalReference"] = json!(self.original);
        }
        if !self.reason.is_empty() {
            item["reason"] = json!(self.reason);
        }
        json!({"NotificationRequestItem": item})
    }

    fn json(&self) -> Value {
        self.json_signed_with(&self.signature(&adyen_hmac_key(), true))
    }
}

fn notification(items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"live": "false", "notificationItems": items})).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Fake servers.

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    form: Vec<(String, String)>,
    json: Value,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Idempotency keys under which a charge was made, as Stripe remembers them.
    charged: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn record(&self, path: String, headers: HeaderMap, form: Vec<(String, String)>, json: Value) {
        self.seen.lock().unwrap().push(Seen {
            path,
            headers,
            form,
            json,
        });
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn captures(&self) -> usize {
        self.charged.lock().unwrap().len()
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// A port nothing listens on: bound, then released.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

type Reply = (StatusCode, Json<Value>);

async fn stripe_payment_intents(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Reply {
    let method = form
        .iter()
        .find(|(k, _)| k == "payment_method")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    fake.record("/v1/payment_intents".into(), headers, form, Value::Null);
    let intent = |status: &str, extra: Value| {
        let mut body = json!({
            "id": "pi_3Pfake", "object": "payment_intent", "amount": 1999, "currency": "eur",
            "status": status, "capture_method": "automatic",
        });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        (StatusCode::OK, Json(body))
    };
    let error = |status: StatusCode, error: Value| (status, Json(json!({ "error": error })));
    match method.as_str() {
        "pm_card_visa" => intent(
            "succeeded",
            json!({"latest_charge": {"id": "ch_1", "object": "charge",
                "payment_method_details": {"type": "card",
                    "card": {"brand": "visa", "last4": "4242", "exp_year": 2030}}}}),
        ),
        // An older API version: charges listed on the intent.
        "pm_card_authorize" => intent(
            "requires_capture",
            json!({"latest_charge": "ch_2", "charges": {"object": "list", "data": [
                {"payment_method_details": {"card": {"brand": "mastercard", "last4": "4444"}}}]}}),
        ),
        "pm_card_processing" => intent("processing", json!({"latest_charge": null})),
        "pm_card_3ds" => intent(
            "requires_action",
            json!({"next_action": {"type": "use_stripe_sdk"},
                "payment_method": {"id": "pm_1", "card": {"brand": "amex", "last4": "0005"}}}),
        ),
        "pm_card_funds" => error(
            StatusCode::PAYMENT_REQUIRED,
            json!({"type": "card_error", "code": "card_declined",
                "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}),
        ),
        "pm_card_expired" => error(
            StatusCode::PAYMENT_REQUIRED,
            json!({"type": "card_error", "code": "expired_card",
                "message": "Your card has expired."}),
        ),
        "pm_server_error" => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"type": "api_error", "message": "Something went wrong on Stripe's end."}),
        ),
        "pm_rate_limited" => error(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"type": "invalid_request_error", "code": "rate_limit",
                "message": "Too many requests."}),
        ),
        "pm_bad_request" => error(
            StatusCode::BAD_REQUEST,
            json!({"type": "invalid_request_error", "code": "resource_missing",
                "message": "No such PaymentMethod: 'pm_bad_request'"}),
        ),
        "pm_slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            intent("succeeded", json!({}))
        }
        // Captures at once, but the first answer under a key comes too late; a repeat of the
        // key gets the same PaymentIntent at once (Stripe's idempotent replay).
        "pm_timeout_once" => {
            let first = {
                let mut charged = fake.charged.lock().unwrap();
                let first = !charged.contains(&key);
                if first {
                    charged.push(key);
                }
                first
            };
            if first {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            intent("succeeded", json!({"id": "pi_timeout_once"}))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            json!({"type": "invalid_request_error", "message": "unknown test method"}),
        ),
    }
}

async fn stripe_refunds(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Reply {
    let intent = form
        .iter()
        .find(|(k, _)| k == "payment_intent")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    fake.record("/v1/refunds".into(), headers, form, Value::Null);
    let status = match intent.as_str() {
        "pi_pending" => "pending",
        "pi_broken" => {
            return (
                StatusCode::BAD_GATEWAY,
                Json(json!({"error": {"type": "api_error", "message": "upstream"}})),
            );
        }
        _ => "succeeded",
    };
    (
        StatusCode::OK,
        Json(json!({"id": "re_3Pfake", "object": "refund", "amount": 500,
            "currency": "eur", "payment_intent": intent, "status": status})),
    )
}

async fn stripe_payment_method(Path(id): Path<String>) -> Reply {
    match id.as_str() {
        "pm_card_visa" => (
            StatusCode::OK,
            Json(json!({"id": id, "object": "payment_method", "type": "card",
                "card": {"brand": "visa", "last4": "4242", "country": "us",
                    "fingerprint": "fp_Visa4242"}})),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}})),
        ),
    }
}

async fn fake_stripe() -> (Fake, String) {
    let fake = Fake::default();
    let router = Router::new()
        .route("/v1/payment_intents", post(stripe_payment_intents))
        .route("/v1/refunds", post(stripe_refunds))
        .route(
            "/v1/payment_methods/{id}",
            axum::routing::get(stripe_payment_method),
        )
        .with_state(fake.clone());
    (fake, serve(router).await)
}

fn stripe_config(base_url: &str) -> StripeConfig {
    StripeConfig {
        api_key: SecretString::from(STRIPE_KEY),
        base_url: base_url.into(),
        webhook_secret: SecretString::from(STRIPE_WHSEC),
        timeout: Duration::from_millis(200),
        tolerance: stripe::DEFAULT_TOLERANCE,
    }
}

fn stripe_at(base_url: &str) -> StripeProvider {
    StripeProvider::new(stripe_config(base_url)).unwrap()
}

async fn adyen_payments(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    let token = body
        .pointer("/paymentMethod/storedPaymentMethodId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    fake.record("/v71/payments".into(), headers, Vec::new(), body.clone());
    let answer = |value: Value| (StatusCode::OK, Json(value));
    let reference = body["reference"].clone();
    match token.as_str() {
        "tok_adyen_ok" => answer(json!({
            "pspReference": "NC6HT9CRT65ZGN82", "resultCode": "Authorised",
            "merchantReference": reference, "amount": body["amount"],
            "additionalData": {"cardSummary": "1111", "expiryDate": "3/2030"},
            "paymentMethod": {"brand": "visa", "type": "scheme"},
        })),
        "tok_adyen_nobrand" => answer(json!({
            "pspReference": "NC6HT9CRT65ZGN83", "resultCode": "Authorised",
            "additionalData": {"cardSummary": "0008"},
        })),
        "tok_adyen_refused" => answer(json!({
            "pspReference": "QJ5H8K2S7LP4QZ91", "resultCode": "Refused",
            "refusalReason": "Not enough balance", "refusalReasonCode": "12",
            "merchantReference": reference,
        })),
        "tok_adyen_refused_bare" => answer(json!({
            "pspReference": "QJ5H8K2S7LP4QZ92", "resultCode": "Refused",
            "refusalReason": "Refused",
        })),
        "tok_adyen_received" => answer(json!({
            "pspReference": "PENDING000000001", "resultCode": "Received",
        })),
        "tok_adyen_challenge" => answer(json!({
            "pspReference": "CHALLENGE0000001", "resultCode": "ChallengeShopper",
            "action": {"type": "threeDS2", "subtype": "challenge"},
        })),
        "tok_adyen_error" => answer(json!({
            "pspReference": "ERROR00000000001", "resultCode": "Error",
            "refusalReason": "Acquirer Error",
        })),
        "tok_adyen_500" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                json!({"status": 500, "errorCode": "905", "message": "Payment details are not supported",
                "errorType": "configuration"}),
            ),
        ),
        "tok_adyen_422" => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"status": 422, "errorCode": "14_012",
                "message": "The provided reference is invalid", "errorType": "validation"})),
        ),
        "tok_adyen_slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            answer(json!({"pspReference": "SLOW000000000001", "resultCode": "Authorised"}))
        }
        _ => (StatusCode::FORBIDDEN, Json(json!({"status": 403}))),
    }
}

async fn adyen_refunds(
    State(fake): State<Fake>,
    Path(psp): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    fake.record(
        format!("/v71/payments/{psp}/refunds"),
        headers,
        Vec::new(),
        body.clone(),
    );
    (
        StatusCode::CREATED,
        Json(json!({
            "merchantAccount": body["merchantAccount"], "paymentPspReference": psp,
            "pspReference": "KHQC5N7G84BLNK43", "reference": body["reference"],
            "status": "received", "amount": body["amount"],
        })),
    )
}

async fn fake_adyen() -> (Fake, String) {
    let fake = Fake::default();
    let router = Router::new()
        .route("/v71/payments", post(adyen_payments))
        .route("/v71/payments/{psp}/refunds", post(adyen_refunds))
        .with_state(fake.clone());
    (fake, serve(router).await)
}

fn adyen_config(base_url: &str) -> AdyenConfig {
    AdyenConfig {
        api_key: SecretString::from(ADYEN_KEY),
        base_url: base_url.into(),
        merchant_account: ADYEN_MERCHANT.into(),
        hmac_key: SecretString::from(ADYEN_HMAC_HEX),
        timeout: Duration::from_millis(200),
    }
}

fn adyen_at(base_url: &str) -> AdyenProvider {
    AdyenProvider::new(adyen_config(base_url)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Sandbox.

#[tokio::test]
async fn sandbox_token_table_is_complete() {
    let provider = SandboxProvider::default();
    assert_eq!(provider.name(), "sandbox");
    let captured = |brand, last4| Ok((ChargeOutcome::Captured, card(brand, last4)));
    /// What a token should give: an outcome and a card, or an error code.
    type Expected = Result<(ChargeOutcome, Option<CardInfo>), &'static str>;
    let table: Vec<(&str, Expected)> = vec![
        ("tok_visa", captured("visa", "4242")),
        ("tok_success", captured("visa", "4242")),
        ("tok_mastercard", captured("mastercard", "4444")),
        (
            "tok_authorize",
            Ok((ChargeOutcome::Authorized, card("visa", "4242"))),
        ),
        (
            "tok_review",
            Ok((ChargeOutcome::RequiresReview, card("visa", "4242"))),
        ),
        ("tok_anything_else", captured("unknown", "0000")),
        ("pm_card_custom", captured("unknown", "0000")),
        ("tok_decline", Err("card_declined")),
        ("tok_insufficient_funds", Err("insufficient_funds")),
        ("tok_expired", Err("expired_card")),
        ("tok_network_error", Err("unavailable")),
        ("tok_timeout", Err("unknown")),
        ("tok_no_answer", Err("unknown")),
    ];
    for (token, expected) in table {
        let result = provider.charge(&charge_request(token)).await;
        match (expected, result) {
            (Ok((outcome, card)), Ok(charge)) => {
                assert_eq!(charge.outcome, outcome, "{token}");
                assert_eq!(charge.card, card, "{token}");
                let id = charge.provider_payment_id;
                let hex = id.strip_prefix("sbx_").unwrap_or_else(|| panic!("{id}"));
                assert_eq!(hex.len(), 32, "{id}");
                assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            }
            (Err("unavailable"), Err(ProviderError::NotSent(_))) => {}
            (Err("unknown"), Err(ProviderError::Unknown(_))) => {}
            (Err(code), Err(error)) => assert!(declined(code)(&error), "{token}: {error:?}"),
            (expected, got) => panic!("{token}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[tokio::test]
async fn sandbox_ids_are_unique_per_key_and_refunds_succeed() {
    let provider = SandboxProvider::default();
    let a = provider.charge(&charge_request("tok_visa")).await.unwrap();
    let mut other = charge_request("tok_visa");
    other.idempotency_key = "idem-another".into();
    let b = provider.charge(&other).await.unwrap();
    assert_ne!(a.provider_payment_id, b.provider_payment_id);
    // A repeated key is answered with the first answer, as a real provider does.
    let again = provider.charge(&charge_request("tok_visa")).await.unwrap();
    assert_eq!(again, a);
    let refund = provider
        .refund(&refund_request(&a.provider_payment_id))
        .await
        .unwrap();
    assert_eq!(refund.outcome, RefundOutcome::Succeeded);
    assert!(refund.provider_refund_id.starts_with("sbxr_"));
}

fn sandbox_body(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn sandbox_headers(secret: &str, body: &[u8]) -> HeaderMap {
    headers(
        sandbox::SIGNATURE_HEADER,
        &hex(&hmac_bytes(secret.as_bytes(), body)),
    )
}

#[test]
fn sandbox_webhooks_map_every_event_type() {
    let secret = "sandbox-test-secret";
    let provider = SandboxProvider::new(SecretString::from(secret));
    let cases = [
        (
            json!({"id": "evt_1", "type": "payment.captured", "payment_id": "sbx_1"}),
            WebhookKind::Captured,
        ),
        (
            json!({"id": "evt_2", "type": "payment.authorized", "payment_id": "sbx_1"}),
            WebhookKind::Authorized,
        ),
        (
            json!({"id": "evt_3", "type": "payment.failed", "payment_id": "sbx_1",
                "reason": "issuer unavailable"}),
            WebhookKind::Failed {
                reason: "issuer unavailable".into(),
            },
        ),
        (
            json!({"id": "evt_4", "type": "payment.refunded", "payment_id": "sbx_1",
                "amount": {"amount": 500, "currency": "EUR"}, "timestamp": NOW_SECS - 299}),
            WebhookKind::Refunded { amount: eur(500) },
        ),
    ];
    for (value, kind) in cases {
        let body = sandbox_body(value.clone());
        let events = provider
            .verify_webhook(&sandbox_headers(secret, &body), &body, now())
            .unwrap();
        assert_eq!(
            events,
            vec![WebhookEvent {
                id: value["id"].as_str().unwrap().into(),
                provider_payment_id: "sbx_1".into(),
                reference: None,
                kind,
            }]
        );
    }
}

#[test]
fn sandbox_webhook_signatures_are_enforced() {
    let provider = SandboxProvider::default();
    let body = sandbox_body(
        json!({"id": "evt_1", "type": "payment.captured", "payment_id": "sbx_1",
            "timestamp": NOW_SECS}),
    );
    let valid = sandbox_headers(sandbox::DEV_WEBHOOK_SECRET, &body);
    assert_eq!(
        provider.verify_webhook(&valid, &body, now()).unwrap().len(),
        1
    );
    // The helper for local tools signs exactly like this.
    assert_eq!(
        provider.sign(&body),
        valid[sandbox::SIGNATURE_HEADER].to_str().unwrap()
    );

    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("sbx_1", "sbx_2")
        .into_bytes();
    assert_eq!(
        provider.verify_webhook(&valid, &tampered, now()),
        Err(WebhookError::BadSignature)
    );
    let wrong_secret = sandbox_headers("another-secret", &body);
    assert_eq!(
        provider.verify_webhook(&wrong_secret, &body, now()),
        Err(WebhookError::BadSignature)
    );
    for (name, value) in [
        (sandbox::SIGNATURE_HEADER, "not-hex"),
        (sandbox::SIGNATURE_HEADER, ""),
        ("Stripe-Signature", "whatever"),
    ] {
        assert_eq!(
            provider.verify_webhook(&headers(name, value), &body, now()),
            Err(WebhookError::BadSignature),
            "{name}: {value}"
        );
    }
    assert_eq!(
        provider.verify_webhook(&HeaderMap::new(), &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn sandbox_webhooks_outside_the_window_are_stale() {
    let provider = SandboxProvider::default();
    for timestamp in [NOW_SECS - 301, NOW_SECS + 301] {
        let body = sandbox_body(json!({"id": "evt_1", "type": "payment.captured",
            "payment_id": "sbx_1", "timestamp": timestamp}));
        let signed = sandbox_headers(sandbox::DEV_WEBHOOK_SECRET, &body);
        assert_eq!(
            provider.verify_webhook(&signed, &body, now()),
            Err(WebhookError::Stale),
            "{timestamp}"
        );
    }
}

#[test]
fn sandbox_unknown_events_are_ignored_and_incomplete_ones_refused() {
    let provider = SandboxProvider::default();
    let check = |value: Value| {
        let body = sandbox_body(value);
        let signed = sandbox_headers(sandbox::DEV_WEBHOOK_SECRET, &body);
        provider.verify_webhook(&signed, &body, now())
    };
    assert_eq!(
        check(json!({"id": "evt_1", "type": "payment.disputed"})),
        Ok(vec![])
    );
    assert!(matches!(
        check(json!({"id": "evt_1", "type": "payment.refunded", "payment_id": "sbx_1"})),
        Err(WebhookError::Malformed(_))
    ));
    assert!(matches!(
        check(json!({"id": "evt_1", "type": "payment.captured"})),
        Err(WebhookError::Malformed(_))
    ));
    assert!(matches!(
        check(json!(["not", "an", "event"])),
        Err(WebhookError::Malformed(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Stripe: the API.

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

// ---------------------------------------------------------------------------------------------
// Stripe: webhooks.

fn stripe_event(kind: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "evt_1Pfake", "object": "event", "type": kind, "api_version": "2024-06-20",
        "data": {"object": object},
    }))
    .unwrap()
}

fn stripe_signed(body: &[u8], t: i64) -> HeaderMap {
    headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={t},v1={}", stripe_signature(STRIPE_WHSEC, t, body)),
    )
}

const T: i64 = NOW_SECS as i64;

#[test]
fn stripe_webhooks_map_payment_intent_events() {
    let provider = stripe_at("http://unused.invalid");
    let cases = [
        (
            "payment_intent.succeeded",
            json!({"id": "pi_1", "object": "payment_intent", "status": "succeeded"}),
            WebhookKind::Captured,
        ),
        (
            "payment_intent.amount_capturable_updated",
            json!({"id": "pi_1", "status": "requires_capture"}),
            WebhookKind::Authorized,
        ),
        (
            "payment_intent.payment_failed",
            json!({"id": "pi_1", "last_payment_error": {"code": "card_declined",
                "message": "Your card was declined."}}),
            WebhookKind::Failed {
                reason: "Your card was declined.".into(),
            },
        ),
    ];
    for (kind_name, object, kind) in cases {
        let body = stripe_event(kind_name, object);
        let events = provider
            .verify_webhook(&stripe_signed(&body, T), &body, now())
            .unwrap();
        assert_eq!(
            events,
            vec![WebhookEvent {
                id: "evt_1Pfake".into(),
                provider_payment_id: "pi_1".into(),
                reference: None,
                kind,
            }],
            "{kind_name}"
        );
    }
}

#[test]
fn stripe_charge_refunded_reports_this_refunds_amount() {
    let provider = stripe_at("http://unused.invalid");
    let check = |data: Value| {
        let body = serde_json::to_vec(&json!({
            "id": "evt_r", "type": "charge.refunded", "data": data,
        }))
        .unwrap();
        provider.verify_webhook(&stripe_signed(&body, T), &body, now())
    };
    let charge = json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_1",
        "amount": 1999, "amount_refunded": 1500, "currency": "eur"});
    // A second partial refund: 1000 before, 1500 now.
    let second =
        check(json!({"object": charge, "previous_attributes": {"amount_refunded": 1000}})).unwrap();
    assert_eq!(
        second,
        vec![WebhookEvent {
            id: "evt_r".into(),
            provider_payment_id: "pi_1".into(),
            reference: None,
            kind: WebhookKind::Refunded { amount: eur(500) },
        }]
    );
    let first = check(json!({"object": charge})).unwrap();
    assert_eq!(first[0].kind, WebhookKind::Refunded { amount: eur(1500) });
    // Not a PaymentIntent charge: not ours.
    let dashboard = json!({"id": "ch_2", "payment_intent": null, "amount_refunded": 100,
        "currency": "eur"});
    assert_eq!(check(json!({"object": dashboard})), Ok(vec![]));
    let no_amount = json!({"id": "ch_3", "payment_intent": "pi_3", "currency": "eur"});
    assert!(matches!(
        check(json!({"object": no_amount})),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn stripe_webhook_signatures_are_enforced() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    assert!(
        provider
            .verify_webhook(&stripe_signed(&body, T), &body, now())
            .is_ok()
    );

    let tampered = stripe_event("payment_intent.succeeded", json!({"id": "pi_2"}));
    assert_eq!(
        provider.verify_webhook(&stripe_signed(&body, T), &tampered, now()),
        Err(WebhookError::BadSignature)
    );
    let wrong_secret = headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={T},v1={}", stripe_signature("whsec_other", T, &body)),
    );
    assert_eq!(
        provider.verify_webhook(&wrong_secret, &body, now()),
        Err(WebhookError::BadSignature)
    );
    // The timestamp is signed: moving it breaks the signature.
    let moved = headers(
        stripe::SIGNATURE_HEADER,
        &format!(
            "t={},v1={}",
            T + 1,
            stripe_signature(STRIPE_WHSEC, T, &body)
        ),
    );
    assert_eq!(
        provider.verify_webhook(&moved, &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn stripe_accepts_any_matching_v1_and_ignores_v0() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    let valid = stripe_signature(STRIPE_WHSEC, T, &body);
    let old_secret = stripe_signature("whsec_rolled_away", T, &body);
    let several = headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={T},v1={old_secret},v1={valid},v0={old_secret}"),
    );
    assert_eq!(
        provider
            .verify_webhook(&several, &body, now())
            .unwrap()
            .len(),
        1
    );
    let none_valid = headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={T},v1={old_secret},v1={}", "0".repeat(64)),
    );
    assert_eq!(
        provider.verify_webhook(&none_valid, &body, now()),
        Err(WebhookError::BadSignature)
    );
    let only_v0 = headers(stripe::SIGNATURE_HEADER, &format!("t={T},v0={valid}"));
    assert_eq!(
        provider.verify_webhook(&only_v0, &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn stripe_malformed_signature_headers_are_refused() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    let valid = stripe_signature(STRIPE_WHSEC, T, &body);
    for header in [
        String::new(),
        "garbage".into(),
        format!("v1={valid}"),
        format!("t={T}"),
        format!("t=soon,v1={valid}"),
        format!("t={T},v1={valid},t={T}"),
        format!("t={T};v1={valid}"),
    ] {
        assert_eq!(
            provider.verify_webhook(&headers(stripe::SIGNATURE_HEADER, &header), &body, now()),
            Err(WebhookError::BadSignature),
            "{header}"
        );
    }
    assert_eq!(
        provider.verify_webhook(&HeaderMap::new(), &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn stripe_stale_signatures_are_refused() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    for t in [T - 301, T + 301] {
        assert_eq!(
            provider.verify_webhook(&stripe_signed(&body, t), &body, now()),
            Err(WebhookError::Stale),
            "{t}"
        );
    }
    assert!(
        provider
            .verify_webhook(&stripe_signed(&body, T - 300), &body, now())
            .is_ok()
    );
    // A forged request is a bad signature, however old.
    let forged = headers(
        stripe::SIGNATURE_HEADER,
        &format!("t={},v1={}", T - 10_000, "ab".repeat(32)),
    );
    assert_eq!(
        provider.verify_webhook(&forged, &body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn stripe_unknown_events_are_acknowledged_and_ignored() {
    let provider = stripe_at("http://unused.invalid");
    let body = stripe_event("customer.created", json!({"id": "cus_1"}));
    assert_eq!(
        provider.verify_webhook(&stripe_signed(&body, T), &body, now()),
        Ok(vec![])
    );
    let not_json = b"definitely not json".to_vec();
    assert!(matches!(
        provider.verify_webhook(&stripe_signed(&not_json, T), &not_json, now()),
        Err(WebhookError::Malformed(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Adyen: the API.

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

// ---------------------------------------------------------------------------------------------
// Adyen: notifications.

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

// ---------------------------------------------------------------------------------------------
// Configuration and secrets.

#[test]
fn secrets_never_show_in_debug_output() {
    let stripe = stripe_at("http://unused.invalid");
    let adyen = adyen_at("http://unused.invalid");
    let sandbox = SandboxProvider::new(SecretString::from("sandbox-secret-value"));
    let printed = format!(
        "{stripe:?} {adyen:?} {sandbox:?} {:?} {:?}",
        stripe_config("x"),
        adyen_config("x")
    );
    for secret in [
        STRIPE_KEY,
        STRIPE_WHSEC,
        ADYEN_KEY,
        ADYEN_HMAC_HEX,
        "sandbox-secret-value",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
}

#[test]
fn adyen_refuses_a_key_that_is_not_hex() {
    let mut config = adyen_config("http://unused.invalid");
    config.hmac_key = SecretString::from("not-hex-at-all");
    assert!(matches!(
        AdyenProvider::new(config),
        Err(adyen::SetupError::HmacKey)
    ));
}

fn issue_names(env: &Env) -> Vec<String> {
    env.issues().iter().map(|i| i.variable.clone()).collect()
}

#[test]
fn stripe_config_from_env() {
    let mut env = Env::from_pairs([("ADYEN_API_KEY", "unrelated")]);
    assert!(StripeConfig::from_env(&mut env).is_none());
    assert!(env.issues().is_empty());

    let mut env = Env::from_pairs([
        ("STRIPE_API_KEY", STRIPE_KEY),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_WHSEC),
        ("STRIPE_BASE_URL", "http://127.0.0.1:12111/"),
        ("PROVIDER_TIMEOUT", "3s"),
    ]);
    let config = StripeConfig::from_env(&mut env).unwrap();
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    assert_eq!(config.base_url, "http://127.0.0.1:12111");
    assert_eq!(config.timeout, Duration::from_secs(3));
    assert_eq!(config.tolerance, Duration::from_secs(300));
    assert!(StripeProvider::new(config).is_ok());

    let mut env = Env::from_pairs([("STRIPE_API_KEY", STRIPE_KEY)]);
    assert!(StripeConfig::from_env(&mut env).is_none());
    assert_eq!(issue_names(&env), ["STRIPE_WEBHOOK_SECRET"]);

    let mut env = Env::from_pairs([
        ("STRIPE_API_KEY", STRIPE_KEY),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_WHSEC),
        ("STRIPE_BASE_URL", "api.stripe.com"),
        ("PROVIDER_TIMEOUT", "0s"),
    ]);
    let config = StripeConfig::from_env(&mut env).unwrap();
    assert_eq!(config.base_url, stripe::DEFAULT_BASE_URL);
    assert_eq!(config.timeout, Duration::from_secs(10));
    assert_eq!(issue_names(&env), ["STRIPE_BASE_URL", "PROVIDER_TIMEOUT"]);
}

#[test]
fn adyen_config_from_env() {
    let mut env = Env::from_pairs([("STRIPE_API_KEY", "unrelated")]);
    assert!(AdyenConfig::from_env(&mut env).is_none());
    assert!(env.issues().is_empty());

    let mut env = Env::from_pairs([
        ("ADYEN_API_KEY", ADYEN_KEY),
        ("ADYEN_MERCHANT_ACCOUNT", ADYEN_MERCHANT),
        ("ADYEN_HMAC_KEY", ADYEN_HMAC_HEX),
    ]);
    let config = AdyenConfig::from_env(&mut env).unwrap();
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    assert_eq!(config.base_url, adyen::TEST_BASE_URL);
    assert_eq!(config.merchant_account, ADYEN_MERCHANT);
    assert_eq!(config.timeout, Duration::from_secs(10));
    assert!(AdyenProvider::new(config).is_ok());

    let mut env = Env::from_pairs([("ADYEN_API_KEY", ADYEN_KEY)]);
    assert!(AdyenConfig::from_env(&mut env).is_none());
    assert_eq!(
        issue_names(&env),
        ["ADYEN_MERCHANT_ACCOUNT", "ADYEN_HMAC_KEY"]
    );

    let mut env = Env::from_pairs([
        ("ADYEN_API_KEY", ADYEN_KEY),
        ("ADYEN_MERCHANT_ACCOUNT", ADYEN_MERCHANT),
        ("ADYEN_HMAC_KEY", "secret-not-hex"),
    ]);
    assert!(AdyenConfig::from_env(&mut env).is_none());
    assert_eq!(issue_names(&env), ["ADYEN_HMAC_KEY"]);
    let message = env.finish().unwrap_err().to_string();
    assert!(!message.contains("secret-not-hex"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Failover.

/// A provider that counts its charges and always captures.
#[derive(Default)]
struct Counting {
    charges: AtomicUsize,
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

fn chain(first: Arc<dyn PaymentProvider>, counting: &Arc<Counting>) -> Providers {
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
