use chrono::{DateTime, SubsecRound, Utc};

use super::{Email, Role, UserId, UserName};

/// A user account as the rest of the service sees it: never with its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: UserName,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The current time at the precision both backends store (PostgreSQL keeps microseconds), so
/// a value reads back exactly as it was written on either.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
