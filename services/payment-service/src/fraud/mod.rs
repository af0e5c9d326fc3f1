//! Fraud prevention: a small, deterministic rules engine that scores a payment before it
//! reaches a provider.
//!
//! The service gathers the facts ([`RiskInput`]: counts from its database, the card's BIN and
//! issuing country as the provider reports them); [`assess`] does no I/O, so the same input
//! always gives the same [`RiskAssessment`] and every decision can be explained afterwards from
//! its reasons.
//!
//! # Rules
//!
//! Each rule that fires adds its points; the score is the sum, capped at 100. Hard rules also
//! force [`Decision::Block`] whatever the score: they are policy ("we never take cards from
//! this BIN"), not an estimate of risk, so they must not depend on how the weights add up.
//! Their points are deliberately below the block threshold so that the score keeps measuring
//! behaviour, and a hard block with a low score is visibly a policy block.
//!
//! | code                       | fires when                                                  | points | hard |
//! |----------------------------|-------------------------------------------------------------|-------:|------|
//! | `blocked_bin`              | the card's BIN starts with a `FRAUD_BLOCKED_BINS` prefix    |     40 | yes  |
//! | `blocked_country`          | the card's country is in `FRAUD_BLOCKED_COUNTRIES`          |     40 | yes  |
//! | `amount_over_block_limit`  | amount > the `FRAUD_AMOUNT_LIMITS` limit of its currency    |     40 | yes  |
//! | `amount_over_review_limit` | amount > the `FRAUD_REVIEW_LIMITS` limit of its currency    |     50 |      |
//! | `amount_far_above_history` | ≥ 3 past payments and amount > multiplier × their average   |     50 |      |
//! | `velocity_user`            | this payment is number > `FRAUD_MAX_PAYMENTS_PER_USER`      |     50 |      |
//! | `velocity_card`            | this payment is number > `FRAUD_MAX_PAYMENTS_PER_CARD`      |     60 |      |
//! | `recent_declines`          | declines in the window > `FRAUD_MAX_DECLINES`               |     60 |      |
//!
//! Reasons are listed in this order (the order of [`Reason::ALL`] and [`RULES`]).
//!
//! With the default thresholds (review at 50, block at 80) any one soft rule alone sends the
//! payment to review, and any two together block it: two independent signals at once are
//! what card testing and account takeover look like.
//!
//! # Comparisons
//!
//! Every configured limit is the largest value still allowed: a rule fires only when the value
//! is strictly greater (`>`). With `FRAUD_MAX_PAYMENTS_PER_USER=10` the 10th payment in the
//! window passes and the 11th trips the rule; since [`RiskInput`] counts the payments made
//! *before* this one, that is `recent_user_payments + 1 > 10`. Declines are past events (this
//! payment has not been declined), so `FRAUD_MAX_DECLINES=3` tolerates 3 and the 4th trips it.
//! An amount equal to its limit passes; one minor unit more trips it.
//!
//! Score thresholds are the opposite kind of number, a level to reach: a score equal to
//! `FRAUD_BLOCK_SCORE` blocks and one equal to `FRAUD_REVIEW_SCORE` is reviewed (`>=`).

mod config;
mod engine;
mod reasons;

pub use config::FraudConfig;
pub use engine::{History, MIN_HISTORY_PAYMENTS, RiskInput, assess};
pub use reasons::{Decision, RULES, Reason, RiskAssessment};

/// The highest possible score.
const MAX_SCORE: u32 = 100;

/// Helpers shared by the engine's and the configuration's tests.
#[cfg(test)]
mod test_support {
    use platform_config::Env;
    use platform_money::Currency;

    use super::FraudConfig;

    pub(super) fn currency(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    pub(super) fn read_config(pairs: &[(&str, &str)]) -> FraudConfig {
        let mut env = Env::from_pairs(pairs.iter().copied());
        let config = FraudConfig::from_env(&mut env);
        assert_eq!(env.issues(), &[], "{pairs:?}");
        config
    }
}
