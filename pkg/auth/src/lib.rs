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
#![warn(missing_docs)]

pub mod revocation;
pub mod service_identity;

mod config;
mod error;
mod extract;
mod ids;
mod jwt;
#[cfg(test)]
mod test_support;

pub use config::{
    DEFAULT_AUDIENCE, DEFAULT_ISSUER, JwtConfig, MAX_PRODUCTION_EXPIRATION, MIN_SECRET_BYTES,
    random_secret, random_token,
};
pub use error::AuthError;
pub use extract::{AdminUser, AuthUser, BearerSecurity, access_denied, bearer, request_target};
pub use ids::{Role, TokenVersion, UserId};
pub use jwt::{AccessToken, Claims, Jwt};
pub use revocation::{RevocationError, Revocations};
