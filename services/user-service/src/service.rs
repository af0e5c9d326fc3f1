//! The user service's use cases: registration, authentication, token rotation, profile
//! management. Both the HTTP and the gRPC front ends call these; neither holds business rules.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform_auth::{AuthUser, Jwt, RevocationError, TokenVersion};
use platform_events::catalogue::{UserDeleted, UserRegistered, UserUpdated};
use platform_events::{Envelope, Event, outbox};
use platform_http::audit::{Action, Audit, AuditContext, AuditEvent, Outcome};
use platform_http::{Auditor, Page, PageRequest};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use uuid::Uuid;

use crate::domain::{Email, Password, Role, User, UserId, UserName, now};
use crate::passwords::{HashError, Passwords};
use crate::repo::refresh_tokens::{self, NewRefreshToken};
use crate::repo::users::{self, Changes};
use crate::throttle::{AccountKey, LoginThrottle, Verdict};

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

/// SHA-256 of a refresh token, hex: what the database stores. The token itself has 256 bits
/// of entropy, so a fast hash is enough (no salt or stretching needed).
fn token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
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

    /// Creates an account. The row and its `user.registered` event commit together; a
    /// duplicate email is detected by the unique index, so concurrent registrations of one
    /// email yield exactly one account.
    pub async fn register(
        &self,
        auditor: &Auditor,
        new: NewUser,
        role: Role,
    ) -> Result<User, UserError> {
        let hash = self.passwords.hash(&new.password).await?;
        let at = now();
        let user = User {
            id: UserId::generate(),
            email: new.email,
            name: new.name,
            role,
            created_at: at,
            updated_at: at,
        };
        let event = self.envelope(&UserRegistered {
            user_id: user.id.as_uuid(),
            email: user.email.to_string(),
            name: user.name.to_string(),
            role: role.to_string(),
        })?;
        let txn = self.db.begin().await?;
        if let Err(error) = users::insert(&txn, &user, &hash).await {
            return Err(if platform_db::is_unique_violation(&error) {
                UserError::EmailTaken
            } else {
                error.into()
            });
        }
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        tracing::info!(user_id = %user.id, role = %role, "user registered");
        auditor.record(
            AuditEvent::new(Action::UserRegister, Outcome::Success)
                .user(user.id.as_uuid())
                .target(target(user.id))
                .reason(if role == Role::Admin { "admin" } else { "user" }),
        );
        Ok(user)
    }

    /// Creates the configured admin unless an account with that email exists.
    pub async fn ensure_admin(
        &self,
        email: Email,
        name: UserName,
        password: Password,
    ) -> Result<(), UserError> {
        if let Some(existing) = users::find_by_email(&self.db, &email).await? {
            if existing.user.role != Role::Admin {
                tracing::warn!(user_id = %existing.user.id, "ADMIN_EMAIL belongs to an account that is not an admin; left unchanged");
            }
            return Ok(());
        }
        let auditor = Auditor {
            audit: self.audit.clone(),
            context: AuditContext::default(),
        };
        match self
            .register(
                &auditor,
                NewUser {
                    email,
                    name,
                    password,
                },
                Role::Admin,
            )
            .await
        {
            // Another replica created it first.
            Ok(_) | Err(UserError::EmailTaken) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Checks credentials and opens a new token family. A wrong password, an unknown email
    /// and a locked account (too many failures: see [`crate::throttle`]) fail alike, with the
    /// same hashing work; a locked account is refused even with the right password.
    pub async fn login(
        &self,
        auditor: &Auditor,
        email: &str,
        password: &str,
    ) -> Result<TokenPair, UserError> {
        let parsed = Email::parse(email);
        // Malformed emails are throttled too, by what they would normalise to.
        let account = AccountKey::new(match &parsed {
            Ok(email) => email.as_str().to_owned(),
            Err(_) => email.trim().to_lowercase(),
        });
        let locked = matches!(self.throttle.check(&account).await, Verdict::Locked(_));
        let stored = match &parsed {
            Ok(email) => users::find_by_email(&self.db, email).await?,
            Err(_) => None,
        };
        let actor = stored.as_ref().map(|s| s.user.id);
        let failure = |reason: &'static str| {
            let event = AuditEvent::new(Action::Login, Outcome::Failure).reason(reason);
            auditor.record(match actor {
                Some(id) => event.user(id.as_uuid()).target(target(id)),
                None => event,
            });
            UserError::InvalidCredentials
        };
        if locked {
            // The same work as any other attempt, so the answer's timing says nothing.
            self.passwords.verify(password, None).await?;
            return Err(failure("throttled"));
        }
        let hash = stored.as_ref().map(|s| s.password_hash.clone());
        if !self.passwords.verify(password, hash).await? {
            let reason = if actor.is_some() {
                "bad_password"
            } else {
                "unknown_account"
            };
            self.throttle.failed(&account).await;
            return Err(failure(reason));
        }
        let stored = stored.ok_or(UserError::InvalidCredentials)?;
        self.throttle.succeeded(&account).await;
        let pair = self
            .issue_pair(
                &self.db,
                &stored.user,
                stored.token_version,
                Uuid::now_v7(),
                now(),
            )
            .await?;
        tracing::info!(user_id = %stored.user.id, "user logged in");
        auditor.record(
            AuditEvent::new(Action::Login, Outcome::Success)
                .user(stored.user.id.as_uuid())
                .target(target(stored.user.id)),
        );
        Ok(pair)
    }

    async fn issue_pair<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: &User,
        version: TokenVersion,
        family_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<TokenPair, UserError> {
        let access = self.jwt.issue_versioned(user.id, user.role, version)?;
        let refresh_token = platform_auth::random_token(32);
        let ttl = chrono::Duration::from_std(self.refresh_ttl).unwrap_or(chrono::Duration::days(7));
        refresh_tokens::insert(
            conn,
            NewRefreshToken {
                user_id: user.id,
                family_id,
                token_hash: token_hash(&refresh_token),
                created_at: at,
                expires_at: at + ttl,
            },
        )
        .await?;
        Ok(TokenPair {
            access_token: access.token,
            expires_in: access.expires_in,
            refresh_token,
            refresh_expires_in: self.refresh_ttl.as_secs(),
        })
    }

    /// Exchanges a live refresh token for a new pair. The old token stops working; presenting
    /// a token that was already rotated means it leaked (or was replayed): the whole family is
    /// revoked, so the thief's and the owner's newer tokens both stop working.
    pub async fn refresh(&self, auditor: &Auditor, token: &str) -> Result<TokenPair, UserError> {
        let hash = token_hash(token);
        let at = now();
        let txn = self.db.begin().await?;
        if refresh_tokens::rotate(&txn, &hash, at).await? {
            let row = refresh_tokens::find_by_hash(&txn, &hash)
                .await?
                .ok_or(UserError::InvalidRefreshToken)?;
            let stored = users::find_by_id(&txn, UserId::from_uuid(row.user_id))
                .await?
                .ok_or(UserError::InvalidRefreshToken)?;
            let pair = self
                .issue_pair(&txn, &stored.user, stored.token_version, row.family_id, at)
                .await?;
            txn.commit().await?;
            auditor.record(
                AuditEvent::new(Action::Refresh, Outcome::Success)
                    .user(row.user_id)
                    .target(target(stored.user.id)),
            );
            return Ok(pair);
        }
        // Not live: unknown, expired, revoked, or already rotated (reuse).
        if let Some(row) = refresh_tokens::find_by_hash(&txn, &hash).await?
            && row.rotated_at.is_some()
            && row.revoked_at.is_none()
        {
            let revoked = refresh_tokens::revoke_family(&txn, row.family_id, at).await?;
            txn.commit().await?;
            tracing::warn!(
                user_id = %row.user_id,
                family_id = %row.family_id,
                revoked,
                "refresh token reused after rotation; token family revoked"
            );
            auditor.record(
                AuditEvent::new(Action::RefreshReuse, Outcome::Denied)
                    .user(row.user_id)
                    .target(format!("user:{}", row.user_id))
                    .reason("family_revoked"),
            );
            return Err(UserError::InvalidRefreshToken);
        }
        txn.rollback().await?;
        auditor.record(AuditEvent::new(Action::Refresh, Outcome::Failure).reason("invalid_token"));
        Err(UserError::InvalidRefreshToken)
    }

    /// Ends the session the refresh token belongs to (its whole family) and makes the user's
    /// access tokens fail at once. Unknown tokens are accepted silently: logging out twice is
    /// not an error.
    pub async fn logout(&self, auditor: &Auditor, token: &str) -> Result<(), UserError> {
        let Some(user) =
            refresh_tokens::revoke_family_of(&self.db, &token_hash(token), now()).await?
        else {
            auditor
                .record(AuditEvent::new(Action::Logout, Outcome::Failure).reason("unknown_token"));
            return Ok(());
        };
        // The family is revoked already: a failure here is answered with an error, and the
        // client's retry revokes the access tokens then.
        let txn = self.db.begin().await?;
        self.revoke_access(&txn, user).await?;
        txn.commit().await?;
        auditor.record(
            AuditEvent::new(Action::Logout, Outcome::Success)
                .user(user.as_uuid())
                .target(target(user)),
        );
        Ok(())
    }

    /// A user the caller may see: themself, or anyone for an admin.
    pub async fn get(&self, caller: AuthUser, id: UserId) -> Result<User, UserError> {
        if !caller.may_access(id) {
            return Err(UserError::NotFound);
        }
        self.find(id).await
    }

    /// A user by id, without access control (internal callers over gRPC).
    pub async fn find(&self, id: UserId) -> Result<User, UserError> {
        Ok(users::find_by_id(&self.db, id)
            .await?
            .ok_or(UserError::NotFound)?
            .user)
    }

    /// Changes a name, password and/or role. Users changing their own password must give the
    /// current one; only administrators change roles. A password or role change revokes every
    /// refresh token and every access token of the account.
    pub async fn update(
        &self,
        auditor: &Auditor,
        caller: AuthUser,
        id: UserId,
        change: ProfileChange,
    ) -> Result<User, UserError> {
        if !caller.may_access(id) {
            return Err(UserError::NotFound);
        }
        if change.role.is_some() && !caller.is_admin() {
            auditor.record(platform_auth::access_denied(caller.id, target(id)));
            return Err(UserError::Forbidden(
                "Only administrators may change roles.",
            ));
        }
        let stored = users::find_by_id(&self.db, id)
            .await?
            .ok_or(UserError::NotFound)?;
        let new_hash = match &change.password {
            Some(password) => {
                // An admin resetting someone else's password cannot know the current one.
                if caller.id == id {
                    let current = change
                        .current_password
                        .as_deref()
                        .ok_or(UserError::CurrentPasswordRequired)?;
                    if !self
                        .passwords
                        .verify(current, Some(stored.password_hash.clone()))
                        .await?
                    {
                        auditor.record(
                            AuditEvent::new(Action::PasswordChange, Outcome::Failure)
                                .user(caller.id.as_uuid())
                                .target(target(id))
                                .reason("bad_password"),
                        );
                        return Err(UserError::CurrentPasswordWrong);
                    }
                }
                Some(self.passwords.hash(password).await?)
            }
            None => None,
        };
        let role = change.role.filter(|role| *role != stored.user.role);
        let mut changed = Vec::new();
        if change.name.is_some() {
            changed.push("name".to_owned());
        }
        if new_hash.is_some() {
            changed.push("password".to_owned());
        }
        if role.is_some() {
            changed.push("role".to_owned());
        }
        if changed.is_empty() {
            return Ok(stored.user);
        }
        let at = now();
        let name = change
            .name
            .clone()
            .unwrap_or_else(|| stored.user.name.clone());
        let event = self.envelope(&UserUpdated {
            user_id: id.as_uuid(),
            name: name.to_string(),
            changed,
        })?;
        let txn = self.db.begin().await?;
        let found = users::update(
            &txn,
            id,
            Changes {
                name: change.name.as_ref(),
                password_hash: new_hash.as_deref(),
                role,
            },
            at,
        )
        .await?;
        if !found {
            txn.rollback().await?;
            return Err(UserError::NotFound);
        }
        if new_hash.is_some() || role.is_some() {
            refresh_tokens::revoke_user(&txn, id, at).await?;
            self.revoke_access(&txn, id).await?;
        }
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        if new_hash.is_some() {
            let event = AuditEvent::new(Action::PasswordChange, Outcome::Success)
                .user(caller.id.as_uuid())
                .target(target(id));
            auditor.record(if caller.id == id {
                event
            } else {
                event.reason("admin_reset")
            });
        }
        if let Some(role) = role {
            auditor.record(
                AuditEvent::new(Action::UserRoleChange, Outcome::Success)
                    .user(caller.id.as_uuid())
                    .target(target(id))
                    .reason(match role {
                        Role::Admin => "granted_admin",
                        Role::User => "revoked_admin",
                    }),
            );
        }
        Ok(User {
            name,
            role: role.unwrap_or(stored.user.role),
            updated_at: at,
            ..stored.user
        })
    }

    /// Deletes an account; its access tokens fail at once.
    pub async fn delete(
        &self,
        auditor: &Auditor,
        caller: AuthUser,
        id: UserId,
    ) -> Result<(), UserError> {
        if !caller.may_access(id) {
            return Err(UserError::NotFound);
        }
        let event = self.envelope(&UserDeleted {
            user_id: id.as_uuid(),
        })?;
        let txn = self.db.begin().await?;
        // The version bump comes first: on SQLite it takes the write lock before anything is
        // read, and the revocation is published before the row goes.
        if !self.revoke_access(&txn, id).await? || !users::delete(&txn, id).await? {
            txn.rollback().await?;
            return Err(UserError::NotFound);
        }
        // Refresh tokens go with the row (ON DELETE CASCADE), so no session survives.
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        tracing::info!(user_id = %id, by = %caller.id, "user deleted");
        auditor.record(
            AuditEvent::new(Action::UserDelete, Outcome::Success)
                .user(caller.id.as_uuid())
                .target(target(id)),
        );
        Ok(())
    }

    /// Every user, a page at a time: admins only.
    pub async fn list(
        &self,
        auditor: &Auditor,
        caller: AuthUser,
        page: PageRequest,
    ) -> Result<Page<User>, UserError> {
        if !caller.is_admin() {
            auditor.record(platform_auth::access_denied(caller.id, "users"));
            return Err(UserError::Forbidden("Only administrators may list users."));
        }
        let (items, total) = users::list(&self.db, page).await?;
        Ok(page.into_page(items, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_stored_as_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
