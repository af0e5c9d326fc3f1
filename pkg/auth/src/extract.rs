//! The axum side of access tokens: the [`AuthUser`] and [`AdminUser`] extractors services use
//! behind the gateway, the audit records of their refusals, and the OpenAPI security scheme
//! the protected operations name.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use platform_http::Problem;
use platform_http::audit::{Action, AuditEvent, Auditor, Outcome};

use crate::{AuthError, Claims, Jwt, Role, TokenVersion, UserId};

/// The token of an `Authorization` header value: `Missing` without one, `NotBearer` when it is
/// not `Bearer <token>`.
pub fn bearer(authorization: Option<&[u8]>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?;
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::NotBearer)
}

/// The authenticated caller, from a verified `Authorization: Bearer` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    /// The token's subject.
    pub id: UserId,
    /// The role the token was issued with (a role change revokes the older tokens).
    pub role: Role,
    /// The token's version: revocations refuse it once the user's minimum passes it.
    pub token_version: TokenVersion,
    /// The token's `exp` (Unix seconds): sessions opened with it end then.
    pub expires_at: i64,
}

impl From<Claims> for AuthUser {
    fn from(claims: Claims) -> Self {
        Self {
            id: claims.sub,
            role: claims.role,
            token_version: claims.ver,
            expires_at: claims.exp,
        }
    }
}

impl AuthUser {
    /// Whether the token carries [`Role::Admin`].
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may act on `owner`'s resources: their own, or any if admin.
    pub fn may_access(&self, owner: UserId) -> bool {
        self.is_admin() || self.id == owner
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Jwt: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let jwt = Jwt::from_ref(state);
        let authorization = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        match bearer(authorization).and_then(|token| jwt.verify(token)) {
            Ok(claims) => Ok(AuthUser::from(claims)),
            Err(error) => Err(refuse(parts, &error)),
        }
    }
}

/// Records the refusal of a request's credentials in the audit trail; the client's 401.
fn refuse(parts: &Parts, error: &AuthError) -> Problem {
    tracing::debug!(%error, "access token refused");
    Auditor::of(parts).record(error.audit_event(request_target(parts)));
    error.to_problem()
}

/// `METHOD /path` of a request (without its query): what an audit record says was asked for.
pub fn request_target(parts: &Parts) -> String {
    format!("{} {}", parts.method, parts.uri.path())
}

/// An authenticated administrator: 401 without a valid token, 403 for anyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl<S> FromRequestParts<S> for AdminUser
where
    Jwt: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(AdminUser(caller))
        } else {
            Auditor::of(parts).record(access_denied(caller.id, request_target(parts)));
            Err(Problem::forbidden("This operation is for administrators."))
        }
    }
}

/// Declares the `bearer` security scheme (a JWT access token) that protected operations name
/// in their OpenAPI description: `#[openapi(modifiers(&platform_auth::BearerSecurity))]`.
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The audit event of an authenticated caller refused an administrators' operation.
pub fn access_denied(user: UserId, target: impl Into<String>) -> AuditEvent {
    AuditEvent::new(Action::AccessDenied, Outcome::Denied)
        .user(user.as_uuid())
        .target(target)
        .reason("admin_only")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Body;
    use axum::extract::{FromRef, Request};
    use axum::routing::get;
    use jsonwebtoken::Algorithm;
    use platform_audit::Sink;
    use platform_http::audit::{Audit, AuditContext, AuditRecord, Auditor};
    use tower::ServiceExt;

    use super::*;
    use crate::test_support::{SECRET, claims, jwt, sign};
    use crate::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Revocations};

    #[derive(Default)]
    struct Collect(Mutex<Vec<AuditRecord>>);

    impl Sink for Collect {
        fn accept(&self, record: AuditRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    #[derive(Clone)]
    struct State(Jwt);

    impl FromRef<State> for Jwt {
        fn from_ref(state: &State) -> Jwt {
            state.0.clone()
        }
    }

    async fn call(jwt: &Jwt, path: &str, authorization: Option<&str>) -> (u16, Vec<AuditRecord>) {
        let sink = Arc::new(Collect::default());
        let app = Router::new()
            .route("/user", get(|_: AuthUser| async { "ok" }))
            .route("/admin", get(|_: AdminUser| async { "ok" }))
            .with_state(State(jwt.clone()));
        let mut request = Request::get(path);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let mut request = request.body(Body::empty()).unwrap();
        request.extensions_mut().insert(Auditor {
            audit: Audit::with_sink("test-service", sink.clone()),
            context: AuditContext::default(),
        });
        let status = app.oneshot(request).await.unwrap().status().as_u16();
        let records = sink.0.lock().unwrap().clone();
        (status, records)
    }

    #[tokio::test]
    async fn every_401_and_403_is_audited_with_its_reason_class() {
        let jwt = jwt().with_revocations(Revocations::isolated());
        let user = UserId::generate();
        let token = jwt.issue(user, Role::User).unwrap().token;
        let bearer = format!("Bearer {token}");

        let (status, records) = call(&jwt, "/user", Some(&bearer)).await;
        assert_eq!((status, records.len()), (200, 0), "success is not audited");

        let (status, records) = call(&jwt, "/admin", Some(&bearer)).await;
        assert_eq!(status, 403);
        assert_eq!(records[0].action, Action::AccessDenied);
        assert_eq!(
            records[0].actor,
            Some(platform_http::audit::Actor::User(user.as_uuid()))
        );
        assert_eq!(records[0].target.as_deref(), Some("GET /admin"));

        let expired = sign(
            Algorithm::HS256,
            &claims(-5, DEFAULT_ISSUER, DEFAULT_AUDIENCE),
            SECRET,
        );
        let cases = [
            (None, "missing"),
            (Some("Basic dXNlcjpwYXNz".to_owned()), "malformed"),
            (Some("Bearer not.a.token".to_owned()), "malformed"),
            (Some(format!("Bearer {expired}")), "expired"),
        ];
        for (authorization, reason) in cases {
            let (status, records) = call(&jwt, "/user", authorization.as_deref()).await;
            assert_eq!(status, 401, "{reason}");
            assert_eq!(records.len(), 1, "{reason}");
            assert_eq!(records[0].action, Action::TokenRejected);
            assert_eq!(records[0].outcome, Outcome::Denied);
            assert_eq!(records[0].reason.as_deref(), Some(reason));
            assert_eq!(records[0].service, "test-service");
        }

        jwt.revoke(user, TokenVersion::new(1)).await.unwrap();
        let (status, records) = call(&jwt, "/admin", Some(&bearer)).await;
        assert_eq!(status, 401);
        assert_eq!(records[0].reason.as_deref(), Some("revoked"));
        assert_eq!(
            records[0].actor,
            Some(platform_http::audit::Actor::User(user.as_uuid()))
        );
        let text = serde_json::to_string(&records).unwrap();
        assert!(!text.contains(&token), "no token in the audit trail");
    }
}
