//! Wire types of the REST API and their conversion to domain types.
//!
//! Request types deliberately do not derive `Debug`: they hold passwords.

use chrono::{DateTime, Utc};
use platform_http::{FieldErrors, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Email, Password, Role, User, UserId, UserName};
use crate::service::{NewUser, ProfileChange, TokenPair};

/// `POST /api/v1/users`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada Lovelace"}))]
pub struct RegisterRequest {
    /// Trimmed and lower-cased before use.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

impl RegisterRequest {
    /// Every invalid field is named in one 422.
    pub fn parse(self) -> Result<NewUser, Problem> {
        match (
            Email::parse(&self.email),
            Password::parse(&self.password),
            UserName::parse(&self.name),
        ) {
            (Ok(email), Ok(password), Ok(name)) => Ok(NewUser {
                email,
                name,
                password,
            }),
            (email, password, name) => {
                let mut errors = FieldErrors::new();
                errors.check("email", email);
                errors.check("password", password);
                errors.check("name", name);
                Err(errors.into_problem())
            }
        }
    }
}

/// `POST /api/v1/auth/login`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// `POST /api/v1/auth/refresh` and `POST /api/v1/auth/logout`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `PUT /api/v1/users/{id}`: every field optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada King", "password": "a new long password", "current_password": "correct horse battery"}))]
pub struct UpdateUserRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// A new password (8 to 128 characters).
    #[schema(min_length = 8, max_length = 128)]
    pub password: Option<String>,
    /// Required when users change their own password.
    pub current_password: Option<String>,
    /// `user` or `admin`: administrators only.
    pub role: Option<Role>,
}

impl UpdateUserRequest {
    pub fn parse(self) -> Result<ProfileChange, Problem> {
        let mut errors = FieldErrors::new();
        let name = self
            .name
            .as_deref()
            .and_then(|n| errors.check("name", UserName::parse(n)));
        let password = self
            .password
            .as_deref()
            .and_then(|p| errors.check("password", Password::parse(p)));
        errors.finish()?;
        Ok(ProfileChange {
            name,
            password,
            current_password: self.current_password,
            role: self.role,
        })
    }
}

/// A user account. Never contains the password or its hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserResponse {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email.to_string(),
            name: user.name.to_string(),
            role: user.role,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// Tokens issued by login and refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Opaque; exchange it at `/api/v1/auth/refresh` for a new pair. Single use.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in: pair.expires_in,
            refresh_expires_in: pair.refresh_expires_in,
        }
    }
}
