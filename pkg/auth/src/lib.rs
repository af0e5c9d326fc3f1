//! Identity on the platform: who a request comes from and how that is proven.
//!
//! Owns the access-token format (HS256 JWT with `sub`, `role`, `exp`, `iat`, `jti`, `iss`,
//! `aud`; the algorithm pinned so `none` or any other algorithm is refused), [`JwtConfig`]
//! (`JWT_SECRET`, `JWT_EXPIRATION`, `JWT_ISSUER`, `JWT_AUDIENCE`), the [`UserId`] and [`Role`]
//! every service shares, and the [`AuthUser`] extractor that services use to verify a bearer
//! token again behind the gateway (defence in depth). Tokens also carry the user's token
//! version (`ver`, absent = 0); [`revocation`] holds the per-user minimum versions that make
//! tokens fail before their expiry (logout, password change, deletion, role change).
//!
//! Every refusal the extractors make is recorded in the audit trail (`auth.token_rejected`
//! with a reason class, `auth.access_denied`).
//!
//! Architecture invariant: this crate verifies and issues tokens; it never sees passwords or
//! refresh tokens (those belong to user-service).
#![forbid(unsafe_code)]

pub mod revocation;
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
use platform_http::audit::{Action, AuditEvent, Auditor, Outcome};
pub use revocation::{RevocationError, Revocations};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The minimum length of `JWT_SECRET` in production: 256 bits, the HS256 key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest `JWT_EXPIRATION` production accepts: revocation entries live as long as the
/// longest token, and a stolen token should not outlive an hour.
pub const MAX_PRODUCTION_EXPIRATION: Duration = Duration::from_secs(3600);

/// Revocations outlive the tokens they refuse by this much, for clocks that disagree a little
/// between the issuer and the verifiers.
const REVOCATION_MARGIN: Duration = Duration::from_secs(60);

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

/// A user's token version: tokens carry the version current when they were issued, and
/// revoking a user's tokens raises the minimum accepted ([`Revocations`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TokenVersion(u64);

impl TokenVersion {
    pub const fn new(version: u64) -> Self {
        Self(version)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TokenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
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
    /// The user's token version at issue; tokens from before versions existed have none (0).
    #[serde(default)]
    pub ver: TokenVersion,
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Why a token was refused. Deliberately coarse towards clients: all of these are a 401; the
/// audit trail gets the class ([`AuthError::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header is not a bearer token")]
    NotBearer,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// Valid, but issued before its user's tokens were revoked.
    #[error("the token of user {0} was revoked")]
    Revoked(UserId),
}

impl AuthError {
    /// The audit trail's reason class: `missing`, `malformed`, `invalid` (signature, issuer,
    /// audience, algorithm), `expired` or `revoked`.
    pub fn reason(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind;
        match self {
            AuthError::Missing => "missing",
            AuthError::NotBearer => "malformed",
            AuthError::Revoked(_) => "revoked",
            AuthError::Invalid(error) => match error.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::InvalidToken
                | ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_)
                | ErrorKind::MissingRequiredClaim(_) => "malformed",
                _ => "invalid",
            },
        }
    }

    /// What a client is told: the same few words whatever the class, so a refusal reveals
    /// nothing about why (a revoked token looks like an expired one).
    pub fn to_problem(&self) -> Problem {
        match self {
            AuthError::Missing => Problem::unauthorized(
                "An `Authorization: Bearer <access token>` header is required.",
            ),
            AuthError::NotBearer => {
                Problem::unauthorized("The Authorization header must be `Bearer <access token>`.")
            }
            AuthError::Invalid(_) | AuthError::Revoked(_) => {
                Problem::unauthorized("The access token is invalid or has expired.")
            }
        }
    }

    /// The audit event of this refusal of a request for `target`. A revoked token is genuine:
    /// whose it is belongs in the record.
    pub fn audit_event(&self, target: impl Into<String>) -> AuditEvent {
        let event = AuditEvent::new(Action::TokenRejected, Outcome::Denied)
            .target(target)
            .reason(self.reason());
        match self {
            AuthError::Revoked(user) => event.user(user.as_uuid()),
            _ => event,
        }
    }
}

/// The token of an `Authorization` header value: `Missing` without one, `NotBearer` when it is
/// not `Bearer <token>`.
pub fn bearer(authorization: Option<&[u8]>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?;
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::NotBearer)
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

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

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

/// The authenticated caller, from a verified `Authorization: Bearer` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: UserId,
    pub role: Role,
    /// The token's version: revocations refuse it once the user's minimum passes it.
    pub token_version: TokenVersion,
    /// The token's `exp` (Unix seconds): sessions opened with it end then.
    pub expires_at: i64,
}

impl From<Claims> for AuthUser {
    fn from(claims: Claims) -> Self {
        Self {
            id: claims.sub,
            role: claims.role,
            token_version: claims.ver,
            expires_at: claims.exp,
        }
    }
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
        let authorization = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        match bearer(authorization).and_then(|token| jwt.verify(token)) {
            Ok(claims) => Ok(AuthUser::from(claims)),
            Err(error) => Err(refuse(parts, &error)),
        }
    }
}

/// Records the refusal of a request's credentials in the audit trail; the client's 401.
fn refuse(parts: &Parts, error: &AuthError) -> Problem {
    tracing::debug!(%error, "access token refused");
    Auditor::of(parts).record(error.audit_event(request_target(parts)));
    error.to_problem()
}

