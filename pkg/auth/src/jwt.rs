//! Minting and verifying access tokens: the signing keys, the pinned validation, the
//! per-thread cache of verified tokens and the revocation check every verification makes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use platform_config::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AuthError, AuthUser, JwtConfig, RevocationError, Revocations, Role, TokenVersion, UserId,
};

/// Revocations outlive the tokens they refuse by this much, for clocks that disagree a little
/// between the issuer and the verifiers.
const REVOCATION_MARGIN: Duration = Duration::from_secs(60);

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user the token speaks for.
    pub sub: UserId,
    /// The user's role at issue.
    pub role: Role,
    /// Expiry, Unix seconds; checked with no leeway.
    pub exp: i64,
    /// Issue time, Unix seconds.
    pub iat: i64,
    /// A random UUID (v4), unique per token.
    pub jti: String,
    /// The issuer (`JWT_ISSUER`); verification requires the configured one.
    pub iss: String,
    /// The audience (`JWT_AUDIENCE`); verification requires the configured one.
    pub aud: String,
    /// The user's token version at issue; tokens from before versions existed have none (0).
    #[serde(default)]
    pub ver: TokenVersion,
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The signed JWT, sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Issues and verifies access tokens. Cheap to clone.
///
/// Carries the revocation store its verifications consult (the process's own unless
/// [`Jwt::with_revocations`] names another), so every extractor holding a `Jwt` checks
/// revocations without any other state.
#[derive(Clone)]
pub struct Jwt {
    inner: Arc<JwtInner>,
    revocations: Revocations,
}

struct JwtInner {
    /// Unique per instance, never reused (unlike an address): keys the verification cache.
    instance: u64,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    config: JwtConfig,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Jwt {
    /// Keys and validation from `config`, checking revocations in the process's own store
    /// ([`Jwt::connect`] shares one through Redis). Verification accepts HS256 only and
    /// requires `exp`, `iat`, `sub`, `iss` and `aud`.
    pub fn new(config: JwtConfig) -> Self {
        let secret = config.secret.expose_secret().as_bytes();
        // Pinned to HS256: a token naming any other algorithm (or `none`) fails validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        // One issuer, and every verifier checks `exp` against its own clock: no grace period.
        validation.leeway = 0;
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            inner: Arc::new(JwtInner {
                instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
                config,
            }),
            revocations: Revocations::in_process(),
        }
    }

    /// A service's verifier: revocations shared through `redis` when set, else the
    /// process's own. Call `jwt.revocations().start(..)` while the service runs to receive
    /// other processes' revocations.
    pub fn connect(
        config: JwtConfig,
        redis: Option<&platform_redis::RedisConfig>,
    ) -> Result<Self, platform_redis::Error> {
        Ok(Self::new(config).with_revocations(Revocations::from_config(redis)?))
    }

    /// The same keys and settings, checking revocations in `revocations` (shared through
    /// Redis when the service has it).
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// The store its verifications consult.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The settings it was built from.
    pub fn config(&self) -> &JwtConfig {
        &self.inner.config
    }

    /// Makes every token of `user` below `below` fail from now on, everywhere, for as long as
    /// such a token could live. See [`Revocations::revoke`] for when it returns.
    pub async fn revoke(&self, user: UserId, below: TokenVersion) -> Result<(), RevocationError> {
        let ttl = self.inner.config.expiration + REVOCATION_MARGIN;
        self.revocations.revoke(user, below, ttl).await
    }

    /// Signs an access token for `user` at token version 0 (tests, tools).
    pub fn issue(&self, user: UserId, role: Role) -> Result<AccessToken, AuthError> {
        self.issue_versioned(user, role, TokenVersion::default())
    }

    /// Signs an access token for `user` carrying `version`, never below the minimum the
    /// revocation store knows for `user` (a token signed below it would be refused at once).
    pub fn issue_versioned(
        &self,
        user: UserId,
        role: Role,
        version: TokenVersion,
    ) -> Result<AccessToken, AuthError> {
        let version = version.max(self.revocations.min_version(user));
        let now = chrono::Utc::now().timestamp();
        let lifetime = self.inner.config.expiration.as_secs();
        let claims = Claims {
            sub: user,
            role,
            iat: now,
            exp: now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
            jti: Uuid::new_v4().to_string(),
            iss: self.inner.config.issuer.clone(),
            aud: self.inner.config.audience.clone(),
            ver: version,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )?;
        Ok(AccessToken {
            token,
            expires_in: lifetime,
        })
    }

    /// Like [`Jwt::verify`] for the caller's identity, remembering (per thread) the tokens it
    /// has verified: a client sends the same token for its whole lifetime, and checking a
    /// signature and parsing JSON on every request is the costliest step of edge
    /// authentication. A remembered token is still refused once past its `exp`, and checked
    /// against revocations every time (the cache cannot know them).
    pub fn verify_cached(&self, token: &str) -> Result<AuthUser, AuthError> {
        type Tokens = std::collections::HashMap<Box<str>, AuthUser>;
        thread_local! {
            /// Per `Jwt` instance (its settings), the tokens it verified.
            static VERIFIED: std::cell::RefCell<std::collections::HashMap<u64, Tokens>> =
                std::cell::RefCell::new(std::collections::HashMap::new());
        }
        /// Remembered tokens per thread; the cache is emptied when full (simple, and bounded).
        const CAPACITY: usize = 4096;
        let instance = self.inner.instance;
        let now = chrono::Utc::now().timestamp();
        let hit = VERIFIED.with(|cache| {
            cache
                .borrow()
                .get(&instance)
                .and_then(|tokens| tokens.get(token).copied())
        });
        let user = match hit {
            Some(user) if now < user.expires_at => user,
            _ => {
                let user = AuthUser::from(self.decode(token)?);
                VERIFIED.with(|cache| {
                    let mut cache = cache.borrow_mut();
                    let tokens = cache.entry(instance).or_default();
                    if tokens.len() >= CAPACITY {
                        tokens.clear();
                    }
                    tokens.insert(Box::from(token), user);
                });
                user
            }
        };
        self.check_revocation(&user)?;
        Ok(user)
    }

