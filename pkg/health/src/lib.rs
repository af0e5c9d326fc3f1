//! Readiness: the dependencies a service needs, checked concurrently under a deadline.
//!
//! A crate of its own, below everything that has a dependency to report (the database pool,
//! Redis), so those crates implement [`HealthCheck`] without depending on the HTTP stack that
//! serves `/ready` (`platform-http`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A dependency whose availability decides readiness (a database, Redis, an upstream).
pub trait HealthCheck: Send + Sync + 'static {
    /// `Err` carries a short reason safe to show to operators (no secrets, no URLs with
    /// passwords).
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The set of checks behind `/ready`.
#[derive(Clone, Default)]
pub struct Readiness {
    /// Checks by name, reported under that name, and whether readiness depends on them.
    checks: Vec<(String, Arc<dyn HealthCheck>, Need)>,
}

/// Whether a dependency being down takes the service out of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    /// Down makes the service `degraded`: still ready, serving without it (a cache).
    Optional,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|(n, _, _)| n).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

/// How long one check may take before it counts as down.
const CHECK_DEADLINE: Duration = Duration::from_secs(2);

impl Readiness {
    /// No checks yet: always ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Readiness::add`], by value, for building in one expression.
    pub fn with(mut self, name: impl Into<String>, check: impl HealthCheck) -> Self {
        self.add(name, check);
        self
    }

    /// A dependency the service cannot do without: when it is down (or does not answer within
    /// 2 s), `/ready` answers 503 with status `unavailable`.
    pub fn add(&mut self, name: impl Into<String>, check: impl HealthCheck) {
        self.checks
            .push((name.into(), Arc::new(check), Need::Required));
    }

    /// A dependency the service can do without: when it is down, `/ready` still answers 200,
    /// with status `degraded`.
    pub fn add_optional(&mut self, name: impl Into<String>, check: impl HealthCheck) {
        self.checks
            .push((name.into(), Arc::new(check), Need::Optional));
    }

    /// Runs every check concurrently.
    pub async fn report(&self) -> ReadinessReport {
        let results = join_all(self.checks.iter().map(|(name, check, need)| async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(CHECK_DEADLINE, check.check()).await {
                Ok(Ok(())) => CheckReport {
                    status: CheckStatus::Up,
                    error: None,
                    latency_ms: 0,
                },
                Ok(Err(error)) => CheckReport {
                    status: CheckStatus::Down,
                    error: Some(error),
                    latency_ms: 0,
                },
                Err(_) => CheckReport {
                    status: CheckStatus::Down,
                    error: Some(format!("no answer within {}s", CHECK_DEADLINE.as_secs())),
                    latency_ms: 0,
                },
            };
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            (
                name.clone(),
                *need,
                CheckReport {
                    latency_ms,
                    ..outcome
                },
            )
        }))
        .await;
        let down = |wanted: Need| {
            results
                .iter()
                .any(|(_, need, r)| *need == wanted && r.status == CheckStatus::Down)
        };
        let status = if down(Need::Required) {
            ReadinessStatus::Unavailable
        } else if down(Need::Optional) {
            ReadinessStatus::Degraded
        } else {
            ReadinessStatus::Ready
        };
        ReadinessReport {
            status,
            checks: results
                .into_iter()
                .map(|(name, _, report)| (name, report))
                .collect(),
        }
    }
}

/// Whether a dependency answered its check; `up` or `down` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The check succeeded within its deadline.
    Up,
    /// The check failed or did not answer within its deadline (2 s).
    Down,
}

/// One dependency's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckReport {
    /// Whether it answered.
    pub status: CheckStatus,
    /// Why it is down: the check's own reason, or that it did not answer in time; absent
    /// when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the check took, in milliseconds; about 2000 when it timed out.
    pub latency_ms: u64,
}

/// Whether a service should receive traffic, and how well it can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadinessStatus {
    /// Every dependency is up.
    Ready,
    /// An optional dependency is down; still serving without it (`/ready` answers 200).
    Degraded,
    /// A required dependency is down (`/ready` answers 503).
    Unavailable,
}

/// Body of `/ready`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "ready", "checks": {"database": {"status": "up", "latency_ms": 1}}}))]
pub struct ReadinessReport {
    /// `ready`, `degraded` (an optional dependency is down; still serving) or `unavailable`.
    pub status: ReadinessStatus,
    /// Every check, by the name it was added under.
    pub checks: BTreeMap<String, CheckReport>,
}

impl ReadinessReport {
    /// Whether the service should receive traffic: `ready` or `degraded` (`/ready` answers
    /// 200), not `unavailable` (503).
    pub fn is_ready(&self) -> bool {
        self.status != ReadinessStatus::Unavailable
    }
}

/// A check built from an async closure, for dependencies without a crate of their own.
pub struct FnCheck<F>(pub F);

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin((self.0)())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_failing_check_makes_the_service_unready_with_detail() {
        let readiness = Readiness::new()
            .with("database", FnCheck(|| async { Ok(()) }))
            .with(
                "redis",
                FnCheck(|| async { Err("connection refused".to_owned()) }),
            );
        let report = readiness.report().await;
        assert!(!report.is_ready());
        assert_eq!(report.checks["database"].status, CheckStatus::Up);
        assert_eq!(report.checks["redis"].status, CheckStatus::Down);
        assert_eq!(
            report.checks["redis"].error.as_deref(),
            Some("connection refused")
        );
    }

    #[tokio::test]
    async fn a_failing_optional_check_degrades_but_stays_ready() {
        let mut readiness = Readiness::new().with("database", FnCheck(|| async { Ok(()) }));
        readiness.add_optional(
            "cache",
            FnCheck(|| async { Err("connection refused".to_owned()) }),
        );
        let report = readiness.report().await;
        assert!(report.is_ready());
        assert_eq!(report.status, ReadinessStatus::Degraded);
        assert_eq!(report.checks["cache"].status, CheckStatus::Down);

        readiness.add("database-2", FnCheck(|| async { Err("down".to_owned()) }));
        assert_eq!(
            readiness.report().await.status,
            ReadinessStatus::Unavailable
        );
    }

    #[tokio::test]
    async fn no_checks_means_ready() {
        assert!(Readiness::new().report().await.is_ready());
    }
}
