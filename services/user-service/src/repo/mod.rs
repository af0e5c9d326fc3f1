//! Persistence: the only module that knows the tables. Returns domain types.

pub mod entities;
pub mod refresh_tokens;
pub mod users;
