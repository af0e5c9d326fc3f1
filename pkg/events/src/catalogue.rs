//! Every event the platform emits, with its payload. Adding an event means adding it here.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A typed event payload.
pub trait Event: Serialize + DeserializeOwned {
    /// The CloudEvents `type`, `<aggregate>.<past-tense verb>`.
    const TYPE: &'static str;
    /// Bumped on any incompatible change of the payload.
    const SCHEMA_VERSION: u32;
    /// The aggregate's id: events of one subject are delivered in order.
    fn subject(&self) -> String;
}

/// A user account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
}

impl Event for UserRegistered {
    const TYPE: &'static str = "user.registered";
    const SCHEMA_VERSION: u32 = 1;
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// A user's profile or password changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub user_id: Uuid,
    pub name: String,
    /// Which fields changed: `name`, `password`.
    pub changed: Vec<String>,
}

impl Event for UserUpdated {
    const TYPE: &'static str = "user.updated";
    const SCHEMA_VERSION: u32 = 1;
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// A user account was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    pub user_id: Uuid,
}

impl Event for UserDeleted {
    const TYPE: &'static str = "user.deleted";
    const SCHEMA_VERSION: u32 = 1;
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}
