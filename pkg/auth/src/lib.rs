//! Identity on the platform: who a request comes from and how that is proven.
//!
//! Owns the access-token format (HS256 JWT with `sub`, `role`, `exp`, `iat`, `jti`, `iss`,
//! `aud`; the algorithm pinned so `none` or any other algorithm is refused), [`JwtConfig`]
//! (`JWT_SECRET`, `JWT_EXPIRATION`, `JWT_ISSUER`, `JWT_AUDIENCE`), the [`UserId`] and [`Role`]
//! every service shares, and the [`AuthUser`] extractor that services use to verify a bearer
//! token again behind the gateway (defence in depth).
//!
//! Architecture invariant: this crate verifies and issues tokens; it never sees passwords or
//! refresh tokens (those belong to user-service).
#![forbid(unsafe_code)]

pub mod service_identity;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use platform_config::{Env, Environment, ExposeSecret, SecretString};
use platform_http::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The minimum length of `JWT_SECRET` in production: 256 bits, the HS256 key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// A user's identifier. Every service refers to users by this type, never by a bare UUID.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = uuid::Uuid)]
pub struct UserId(Uuid);

impl UserId {
    /// A new id; v7 so ids sort by creation time, which keeps index inserts local.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn parse(raw: &str) -> Result<Self, uuid::Error> {
        Uuid::parse_str(raw).map(Self)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

pub const DEFAULT_ISSUER: &str = "microservices-platform";
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

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub role: Role,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Why a token was refused. Deliberately coarse towards clients: all of these are a 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// Issues and verifies access tokens. Cheap to clone.
#[derive(Clone)]
pub struct Jwt {
    inner: Arc<JwtInner>,
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
        }
    }

    pub fn config(&self) -> &JwtConfig {
        &self.inner.config
    }

    /// Signs an access token for `user`.
    pub fn issue(&self, user: UserId, role: Role) -> Result<AccessToken, AuthError> {
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

    /// Checks signature, algorithm, `exp`, `iss` and `aud`.
    /// Like [`Jwt::verify`] for the caller's identity, remembering (per thread) the tokens it
    /// has verified: a client sends the same token for its whole lifetime, and checking a
    /// signature and parsing JSON on every request is the costliest step of edge
    /// authentication. A remembered token is still refused once past its `exp`.
    pub fn verify_cached(&self, token: &str) -> Result<AuthUser, AuthError> {
        type Tokens = std::collections::HashMap<Box<str>, (AuthUser, i64)>;
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
        if let Some((user, exp)) = hit
            && now < exp
        {
            return Ok(user);
        }
        let claims = self.verify(token)?;
        let user = AuthUser {
            id: claims.sub,
            role: claims.role,
        };
        VERIFIED.with(|cache| {
            let mut cache = cache.borrow_mut();
            let tokens = cache.entry(instance).or_default();
            if tokens.len() >= CAPACITY {
                tokens.clear();
            }
            tokens.insert(Box::from(token), (user, claims.exp));
        });
        Ok(user)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        Ok(
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)?
                .claims,
        )
    }
}

/// The authenticated caller, from a verified `Authorization: Bearer` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: UserId,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may act on `owner`'s resources: their own, or any if admin.
    pub fn may_access(&self, owner: UserId) -> bool {
        self.is_admin() || self.id == owner
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Jwt: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let jwt = Jwt::from_ref(state);
        let token = bearer_token(parts).ok_or_else(|| {
            Problem::unauthorized("An `Authorization: Bearer <access token>` header is required.")
        })?;
        let claims = jwt.verify(token).map_err(|error| {
            tracing::debug!(%error, "access token refused");
            Problem::unauthorized("The access token is invalid or has expired.")
        })?;
        Ok(AuthUser {
            id: claims.sub,
            role: claims.role,
        })
    }
}

/// An authenticated administrator: 401 without a valid token, 403 for anyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl<S> FromRequestParts<S> for AdminUser
where
    Jwt: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(AdminUser(caller))
        } else {
            Err(Problem::forbidden("This operation is for administrators."))
        }
    }
}

/// Declares the `bearer` security scheme (a JWT access token) that protected operations name
/// in their OpenAPI description: `#[openapi(modifiers(&platform_auth::BearerSecurity))]`.
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn jwt() -> Jwt {
        Jwt::new(JwtConfig::with_secret(SECRET))
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, signature: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            signature
        )
    }

    fn claims(exp_offset: i64, iss: &str, aud: &str) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "sub": UserId::generate(), "role": "admin", "iat": now, "exp": now + exp_offset,
            "jti": "x", "iss": iss, "aud": aud,
        })
    }

    fn sign(alg: Algorithm, claims: &serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
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
    fn random_tokens_differ() {
        assert_ne!(random_token(32), random_token(32));
        assert_eq!(random_token(32).len(), 43);
    }
}
