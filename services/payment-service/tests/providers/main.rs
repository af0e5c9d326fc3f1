//! The payment providers against fake Stripe and Adyen servers (small axum apps on
//! 127.0.0.1:0) that record what the real client sent, the webhook signature schemes (signed
//! here with an independent implementation), the sandbox's token table, the environment
//! readers, and the failover between providers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adyen;
mod adyen_notifications;
mod config;
mod failover;
mod fakes;
mod sandbox;
mod signing;
mod stripe;
mod stripe_webhooks;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use payment_service::domain::{CardInfo, CardToken, PaymentId};
use payment_service::providers::{
    ChargeRequest, ProviderCharge, ProviderError, Providers, RefundRequest,
};
use platform_money::{Currency, Money};

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
