//! The engine proper: the facts about a payment in, an assessment out. No I/O, so the same
//! facts always give the same answer and any decision can be replayed from them.

use std::collections::BTreeMap;

use platform_money::{Currency, Money};

use super::{Decision, FraudConfig, MAX_SCORE, Reason, RiskAssessment};

/// Fewer past payments than this say nothing about what is usual for the user (one or two
/// small first purchases would make any normal basket look like an outlier).
pub const MIN_HISTORY_PAYMENTS: u32 = 3;

/// The user's past successful payments, in the currency of the payment being assessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub count: u32,
    /// Minor units.
    pub average_amount: i64,
}

/// The facts about one payment attempt, gathered by the service from its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskInput {
    pub amount: Money,
    /// The user's payments in the velocity window *before* this one.
    pub recent_user_payments: u32,
    /// This card's payments in the velocity window *before* this one.
    pub recent_card_payments: u32,
    /// The user's declined payments in the velocity window.
    pub recent_user_declines: u32,
    /// `None` when the user has no payments in this currency.
    pub user_history: Option<History>,
    /// The card's first 6 to 8 digits, when the provider reports them.
    pub card_bin: Option<String>,
    /// The card's issuing country (ISO 3166 alpha-2), when the provider reports it.
    pub card_country: Option<String>,
}