/// `METHOD /path` of a request (without its query): what an audit record says was asked for.
pub fn request_target(parts: &Parts) -> String {
    format!("{} {}", parts.method, parts.uri.path())
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
            Auditor::of(parts).record(access_denied(caller.id, request_target(parts)));
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

/// The audit event of an authenticated caller refused an administrators' operation.
pub fn access_denied(user: UserId, target: impl Into<String>) -> AuditEvent {
    AuditEvent::new(Action::AccessDenied, Outcome::Denied)
        .user(user.as_uuid())
        .target(target)
        .reason("admin_only")
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
    fn refusals_are_classified_for_the_audit_trail() {
        let jwt = jwt();
        let reason = |token: &str| jwt.verify(token).unwrap_err().reason();
        assert_eq!(bearer(None).unwrap_err().reason(), "missing");
        assert_eq!(
            bearer(Some(b"Basic dXNlcjpwYXNz")).unwrap_err().reason(),
            "malformed"
        );
        assert_eq!(bearer(Some(b"Bearer ")).unwrap_err().reason(), "malformed");
        assert_eq!(bearer(Some(b"bearer abc")).unwrap(), "abc");
        assert_eq!(reason("garbage"), "malformed");
        let expired = sign(
            Algorithm::HS256,
            &claims(-5, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
            SECRET,
        );
        assert_eq!(reason(&expired), "expired");
        let forged = sign(
            Algorithm::HS256,
            &claims(600, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
            "another-secret-another-secret-xx",
        );
        assert_eq!(reason(&forged), "invalid");
        assert_eq!(AuthError::Revoked(UserId::generate()).reason(), "revoked");
        // Clients cannot tell a revoked token from an expired one.
        let body = |error: AuthError| serde_json::to_value(error.to_problem()).unwrap();
        assert_eq!(
            body(AuthError::Revoked(UserId::generate())),
            body(jwt.verify(&expired).unwrap_err())
        );
    }

    mod extractors {
        use std::sync::Mutex;

        use axum::Router;
        use axum::body::Body;
        use axum::extract::{FromRef, Request};
        use axum::routing::get;
        use platform_audit::Sink;
        use platform_http::audit::{Audit, AuditContext, AuditRecord, Auditor};
        use tower::ServiceExt;

        use super::*;

        #[derive(Default)]
        struct Collect(Mutex<Vec<AuditRecord>>);

        impl Sink for Collect {
            fn accept(&self, record: AuditRecord) {
                self.0.lock().unwrap().push(record);
            }
        }

        #[derive(Clone)]
        struct State(Jwt);

        impl FromRef<State> for Jwt {
            fn from_ref(state: &State) -> Jwt {
                state.0.clone()
            }
        }

        async fn call(
            jwt: &Jwt,
            path: &str,
            authorization: Option<&str>,
        ) -> (u16, Vec<AuditRecord>) {
            let sink = Arc::new(Collect::default());
            let app = Router::new()
                .route("/user", get(|_: AuthUser| async { "ok" }))
                .route("/admin", get(|_: AdminUser| async { "ok" }))
                .with_state(State(jwt.clone()));
            let mut request = Request::get(path);
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let mut request = request.body(Body::empty()).unwrap();
            request.extensions_mut().insert(Auditor {
                audit: Audit::with_sink("test-service", sink.clone()),
                context: AuditContext::default(),
            });
            let status = app.oneshot(request).await.unwrap().status().as_u16();
            let records = sink.0.lock().unwrap().clone();
            (status, records)
        }

        #[tokio::test]
        async fn every_401_and_403_is_audited_with_its_reason_class() {
            let jwt = jwt().with_revocations(Revocations::isolated());
            let user = UserId::generate();
            let token = jwt.issue(user, Role::User).unwrap().token;
            let bearer = format!("Bearer {token}");

            let (status, records) = call(&jwt, "/user", Some(&bearer)).await;
            assert_eq!((status, records.len()), (200, 0), "success is not audited");

            let (status, records) = call(&jwt, "/admin", Some(&bearer)).await;
            assert_eq!(status, 403);
            assert_eq!(records[0].action, Action::AccessDenied);
            assert_eq!(
                records[0].actor,
                Some(platform_http::audit::Actor::User(user.as_uuid()))
            );
            assert_eq!(records[0].target.as_deref(), Some("GET /admin"));

            let expired = sign(
                Algorithm::HS256,
                &claims(-5, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
                SECRET,
            );
            let cases = [
                (None, "missing"),
                (Some("Basic dXNlcjpwYXNz".to_owned()), "malformed"),
                (Some("Bearer not.a.token".to_owned()), "malformed"),
                (Some(format!("Bearer {expired}")), "expired"),
            ];
            for (authorization, reason) in cases {
                let (status, records) = call(&jwt, "/user", authorization.as_deref()).await;
                assert_eq!(status, 401, "{reason}");
                assert_eq!(records.len(), 1, "{reason}");
                assert_eq!(records[0].action, Action::TokenRejected);
                assert_eq!(records[0].outcome, Outcome::Denied);
                assert_eq!(records[0].reason.as_deref(), Some(reason));
                assert_eq!(records[0].service, "test-service");
            }

            jwt.revoke(user, TokenVersion::new(1)).await.unwrap();
            let (status, records) = call(&jwt, "/admin", Some(&bearer)).await;
            assert_eq!(status, 401);
            assert_eq!(records[0].reason.as_deref(), Some("revoked"));
            assert_eq!(
                records[0].actor,
                Some(platform_http::audit::Actor::User(user.as_uuid()))
            );
            let text = serde_json::to_string(&records).unwrap();
            assert!(!text.contains(&token), "no token in the audit trail");
        }
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(32), random_token(32));
        assert_eq!(random_token(32).len(), 43);
    }
}
