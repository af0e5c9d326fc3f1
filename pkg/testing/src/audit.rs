//! Capturing the audit trail: a [`platform_audit::Sink`] that keeps every record, so tests
//! assert on what a service recorded.

use std::sync::{Arc, Mutex};

use platform_audit::{Action, Audit, AuditRecord, Outcome, Sink};

/// Every record of the audit trails it was handed to. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AuditCapture(Arc<Mutex<Vec<AuditRecord>>>);

impl Sink for AuditCapture {
    fn accept(&self, record: AuditRecord) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }
}

impl AuditCapture {
    /// An audit trail for `service` that records here (and logs as usual).
    pub fn audit(&self, service: &str) -> Audit {
        Audit::with_sink(service, Arc::new(self.clone()))
    }

    /// Everything recorded so far, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The records of `action`.
    pub fn of(&self, action: Action) -> Vec<AuditRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }

    /// The last record of `action` with `outcome` and `reason`, if any.
    pub fn find(
        &self,
        action: Action,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> Option<AuditRecord> {
        self.of(action)
            .into_iter()
            .rev()
            .find(|r| r.outcome == outcome && r.reason.as_deref() == reason)
    }
}