    /// Checks signature, algorithm, `exp`, `iss` and `aud`, and that the token is not revoked.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = self.decode(token)?;
        if self.revocations.is_revoked(claims.sub, claims.ver) {
            return Err(AuthError::Revoked(claims.sub));
        }
        Ok(claims)
    }

    /// `Err(Revoked)` when `user`'s token has been revoked since it was verified: long-lived
    /// sessions (event streams) check again when revocations change.
    pub fn check_revocation(&self, user: &AuthUser) -> Result<(), AuthError> {
        if self.revocations.is_revoked(user.id, user.token_version) {
            return Err(AuthError::Revoked(user.id));
        }
        Ok(())
    }

    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        Ok(
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)?
                .claims,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{SECRET, claims, jwt, sign};
    use crate::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn forge(header: serde_json::Value, claims: serde_json::Value, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            signature
        )
    }

    #[test]
    fn issued_tokens_verify_and_carry_every_claim() {
        let jwt = jwt();
        let user = UserId::generate();
        let token = jwt.issue(user, Role::User).unwrap();
        assert_eq!(token.expires_in, 900);
        let claims = jwt.verify(&token.token).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.role, Role::User);
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.iss, DEFAULT_ISSUER);
        assert_eq!(claims.aud, DEFAULT_AUDIENCE);
        assert!(!claims.jti.is_empty());
    }

    #[test]
    fn alg_none_is_refused() {
        let token = forge(
            serde_json::json!({"alg": "none", "typ": "JWT"}),
            claims(600, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
            "",
        );
        assert!(jwt().verify(&token).is_err());
    }

    #[test]
    fn other_algorithms_are_refused_even_with_the_right_key() {
        let token = sign(
            Algorithm::HS512,
            &claims(600, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
            SECRET,
        );
        assert!(jwt().verify(&token).is_err());
    }

    #[test]
    fn cached_verification_still_checks_expiry_and_settings() {
        let jwt = Jwt::new(JwtConfig {
            expiration: Duration::from_secs(1),
            ..JwtConfig::with_secret(SECRET)
        });
        let user = UserId::generate();
        let token = jwt.issue(user, Role::Admin).unwrap().token;
        let first = jwt.verify_cached(&token).unwrap();
        assert_eq!((first.id, first.role), (user, Role::Admin));
        assert_eq!(first.token_version, TokenVersion::new(0));
        assert_eq!(jwt.verify_cached(&token).unwrap(), first, "from the cache");
        // Another instance (another secret) does not trust what the first remembered.
        let other = Jwt::new(JwtConfig::with_secret("another-secret-another-secret-xx"));
        assert!(other.verify_cached(&token).is_err());
        assert!(jwt.verify_cached("garbage").is_err());
        std::thread::sleep(Duration::from_millis(2100));
        assert!(
            jwt.verify_cached(&token).is_err(),
            "expired, even though remembered"
        );
    }

    #[test]
    fn wrong_signature_issuer_audience_or_expiry_is_refused() {
        let jwt = jwt();
        let good = claims(600, DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        assert!(jwt.verify(&sign(Algorithm::HS256, &good, SECRET)).is_ok());
        assert!(
            jwt.verify(&sign(
                Algorithm::HS256,
                &good,
                "another-secret-another-secret-xx"
            ))
            .is_err()
        );
        assert!(
            jwt.verify(&sign(
                Algorithm::HS256,
                &claims(600, "evil", DEFAULT_AUDIENCE),
                SECRET
            ))
            .is_err()
        );
        assert!(
            jwt.verify(&sign(
                Algorithm::HS256,
                &claims(600, DEFAULT_ISSUER, "other"),
                SECRET
            ))
            .is_err()
        );
        assert!(
            jwt.verify(&sign(
                Algorithm::HS256,
                &claims(-5, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
                SECRET
            ))
            .is_err()
        );
    }

    #[tokio::test]
    async fn revoked_tokens_are_refused_even_when_remembered() {
        let jwt = jwt().with_revocations(Revocations::isolated());
        let user = UserId::generate();
        let old = jwt.issue(user, Role::User).unwrap().token;
        assert!(jwt.verify_cached(&old).is_ok(), "remembered now");
        jwt.revoke(user, TokenVersion::new(1)).await.unwrap();
        assert!(matches!(jwt.verify(&old), Err(AuthError::Revoked(id)) if id == user));
        assert!(matches!(
            jwt.verify_cached(&old),
            Err(AuthError::Revoked(_))
        ));
        // A token issued afterwards carries the new minimum, even when asked for less.
        let new = jwt.issue(user, Role::User).unwrap().token;
        assert_eq!(jwt.verify(&new).unwrap().ver, TokenVersion::new(1));
        assert!(jwt.verify_cached(&new).is_ok());
    }

    #[test]
    fn tokens_without_a_version_are_version_zero() {
        let token = sign(
            Algorithm::HS256,
            &claims(600, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
            SECRET,
        );
        assert_eq!(jwt().verify(&token).unwrap().ver, TokenVersion::new(0));
    }
}
