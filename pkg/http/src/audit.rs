//! The audit trail as a handler sees it: [`Auditor`], the service's [`Audit`] with the
//! request's context (client address, request id) already filled in.
//!
//! The pipeline puts one in every request's extensions, so a handler (or an extractor, such as
//! platform-auth's, refusing a token) records an event with one call and cannot forget where
//! the request came from.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use platform_audit::{Action, Actor, Audit, AuditContext, AuditEvent, AuditRecord, Outcome};

/// The service's audit trail bound to one request.
#[derive(Debug, Clone)]
pub struct Auditor {
    /// The service's trail.
    pub audit: Audit,
    /// The request's client address and request id, stamped on every record.
    pub context: AuditContext,
}

impl Auditor {
    /// Records `event` with this request's client address and request id.
    pub fn record(&self, event: AuditEvent) -> AuditRecord {
        self.audit.record(&self.context, event)
    }

    /// The request's auditor, or a log-only one outside the pipeline (unit tests).
    pub fn of(parts: &Parts) -> Self {
        parts
            .extensions
            .get::<Auditor>()
            .cloned()
            .unwrap_or_else(|| Auditor {
                audit: Audit::new("unknown"),
                context: AuditContext::default(),
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auditor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Auditor::of(parts))
    }
}
