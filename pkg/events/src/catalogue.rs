//! Every event the platform emits, with its payload. Adding an event means adding it here.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every event family (the part of a type before the dot); one stream each. A consumer of
/// everything, such as the event store, subscribes to all of them.
pub const FAMILIES: &[&str] = &["user"];

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::family_of;

    #[test]
    fn every_event_type_belongs_to_a_listed_family() {
        for event_type in [UserRegistered::TYPE, UserUpdated::TYPE, UserDeleted::TYPE] {
            assert!(FAMILIES.contains(&family_of(event_type)), "{event_type}");
        }
    }
}
