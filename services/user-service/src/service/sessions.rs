//! Sessions: logging in (throttled), rotating refresh tokens (a reused one revokes its
//! whole family) and logging out.

use chrono::{DateTime, Utc};
use platform_auth::TokenVersion;
use platform_http::Auditor;
use platform_http::audit::{Action, AuditEvent, Outcome};
use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

use super::{TokenPair, UserError, Users, target};
use crate::domain::{Email, User, UserId, now};
use crate::repo::refresh_tokens::{self, NewRefreshToken};
use crate::repo::users;
use crate::throttle::{AccountKey, Verdict};

/// SHA-256 of a refresh token, hex: what the database stores. The token itself has 256 bits
/// of entropy, so a fast hash is enough (no salt or stretching needed).
fn token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Users {
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
                    .target(target(UserId::from_uuid(row.user_id)))
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
