//! Token settings read from the environment, and the random secrets they fall back to: kept
//! apart from the signing code so the production rules on secrets and lifetimes live in one
//! place.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use platform_config::{Env, Environment, ExposeSecret, SecretString};

/// The minimum length of `JWT_SECRET` in production: 256 bits, the HS256 key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest `JWT_EXPIRATION` production accepts: revocation entries live as long as the
/// longest token, and a stolen token should not outlive an hour.
pub const MAX_PRODUCTION_EXPIRATION: Duration = Duration::from_secs(3600);

/// Token settings.
#[derive(Clone)]
pub struct JwtConfig {
    /// `JWT_SECRET`: the HS256 key.
    pub secret: SecretString,
    /// `JWT_EXPIRATION`: access-token lifetime.
    pub expiration: Duration,
    /// `JWT_ISSUER`: the `iss` claim written and required.
    pub issuer: String,
    /// `JWT_AUDIENCE`: the `aud` claim written and required.
    pub audience: String,
    /// Whether the secret was generated at start-up (development only).
    pub generated: bool,
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("secret", &"[redacted]")
            .field("expiration", &self.expiration)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("generated", &self.generated)
            .finish()
    }
}

/// The `iss` of access tokens when `JWT_ISSUER` is unset.
pub const DEFAULT_ISSUER: &str = "microservices-platform";
/// The `aud` of access tokens when `JWT_AUDIENCE` is unset.
pub const DEFAULT_AUDIENCE: &str = "microservices-platform";

impl JwtConfig {
    /// Reads the settings. In production a missing or short `JWT_SECRET` is a start-up error;
    /// elsewhere a random one is generated (tokens then die with the process) and the caller
    /// should warn (see [`JwtConfig::generated`]).
    pub fn from_env(env: &mut Env, environment: Environment) -> Self {
        let secret = env.secret("JWT_SECRET");
        let too_short = secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < MIN_SECRET_BYTES);
        if environment.is_production() && (secret.is_none() || too_short) {
            env.report(
                "JWT_SECRET",
                format!("a secret of at least {MIN_SECRET_BYTES} bytes (required in production)"),
            );
        } else if too_short {
            env.report(
                "JWT_SECRET",
                format!("a secret of at least {MIN_SECRET_BYTES} bytes"),
            );
        }
        let expiration = env.or("JWT_EXPIRATION", Duration::from_secs(15 * 60));
        if expiration.is_zero() {
            env.report("JWT_EXPIRATION", "a positive duration such as 15m");
        } else if environment.is_production() && expiration > MAX_PRODUCTION_EXPIRATION {
            env.report(
                "JWT_EXPIRATION",
                "at most 1h in production (revocations and stolen tokens live as long)",
            );
        }
        let (secret, generated) = match secret {
            Some(secret) => (secret, false),
            None => (random_secret(), true),
        };
        Self {
            secret,
            expiration,
            issuer: env.or("JWT_ISSUER", DEFAULT_ISSUER.to_owned()),
            audience: env.or("JWT_AUDIENCE", DEFAULT_AUDIENCE.to_owned()),
            generated,
        }
    }

    /// Settings with a known secret (tests, `platform up` sharing one generated secret).
    pub fn with_secret(secret: impl Into<String>) -> Self {
        Self {
            secret: SecretString::from(secret.into()),
            expiration: Duration::from_secs(15 * 60),
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            generated: false,
        }
    }
}

/// 32 random bytes from the system's CSPRNG, base64url-encoded.
pub fn random_secret() -> SecretString {
    SecretString::from(random_token(32))
}

/// `bytes` random bytes, base64url without padding: for secrets and opaque tokens.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // aws-lc's RNG only fails if the OS has no entropy source at all; a zeroed buffer would be
    // a silent disaster, so treat that as fatal.
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        tracing::error!("the system random number generator failed");
        std::process::abort();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_requires_a_long_secret() {
        let mut env = Env::from_pairs([("JWT_SECRET", "short")]);
        let _ = JwtConfig::from_env(&mut env, Environment::Production);
        assert_eq!(env.issues()[0].variable, "JWT_SECRET");

        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let _ = JwtConfig::from_env(&mut env, Environment::Production);
        assert_eq!(env.issues()[0].variable, "JWT_SECRET");

        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = JwtConfig::from_env(&mut env, Environment::Development);
        assert!(env.issues().is_empty());
        assert!(config.generated);
        assert!(config.secret.expose_secret().len() >= MIN_SECRET_BYTES);
    }

    #[test]
    fn production_caps_the_token_lifetime_at_an_hour() {
        let secret = "0123456789abcdef0123456789abcdef";
        let mut env = Env::from_pairs([("JWT_SECRET", secret), ("JWT_EXPIRATION", "2h")]);
        let _ = JwtConfig::from_env(&mut env, Environment::Production);
        assert_eq!(env.issues()[0].variable, "JWT_EXPIRATION");

        let mut env = Env::from_pairs([("JWT_SECRET", secret), ("JWT_EXPIRATION", "1h")]);
        let _ = JwtConfig::from_env(&mut env, Environment::Production);
        assert!(env.issues().is_empty(), "{:?}", env.issues());

        let mut env = Env::from_pairs([("JWT_SECRET", secret), ("JWT_EXPIRATION", "2h")]);
        let _ = JwtConfig::from_env(&mut env, Environment::Development);
        assert!(
            env.issues().is_empty(),
            "longer lifetimes are fine in development"
        );
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(32), random_token(32));
        assert_eq!(random_token(32).len(), 43);
    }
}
