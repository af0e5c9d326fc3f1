//! How use-case errors reach clients: every one becomes a problem document. Internal details
//! are logged here and never sent.

use platform_http::Problem;

use crate::passwords::HashError;
use crate::service::UserError;

impl From<UserError> for Problem {
    fn from(error: UserError) -> Self {
        match error {
            UserError::EmailTaken => {
                Problem::conflict("An account with this email already exists.")
            }
            UserError::InvalidCredentials => Problem::unauthorized("Invalid email or password."),
            UserError::InvalidRefreshToken => {
                Problem::unauthorized("The refresh token is invalid, expired or revoked.")
            }
            UserError::NotFound => Problem::not_found("No such user."),
            UserError::Forbidden(detail) => Problem::forbidden(detail),
            UserError::CurrentPasswordRequired => {
                Problem::invalid_field("current_password", "is required to change the password")
            }
            UserError::CurrentPasswordWrong => {
                Problem::invalid_field("current_password", "is incorrect")
            }
            UserError::Database(error) => platform_service::database_problem("user", &error),
            UserError::Hashing(HashError::Overloaded) => {
                tracing::warn!("password hashing saturated: request shed");
                Problem::unavailable("Too many sign-ins at once; try again shortly.")
                    .with_retry_after(1)
            }
            UserError::Revocation(error) => {
                tracing::error!(%error, "access tokens could not be revoked; change not made");
                Problem::unavailable("This change cannot be made right now; try again shortly.")
                    .with_retry_after(1)
            }
            error @ (UserError::Hashing(_) | UserError::Token(_) | UserError::Event(_)) => {
                tracing::error!(%error, "request failed");
                Problem::internal()
            }
        }
    }
}
