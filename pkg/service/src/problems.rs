//! The one mapping of a database failure to an API problem, shared by every service.

use platform_http::Problem;
use sea_orm::DbErr;

/// A failure of the service's database `name` ("order", "user"…) as the client sees it:
/// a 503 with `Retry-After: 1` when no connection could be had (worth a retry: the pool or
/// the server is briefly out), else a 500 whose cause is logged and never shown.
pub fn database_problem(name: &str, error: &DbErr) -> Problem {
    if platform_db::is_unavailable(error) {
        tracing::error!(%error, "no database connection available");
        return Problem::unavailable(format!("The {name} database is not available right now."))
            .with_retry_after(1);
    }
    tracing::error!(%error, "database query failed");
    Problem::internal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_a_503_worth_a_retry() {
        let error = DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout);
        let problem = database_problem("order", &error);
        assert_eq!(problem.status_code(), 503);
        assert_eq!(
            problem.detail.as_deref(),
            Some("The order database is not available right now.")
        );
        assert_eq!(problem.retry_after, Some(1));
    }

    #[test]
    fn any_other_failure_is_a_500_that_hides_its_cause() {
        let error = DbErr::Custom("secret detail".into());
        let problem = database_problem("order", &error);
        let text = format!("{problem:?}");
        assert!(!text.contains("secret detail"), "{text}");
        assert_eq!(problem.status_code(), 500);
    }
}
