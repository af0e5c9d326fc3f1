//! Independent signing (not the code under test): a webhook signed with the clients' own code
//! would verify whatever that code got wrong.

use aws_lc_rs::hmac;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::{ADYEN_HMAC_HEX, ADYEN_MERCHANT};

pub(crate) fn hmac_bytes(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn headers(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_str(value).unwrap());
    headers
}

pub(crate) fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    hex(&hmac_bytes(secret.as_bytes(), &signed))
}

pub(crate) fn adyen_hmac_key() -> Vec<u8> {
    (0..ADYEN_HMAC_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&ADYEN_HMAC_HEX[i..i + 2], 16).unwrap())
        .collect()
}

/// An Adyen notification item; `escape` off builds a wrong signature for values with `:`.
#[derive(Clone)]
pub(crate) struct Item {
    psp: &'static str,
    pub(crate) original: &'static str,
    pub(crate) merchant: &'static str,
    pub(crate) reference: &'static str,
    pub(crate) value: i64,
    currency: &'static str,
    event: &'static str,
    success: &'static str,
    pub(crate) reason: &'static str,
}

impl Item {
    pub(crate) fn new(psp: &'static str, event: &'static str, success: &'static str) -> Self {
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

    pub(crate) fn signature(&self, key: &[u8], escape: bool) -> String {
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

    pub(crate) fn json_signed_with(&self, signature: &str) -> Value {
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

    pub(crate) fn json(&self) -> Value {
        self.json_signed_with(&self.signature(&adyen_hmac_key(), true))
    }
}

pub(crate) fn notification(items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"live": "false", "notificationItems": items})).unwrap()
}
