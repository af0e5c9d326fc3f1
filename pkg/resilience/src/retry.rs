//! Retry timing and the retry budget.

use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The full delay before the first retry; each further retry doubles it.
    pub base: Duration,
    /// The cap on the full delay, however many retries came before.
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry): `base · 2^(retry-1)` capped
    /// at `max`, then a random point in its upper half, so that clients failing together do not
    /// retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let half = full / 2;
        let jitter = rand::random_range(0..=u64::try_from(half.as_micros()).unwrap_or(u64::MAX));
        half + Duration::from_micros(jitter)
    }
}

/// Caps retries at a share of recent requests (plus a small floor per second), so that when an
/// upstream is down, retries add at most that share of extra load instead of multiplying it.
#[derive(Debug)]
pub struct RetryBudget {
    budget: TpsBudget,
}

impl RetryBudget {
    /// `ratio` of the requests of the last `ttl` may be retried, and at least `min_per_sec`
    /// retries per second.
    pub fn new(ttl: Duration, min_per_sec: u32, ratio: f32) -> Self {
        Self {
            budget: TpsBudget::new(ttl, min_per_sec, ratio),
        }
    }

    /// Records a request (earns retry credit).
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Spends credit for one retry; `false` when the budget is exhausted.
    pub fn withdraw(&self) -> bool {
        self.budget.withdraw()
    }
}

impl Default for RetryBudget {
    /// 20 % of the last 10 seconds' requests, at least 5 retries a second.
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 5, 0.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let backoff = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
        };
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!((Duration::from_millis(5)..=Duration::from_millis(10)).contains(&first));
            let third = backoff.delay(3);
            assert!((Duration::from_millis(20)..=Duration::from_millis(40)).contains(&third));
            assert!(backoff.delay(50) <= Duration::from_millis(100));
        }
    }

    #[test]
    fn the_budget_allows_a_share_of_requests_as_retries() {
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
        for _ in 0..100 {
            budget.deposit();
        }
        let retries = (0..100).take_while(|_| budget.withdraw()).count();
        assert!(
            (18..=22).contains(&retries),
            "{retries} retries for 100 requests"
        );
    }
}
