//! Configuration and secrets: the environment readers, and secrets kept out of debug output.

use std::time::Duration;

use payment_service::providers::adyen::{self, AdyenConfig, AdyenProvider};
use payment_service::providers::sandbox::SandboxProvider;
use payment_service::providers::stripe::{self, StripeConfig, StripeProvider};
use platform_config::{Env, SecretString};

use crate::fakes::{adyen_at, adyen_config, stripe_at, stripe_config};
use crate::{ADYEN_HMAC_HEX, ADYEN_KEY, ADYEN_MERCHANT, STRIPE_KEY, STRIPE_WHSEC};

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
