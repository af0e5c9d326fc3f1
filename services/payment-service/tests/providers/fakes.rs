//! Fake Stripe and Adyen servers: small axum apps on 127.0.0.1:0 that answer per test token
//! and record what the real clients sent, so the clients are tested over real HTTP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Json, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use payment_service::providers::adyen::{AdyenConfig, AdyenProvider};
use payment_service::providers::stripe::{self, StripeConfig, StripeProvider};
use platform_config::SecretString;
use serde_json::{Value, json};

use crate::{ADYEN_HMAC_HEX, ADYEN_KEY, ADYEN_MERCHANT, STRIPE_KEY, STRIPE_WHSEC};

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    headers: HeaderMap,
    form: Vec<(String, String)>,
    pub(crate) json: Value,
}

impl Seen {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
pub(crate) struct Fake {
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
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub(crate) fn captures(&self) -> usize {
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
pub(crate) async fn closed_port_url() -> String {
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

pub(crate) async fn fake_stripe() -> (Fake, String) {
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

pub(crate) fn stripe_config(base_url: &str) -> StripeConfig {
    StripeConfig {
        api_key: SecretString::from(STRIPE_KEY),
        base_url: base_url.into(),
        webhook_secret: SecretString::from(STRIPE_WHSEC),
        timeout: Duration::from_millis(200),
        tolerance: stripe::DEFAULT_TOLERANCE,
    }
}

pub(crate) fn stripe_at(base_url: &str) -> StripeProvider {
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

pub(crate) async fn fake_adyen() -> (Fake, String) {
    let fake = Fake::default();
    let router = Router::new()
        .route("/v71/payments", post(adyen_payments))
        .route("/v71/payments/{psp}/refunds", post(adyen_refunds))
        .with_state(fake.clone());
    (fake, serve(router).await)
}

pub(crate) fn adyen_config(base_url: &str) -> AdyenConfig {
    AdyenConfig {
        api_key: SecretString::from(ADYEN_KEY),
        base_url: base_url.into(),
        merchant_account: ADYEN_MERCHANT.into(),
        hmac_key: SecretString::from(ADYEN_HMAC_HEX),
        timeout: Duration::from_millis(200),
    }
}

pub(crate) fn adyen_at(base_url: &str) -> AdyenProvider {
    AdyenProvider::new(adyen_config(base_url)).unwrap()
}
