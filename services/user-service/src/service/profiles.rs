//! Reading accounts and changing them: a password or role change revokes every token of
//! the account.

use platform_auth::AuthUser;
use platform_events::catalogue::UserUpdated;
use platform_events::outbox;
use platform_http::audit::{Action, AuditEvent, Outcome};
use platform_http::{Auditor, Page, PageRequest};
use sea_orm::TransactionTrait;

use super::{ProfileChange, UserError, Users, target};
use crate::domain::{Role, User, UserId, now};
use crate::repo::refresh_tokens;
use crate::repo::users::{self, Changes};

impl Users {
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
