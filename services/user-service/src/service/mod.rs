//! The user service's use cases: registration, authentication, token rotation, profile
//! management. Both the HTTP and the gRPC front ends call these; neither holds business rules.
//!
//! Layout: this module holds the use cases' types and what they share; `accounts` creates
//! and deletes accounts, `sessions` logs in and out and rotates tokens, `profiles` reads
//! and changes accounts.

mod accounts;
mod profiles;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use platform_auth::{Jwt, RevocationError};
use platform_events::{Envelope, Event};
use platform_http::audit::Audit;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use crate::domain::{Email, Password, Role, UserId, UserName};
use crate::passwords::{HashError, Passwords};
use crate::repo::users;
use crate::throttle::LoginThrottle;

/// Everything a use case can fail with. The HTTP and gRPC layers map these to statuses.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    /// No such user, or one the caller may not see (indistinguishable on purpose).
    #[error("user not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the current password is required to set a new one")]
    CurrentPasswordRequired,
    #[error("the current password is incorrect")]
    CurrentPasswordWrong,
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("password hashing failed: {0}")]
    Hashing(#[from] HashError),
    #[error("cannot issue a token: {0}")]
    Token(#[from] platform_auth::AuthError),
    /// The change would revoke access tokens and the revocation could not be published: the
    /// change is not made (fail closed), the client may try again.
    #[error("cannot revoke access tokens: {0}")]
    Revocation(#[from] RevocationError),
    #[error("cannot encode an event: {0}")]
    Event(#[from] serde_json::Error),
}

/// What registration needs, already validated.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub name: UserName,
    pub password: Password,
}

/// A profile change, already validated.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub name: Option<UserName>,
    pub password: Option<Password>,
    /// Required when callers change their own password.
    pub current_password: Option<String>,
    /// Administrators only.
    pub role: Option<Role>,
}

/// An access token and the refresh token that renews it.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

/// The use cases, over one database. Cheap to clone.
#[derive(Clone)]
pub struct Users {
    db: DatabaseConnection,
    passwords: Passwords,
    /// Issues access tokens and revokes them (logout, password and role changes, deletion).
    jwt: Jwt,
    throttle: LoginThrottle,
    refresh_ttl: Duration,
    /// The `source` of the events this service emits.
    source: Arc<str>,
    /// For what the service does by itself (the admin seed), outside any request.
    audit: Audit,
}

/// What the use cases need besides the database.
#[derive(Debug, Clone)]
pub struct UsersParts {
    pub passwords: Passwords,
    pub jwt: Jwt,
    pub throttle: LoginThrottle,
    pub refresh_ttl: Duration,
    pub audit: Audit,
}

fn target(user: UserId) -> String {
    format!("user:{user}")
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Users {
    pub fn new(db: DatabaseConnection, parts: UsersParts, source: &str) -> Self {
        Self {
            db,
            passwords: parts.passwords,
            jwt: parts.jwt,
            throttle: parts.throttle,
            refresh_ttl: parts.refresh_ttl,
            source: Arc::from(source),
            audit: parts.audit,
        }
    }

    /// Raises `user`'s token version and publishes the revocation of every older access
    /// token, inside `txn` and before its commit: should the commit fail, tokens are refused
    /// that could have stayed valid (fail closed), never the reverse. `false` when there is no
    /// such user.
    async fn revoke_access<C: ConnectionTrait>(
        &self,
        txn: &C,
        user: UserId,
    ) -> Result<bool, UserError> {
        let Some(version) = users::bump_token_version(txn, user).await? else {
            return Ok(false);
        };
        self.jwt.revoke(user, version).await?;
        Ok(true)
    }

    fn envelope<E: Event>(&self, event: &E) -> Result<Envelope, UserError> {
        Ok(Envelope::new(&self.source, event)?)
    }
}
