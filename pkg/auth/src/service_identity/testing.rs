//! Helpers of the service-identity unit tests: identities sharing one known secret, and the
//! metadata and refusals the guard works with.

use std::sync::Arc;

use axum::http::header::AUTHORIZATION;
use platform_http::grpc_guard::{CredentialError, Unauthenticated};

use super::{ServiceAuthConfig, ServiceIdentity};

pub(super) const SECRET: &str = "internal-secret-0123456789abcdef0123";

pub(super) fn identity(name: &str) -> ServiceIdentity {
    ServiceIdentity::new(name, &ServiceAuthConfig::with_secret(SECRET)).unwrap()
}

pub(super) fn bearer(token: &str) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    headers
}

pub(super) fn refusal(
    result: Result<Arc<str>, Unauthenticated>,
) -> (CredentialError, Option<String>) {
    let refused = result.unwrap_err();
    (refused.error, refused.claimed.map(|c| c.to_string()))
}
