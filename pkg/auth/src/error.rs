//! Why a token was refused, in the three forms a refusal takes: the audit trail's reason
//! class, the client's deliberately uninformative 401, and the audit event itself.

use platform_http::Problem;
use platform_http::audit::{Action, AuditEvent, Outcome};

use crate::UserId;

/// Why a token was refused. Deliberately coarse towards clients: all of these are a 401; the
/// audit trail gets the class ([`AuthError::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing bearer token")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header is not a bearer token")]
    NotBearer,
    /// Refused by the token checks: expired, forged, malformed, or of another algorithm,
    /// issuer or audience ([`AuthError::reason`] tells which class). From
    /// [`Jwt::issue`](crate::Jwt::issue): signing failed.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// Valid, but issued before its user's tokens were revoked.
    #[error("the token of user {0} was revoked")]
    Revoked(UserId),
}

impl AuthError {
    /// The audit trail's reason class: `missing`, `malformed`, `invalid` (signature, issuer,
    /// audience, algorithm), `expired` or `revoked`.
    pub fn reason(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind;
        match self {
            AuthError::Missing => "missing",
            AuthError::NotBearer => "malformed",
            AuthError::Revoked(_) => "revoked",
            AuthError::Invalid(error) => match error.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::InvalidToken
                | ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_)
                | ErrorKind::MissingRequiredClaim(_) => "malformed",
                _ => "invalid",
            },
        }
    }

    /// What a client is told: the same few words whatever the class, so a refusal reveals
    /// nothing about why (a revoked token looks like an expired one).
    pub fn to_problem(&self) -> Problem {
        match self {
            AuthError::Missing => Problem::unauthorized(
                "An `Authorization: Bearer <access token>` header is required.",
            ),
            AuthError::NotBearer => {
                Problem::unauthorized("The Authorization header must be `Bearer <access token>`.")
            }
            AuthError::Invalid(_) | AuthError::Revoked(_) => {
                Problem::unauthorized("The access token is invalid or has expired.")
            }
        }
    }

    /// The audit event of this refusal of a request for `target`. A revoked token is genuine:
    /// whose it is belongs in the record.
    pub fn audit_event(&self, target: impl Into<String>) -> AuditEvent {
        let event = AuditEvent::new(Action::TokenRejected, Outcome::Denied)
            .target(target)
            .reason(self.reason());
        match self {
            AuthError::Revoked(user) => event.user(user.as_uuid()),
            _ => event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bearer;
    use crate::test_support::{SECRET, claims, jwt, sign};
    use crate::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};
    use jsonwebtoken::Algorithm;

    #[test]
    fn refusals_are_classified_for_the_audit_trail() {
        let jwt = jwt();
        let reason = |token: &str| jwt.verify(token).unwrap_err().reason();
        assert_eq!(bearer(None).unwrap_err().reason(), "missing");
        assert_eq!(
            bearer(Some(b"Basic dXNlcjpwYXNz")).unwrap_err().reason(),
            "malformed"
        );
        assert_eq!(bearer(Some(b"Bearer ")).unwrap_err().reason(), "malformed");
        assert_eq!(bearer(Some(b"bearer abc")).unwrap(), "abc");
        assert_eq!(reason("garbage"), "malformed");
        let expired = sign(
            Algorithm::HS256,
            &claims(-5, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
            SECRET,
        );
        assert_eq!(reason(&expired), "expired");
        let forged = sign(
            Algorithm::HS256,
            &claims(600, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
            "another-secret-another-secret-xx",
        );
        assert_eq!(reason(&forged), "invalid");
        assert_eq!(AuthError::Revoked(UserId::generate()).reason(), "revoked");
        // Clients cannot tell a revoked token from an expired one.
        let body = |error: AuthError| serde_json::to_value(error.to_problem()).unwrap();
        assert_eq!(
            body(AuthError::Revoked(UserId::generate())),
            body(jwt.verify(&expired).unwrap_err())
        );
    }
}
