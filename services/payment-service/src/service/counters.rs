//! The use cases' own metrics: what the fraud rules decided and why, and the money that moved.

use platform_metrics::{Counter, Metrics, counter};

use crate::fraud::{self, Decision, RiskAssessment};

/// Counters recorded per decision and per result (pre-registered: the hot path is an add).
pub(super) struct Counters {
    decisions: [(Decision, Counter); 3],
    rules: Vec<(&'static str, Counter)>,
    /// For `payment_amount_total{currency, kind}`, whose currencies are not known up front.
    metrics: Metrics,
}

impl Counters {
    pub(super) fn new(metrics: &Metrics) -> Self {
        metrics.record(|| Self {
            decisions: [Decision::Allow, Decision::Review, Decision::Block].map(|d| {
                (
                    d,
                    counter!("fraud_decisions_total", "decision" => d.as_str()),
                )
            }),
            rules: fraud::RULES
                .iter()
                .map(|rule| (*rule, counter!("fraud_rules_fired_total", "rule" => *rule)))
                .collect(),
            metrics: metrics.clone(),
        })
    }

    /// Money that moved, once its transaction committed: `kind` is `captured` or `refunded`,
    /// `amount` in the currency's minor units.
    pub(super) fn money(&self, kind: &'static str, currency: &str, amount: i64) {
        let Ok(amount) = u64::try_from(amount) else {
            return;
        };
        let currency = currency.to_owned();
        self.metrics.record(|| {
            counter!("payment_amount_total", "currency" => currency, "kind" => kind)
                .increment(amount)
        });
    }

    pub(super) fn record(&self, risk: &RiskAssessment) {
        for (decision, counter) in &self.decisions {
            if *decision == risk.decision {
                counter.increment(1);
            }
        }
        for reason in &risk.reasons {
            if let Some((_, counter)) = self.rules.iter().find(|(code, _)| *code == reason.code()) {
                counter.increment(1);
            }
        }
    }
}
