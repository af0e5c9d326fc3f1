//! The identifiers every service shares: users, their roles and their token versions, so
//! no service passes a bare UUID or role string around.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

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

    /// An existing id (a database row's, an event's).
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// Any textual UUID form the `uuid` crate reads (hyphenated, simple, braced, URN).
    pub fn parse(raw: &str) -> Result<Self, uuid::Error> {
        Uuid::parse_str(raw).map(Self)
    }

    /// The bare UUID, for storage and the wire.
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
    /// Acts on their own resources only.
    User,
    /// Acts on every user's resources, and may call `/api/v1/admin/`.
    Admin,
}

impl Role {
    /// The lowercase name, as in the `role` claim and JSON: `user` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// The inverse of [`Role::as_str`], exact (case matters); `None` for any other string.
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

/// A user's token version: tokens carry the version current when they were issued, and
/// revoking a user's tokens raises the minimum accepted ([`Revocations`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TokenVersion(u64);

impl TokenVersion {
    /// A version as user-service stores it; a token without `ver` is version 0.
    pub const fn new(version: u64) -> Self {
        Self(version)
    }

    /// The number, as stored and as the `ver` claim carries it.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TokenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
