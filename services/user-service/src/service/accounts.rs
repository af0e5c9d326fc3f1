//! An account's creation (registration, and the configured admin seeded at startup) and
//! its deletion.

use platform_auth::AuthUser;
use platform_events::catalogue::{UserDeleted, UserRegistered};
use platform_events::outbox;
use platform_http::Auditor;
use platform_http::audit::{Action, AuditContext, AuditEvent, Outcome};
use sea_orm::TransactionTrait;

use super::{NewUser, UserError, Users, target};
use crate::domain::{Email, Password, Role, User, UserId, UserName, now};
use crate::repo::users;

impl Users {
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
}