/// Scores one payment attempt. Pure and deterministic; see the [module documentation](super)
/// for the rules, their weights and how limits compare.
pub fn assess(config: &FraudConfig, input: &RiskInput) -> RiskAssessment {
    let amount = input.amount.amount();
    let currency = input.amount.currency();
    // `limit` is the largest amount allowed; only a strictly greater amount fires.
    let over =
        |limits: &BTreeMap<Currency, i64>| limits.get(&currency).is_some_and(|l| amount > *l);

    let fired = |reason: Reason| -> bool {
        match reason {
            Reason::BlockedBin => input.card_bin.as_deref().is_some_and(|bin| {
                let bin = bin.trim();
                config
                    .blocked_bins
                    .iter()
                    .any(|p| bin.starts_with(p.as_str()))
            }),
            Reason::BlockedCountry => input.card_country.as_deref().is_some_and(|country| {
                config
                    .blocked_countries
                    .contains(&country.trim().to_ascii_uppercase())
            }),
            Reason::AmountOverBlockLimit => over(&config.block_limits),
            Reason::AmountOverReviewLimit => over(&config.review_limits),
            Reason::AmountFarAboveHistory => input.user_history.is_some_and(|history| {
                // A non-positive average can only come from bad data: no basis to compare.
                // i128 so that a huge multiplier × average cannot overflow.
                history.count >= MIN_HISTORY_PAYMENTS
                    && history.average_amount > 0
                    && i128::from(amount)
                        > i128::from(config.history_multiplier) * i128::from(history.average_amount)
            }),
            // The counts exclude this payment, which is number `count + 1` in the window.
            Reason::VelocityUser => {
                input.recent_user_payments.saturating_add(1) > config.max_payments_per_user
            }
            Reason::VelocityCard => {
                input.recent_card_payments.saturating_add(1) > config.max_payments_per_card
            }
            Reason::RecentDeclines => input.recent_user_declines > config.max_declines,
        }
    };

    let reasons: Vec<Reason> = Reason::ALL.into_iter().filter(|r| fired(*r)).collect();
    let total: u32 = reasons.iter().map(|r| u32::from(r.points())).sum();
    // `min` keeps it within u8, so the fallback is never used.
    let score = u8::try_from(total.min(MAX_SCORE)).unwrap_or(100);
    let decision = if reasons.iter().any(Reason::is_hard) || score >= config.block_score {
        Decision::Block
    } else if score >= config.review_score {
        Decision::Review
    } else {
        Decision::Allow
    };
    RiskAssessment {
        score,
        decision,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::test_support::{currency, read_config};

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::EUR).unwrap()
    }

    /// A payment no rule objects to.
    fn quiet() -> RiskInput {
        RiskInput {
            amount: eur(5_000),
            recent_user_payments: 0,
            recent_card_payments: 0,
            recent_user_declines: 0,
            user_history: None,
            card_bin: Some("411111".into()),
            card_country: Some("DE".into()),
        }
    }

    fn reasons(config: &FraudConfig, input: &RiskInput) -> Vec<Reason> {
        assess(config, input).reasons
    }

    #[test]
    fn a_quiet_payment_is_allowed_with_no_reasons() {
        let assessment = assess(&FraudConfig::default(), &quiet());
        assert_eq!(
            assessment,
            RiskAssessment {
                score: 0,
                decision: Decision::Allow,
                reasons: vec![]
            }
        );
    }

    #[test]
    fn velocity_user_trips_on_the_payment_after_the_limit() {
        let config = FraudConfig::default(); // 10 per window
        let mut input = quiet();
        input.recent_user_payments = 9; // this is the 10th: allowed
        assert_eq!(reasons(&config, &input), []);
        input.recent_user_payments = 10; // the 11th
        let assessment = assess(&config, &input);
        assert_eq!(assessment.reasons, [Reason::VelocityUser]);
        assert_eq!(assessment.score, 50);
        assert_eq!(assessment.decision, Decision::Review);
        input.recent_user_payments = u32::MAX; // no overflow
        assert_eq!(reasons(&config, &input), [Reason::VelocityUser]);
    }

    #[test]
    fn velocity_card_trips_on_the_payment_after_the_limit() {
        let config = FraudConfig::default(); // 5 per window
        let mut input = quiet();
        input.recent_card_payments = 4;
        assert_eq!(reasons(&config, &input), []);
        input.recent_card_payments = 5;
        let assessment = assess(&config, &input);
        assert_eq!(assessment.reasons, [Reason::VelocityCard]);
        assert_eq!(
            (assessment.score, assessment.decision),
            (60, Decision::Review)
        );
    }

    #[test]
    fn recent_declines_trip_above_the_tolerated_number() {
        let config = FraudConfig::default(); // 3 tolerated
        let mut input = quiet();
        input.recent_user_declines = 3;
        assert_eq!(reasons(&config, &input), []);
        input.recent_user_declines = 4;
        let assessment = assess(&config, &input);
        assert_eq!(assessment.reasons, [Reason::RecentDeclines]);
        assert_eq!(
            (assessment.score, assessment.decision),
            (60, Decision::Review)
        );
        let strict = read_config(&[("FRAUD_MAX_DECLINES", "0")]);
        input.recent_user_declines = 1;
        assert_eq!(reasons(&strict, &input), [Reason::RecentDeclines]);
    }

    #[test]
    fn review_limit_trips_one_minor_unit_above_it() {
        let config = FraudConfig::default(); // €1,000.00
        let mut input = quiet();
        input.amount = eur(100_000);
        assert_eq!(reasons(&config, &input), []);
        input.amount = eur(100_001);
        let assessment = assess(&config, &input);
        assert_eq!(assessment.reasons, [Reason::AmountOverReviewLimit]);
        assert_eq!(
            (assessment.score, assessment.decision),
            (50, Decision::Review)
        );
    }

    #[test]
    fn block_limit_trips_one_minor_unit_above_it() {
        // No review limits, so the block rule is seen alone.
        let config = read_config(&[("FRAUD_REVIEW_LIMITS", "none")]);
        let mut input = quiet();
        input.amount = eur(500_000);
        assert_eq!(reasons(&config, &input), []);
        input.amount = eur(500_001);
        let assessment = assess(&config, &input);
        assert_eq!(assessment.reasons, [Reason::AmountOverBlockLimit]);
        assert_eq!(
            (assessment.score, assessment.decision),
            (40, Decision::Block)
        );
        // With the default review limit too, both are reported.
        assert_eq!(
            reasons(&FraudConfig::default(), &input),
            [Reason::AmountOverBlockLimit, Reason::AmountOverReviewLimit]
        );
    }

    #[test]
    fn amount_limits_are_per_currency() {
        let config = read_config(&[
            ("FRAUD_AMOUNT_LIMITS", "EUR:500000,JPY:50000000"),
            ("FRAUD_REVIEW_LIMITS", "none"),
        ]);
        let jpy = currency("JPY");
        let mut input = quiet();
        // Far above the EUR number, within the JPY limit: compared with the JPY limit.
        input.amount = Money::new(50_000_000, jpy).unwrap();
        assert_eq!(reasons(&config, &input), []);
        input.amount = Money::new(50_000_001, jpy).unwrap();
        assert_eq!(reasons(&config, &input), [Reason::AmountOverBlockLimit]);
        // USD is not configured here, CHF not by default: no amount rule at all.
        input.amount = Money::new(i64::MAX, Currency::USD).unwrap();
        assert_eq!(reasons(&config, &input), []);
        input.amount = Money::new(i64::MAX, currency("CHF")).unwrap();
        assert_eq!(reasons(&FraudConfig::default(), &input), []);
        // The defaults cover GBP.
        input.amount = Money::new(100_001, currency("GBP")).unwrap();
        assert_eq!(
            reasons(&FraudConfig::default(), &input),
            [Reason::AmountOverReviewLimit]
        );
    }

    #[test]
    fn history_rule_trips_above_the_multiple_of_the_average() {
        let config = FraudConfig::default(); // 10×
        let mut input = quiet();
        input.user_history = Some(History {
            count: 3,
            average_amount: 1_000,
        });
        input.amount = eur(10_000);
        assert_eq!(reasons(&config, &input), []);
        input.amount = eur(10_001);
        let assessment = assess(&config, &input);
        assert_eq!(assessment.reasons, [Reason::AmountFarAboveHistory]);
        assert_eq!(
            (assessment.score, assessment.decision),
            (50, Decision::Review)
        );
    }

    #[test]
    fn history_rule_needs_three_past_payments_and_a_real_average() {
        let config = FraudConfig::default();
        let mut input = quiet();
        input.amount = eur(90_000);
        for (count, average, fires) in [
            (0, 1_000, false),
            (2, 1_000, false),
            (3, 1_000, true),
            (500, 1_000, true),
            (10, 0, false),
            (10, -5, false),
        ] {
            input.user_history = Some(History {
                count,
                average_amount: average,
            });
            assert_eq!(
                reasons(&config, &input).contains(&Reason::AmountFarAboveHistory),
                fires,
                "{count} payments averaging {average}"
            );
        }
        input.user_history = None;
        assert_eq!(reasons(&config, &input), []);
        // No overflow with extreme values.
        let wide = read_config(&[("FRAUD_HISTORY_MULTIPLIER", "1000")]);
        input.amount = Money::new(i64::MAX, currency("CHF")).unwrap();
        input.user_history = Some(History {
            count: 3,
            average_amount: i64::MAX,
        });
        assert_eq!(reasons(&wide, &input), []);
    }

    #[test]
    fn blocked_bins_match_by_prefix() {
        let config = read_config(&[("FRAUD_BLOCKED_BINS", "424242, 55555555")]);
        let mut input = quiet();
        for (bin, fires) in [
            ("424241", false),
            ("424242", true),
            ("42424299", true), // 8-digit BIN under a blocked 6-digit prefix
            (" 424242 ", true), // as some providers pad it
            ("555555", false),  // too short to tell against an 8-digit prefix
            ("55555554", false),
            ("55555555", true),
        ] {
            input.card_bin = Some(bin.into());
            let expected: &[Reason] = if fires { &[Reason::BlockedBin] } else { &[] };
            assert_eq!(reasons(&config, &input), expected, "{bin}");
        }
        input.card_bin = None;
        assert_eq!(reasons(&config, &input), []);
    }

    #[test]
    fn blocked_countries_match_in_any_case() {
        let config = read_config(&[("FRAUD_BLOCKED_COUNTRIES", "ru,KP")]);
        let mut input = quiet();
        for (country, fires) in [("DE", false), ("RU", true), ("kp", true), ("RUS", false)] {
            input.card_country = Some(country.into());
            let expected: &[Reason] = if fires {
                &[Reason::BlockedCountry]
            } else {
                &[]
            };
            assert_eq!(reasons(&config, &input), expected, "{country}");
        }
        input.card_country = None;
        assert_eq!(reasons(&config, &input), []);
    }

    #[test]
    fn hard_rules_block_whatever_the_score() {
        // A high block score: no sum of points could reach it.
        let config = read_config(&[
            ("FRAUD_BLOCKED_BINS", "424242"),
            ("FRAUD_BLOCKED_COUNTRIES", "RU"),
            ("FRAUD_REVIEW_SCORE", "99"),
            ("FRAUD_BLOCK_SCORE", "100"),
            ("FRAUD_REVIEW_LIMITS", "none"),
        ]);
        let mut bin = quiet();
        bin.card_bin = Some("424242".into());
        let mut country = quiet();
        country.card_country = Some("RU".into());
        let mut amount = quiet();
        amount.amount = eur(500_001);
        for input in [bin, country, amount] {
            let assessment = assess(&config, &input);
            assert_eq!(assessment.score, 40, "{input:?}");
            assert_eq!(assessment.decision, Decision::Block, "{input:?}");
        }
        // The same low score without a hard rule is allowed.
        let mut soft = quiet();
        soft.recent_user_payments = 10;
        assert_eq!(assess(&config, &soft).decision, Decision::Allow);
    }

    #[test]
    fn points_add_up_and_cap_at_100() {
        let config = read_config(&[
            ("FRAUD_BLOCKED_BINS", "424242"),
            ("FRAUD_BLOCKED_COUNTRIES", "RU"),
        ]);
        // 40 + 40: the sum, not the maximum.
        let mut input = quiet();
        input.card_bin = Some("424242".into());
        input.card_country = Some("RU".into());
        assert_eq!(assess(&config, &input).score, 80);
        // 40 + 50.
        let mut input = quiet();
        input.card_bin = Some("424242".into());
        input.recent_user_payments = 10;
        assert_eq!(assess(&config, &input).score, 90);
        // Two soft rules, 50 + 60 = 110: capped, and blocked by the score alone.
        let mut input = quiet();
        input.recent_user_payments = 10;
        input.recent_card_payments = 5;
        let assessment = assess(&config, &input);
        assert_eq!(
            assessment.reasons,
            [Reason::VelocityUser, Reason::VelocityCard]
        );
        assert_eq!(
            (assessment.score, assessment.decision),
            (100, Decision::Block)
        );
    }

    #[test]
    fn every_rule_at_once_is_reported_in_order() {
        let config = read_config(&[
            ("FRAUD_BLOCKED_BINS", "424242"),
            ("FRAUD_BLOCKED_COUNTRIES", "RU"),
        ]);
        let input = RiskInput {
            amount: eur(1_000_000),
            recent_user_payments: 50,
            recent_card_payments: 50,
            recent_user_declines: 50,
            user_history: Some(History {
                count: 10,
                average_amount: 1_000,
            }),
            card_bin: Some("42424242".into()),
            card_country: Some("ru".into()),
        };
        let assessment = assess(&config, &input);
        assert_eq!(assessment.reasons, Reason::ALL);
        assert_eq!(
            (assessment.score, assessment.decision),
            (100, Decision::Block)
        );
        // Deterministic.
        assert_eq!(assess(&config, &input), assessment);
    }

    #[test]
    fn score_thresholds_are_reached_at_equality() {
        let mut input = quiet();
        input.recent_user_payments = 10; // 50 points
        let at = read_config(&[("FRAUD_REVIEW_SCORE", "50")]);
        assert_eq!(assess(&at, &input).decision, Decision::Review);
        let above = read_config(&[("FRAUD_REVIEW_SCORE", "51")]);
        assert_eq!(assess(&above, &input).decision, Decision::Allow);
        let block_at = read_config(&[("FRAUD_REVIEW_SCORE", "10"), ("FRAUD_BLOCK_SCORE", "50")]);
        assert_eq!(assess(&block_at, &input).decision, Decision::Block);
    }
}
