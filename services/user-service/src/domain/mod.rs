//! The user domain: plain types whose constructors enforce every rule, so a value that exists
//! is valid. No serde, no SQL here.

mod email;
mod name;
mod password;
mod user;

pub use email::{Email, EmailError};
pub use name::{NameError, UserName};
pub use password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, Password, PasswordError};
pub use platform_auth::{Role, UserId};
pub use user::{User, now};
