//! Edge policy: who the caller is (identity comes only from a verified token, and every
//! refusal is audited) and how much they may send (rate limits per client IP and per user).

use std::net::IpAddr;

use axum::response::{IntoResponse, Response};
use platform_auth::{AuthError, AuthUser, Jwt, Role};
use platform_http::Problem;
use platform_http::audit::AuditContext;
use platform_http::client_ip;
use platform_metrics::counter;
use platform_middleware::{Decision, LimitKey};

use super::Gateway;
use crate::routes::{Auth, Route};

/// The verified caller, if the request carries a token: signature, expiry, issuer, audience,
/// and revocation (checked by `verify_cached` after its cache, which cannot know them).
fn authenticate(jwt: &Jwt, authorization: Option<&[u8]>) -> Result<Option<AuthUser>, AuthError> {
    if authorization.is_none() {
        return Ok(None);
    }
    let token = platform_auth::bearer(authorization)?;
    jwt.verify_cached(token).map(Some)
}

impl Gateway {
    /// Edge authentication: the verified caller (if any), or the response that refuses the
    /// request. Every refusal is audited with `context` (where the request came from), which
    /// is only called then: an admitted request pays nothing for the audit trail.
    pub(crate) fn admit_in(
        &self,
        route: &Route,
        authorization: Option<&[u8]>,
        context: impl FnOnce() -> AuditContext,
    ) -> Result<Option<AuthUser>, Response> {
        let claims = match authenticate(&self.jwt, authorization) {
            Ok(claims) => claims,
            // On a public route a bad token is the service's business, not the gateway's.
            Err(_) if route.auth == Auth::Public => None,
            Err(error) => return Err(self.refuse(route, &error, context)),
        };
        match (&claims, route.auth) {
            (None, Auth::User | Auth::Admin) => {
                Err(self.refuse(route, &AuthError::Missing, context))
            }
            (Some(caller), Auth::Admin) if caller.role != Role::Admin => {
                self.audit.record(
                    &context(),
                    platform_auth::access_denied(caller.id, route.label.as_ref()),
                );
                Err(Problem::forbidden("This route is for administrators.").into_response())
            }
            _ => Ok(claims),
        }
    }

    /// Records a 401 at the edge and builds it.
    fn refuse(
        &self,
        route: &Route,
        error: &AuthError,
        context: impl FnOnce() -> AuditContext,
    ) -> Response {
        self.audit
            .record(&context(), error.audit_event(route.label.as_ref()));
        error.to_problem().into_response()
    }

    /// Rate limits per client IP, and per user when authenticated: the tighter decision to
    /// report, or the 429 response.
    pub(crate) async fn limit(
        &self,
        route: &Route,
        ip: IpAddr,
        caller: Option<&AuthUser>,
    ) -> Result<Option<Decision>, Response> {
        let Some(limit) = route.rate_limit.unwrap_or(self.default_limit) else {
            return Ok(None);
        };
        let mut reported: Option<Decision> = None;
        let user = caller.map(|caller| ("user", LimitKey::User(caller.id.as_uuid())));
        let by_address = LimitKey::Ip(client_ip::bucket(ip));
        for (scope, key) in std::iter::once(("ip", by_address)).chain(user) {
            let decision = self.limiter.check(&key, limit).await;
            if !decision.allowed {
                self.metrics
                    .record(|| counter!("rate_limited_total", "scope" => scope).increment(1));
                let retry_after = decision.retry_after_secs;
                let mut response = Problem::too_many_requests(retry_after).into_response();
                decision.write_headers(response.headers_mut());
                return Err(response);
            }
            if reported.is_none_or(|r| decision.remaining < r.remaining) {
                reported = Some(decision);
            }
        }
        Ok(reported)
    }
}
