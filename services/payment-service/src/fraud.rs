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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use platform_config::{Env, FromEnv};
use platform_money::{Currency, Money};
use serde::{Deserialize, Serialize};

/// Every reason code, in the order reasons are reported (for pre-registering metrics).
pub const RULES: &[&str] = &[
    Reason::BlockedBin.code(),
    Reason::BlockedCountry.code(),
    Reason::AmountOverBlockLimit.code(),
    Reason::AmountOverReviewLimit.code(),
    Reason::AmountFarAboveHistory.code(),
    Reason::VelocityUser.code(),
    Reason::VelocityCard.code(),
    Reason::RecentDeclines.code(),
];

/// Fewer past payments than this say nothing about what is usual for the user (one or two
/// small first purchases would make any normal basket look like an outlier).
pub const MIN_HISTORY_PAYMENTS: u32 = 3;

/// The highest possible score.
const MAX_SCORE: u32 = 100;

/// A velocity window shorter than a minute measures bursts of retries, not behaviour; longer
/// than 30 days it is no longer "recent", and the counting queries get expensive.
const MIN_WINDOW: Duration = Duration::from_secs(60);
const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// The card issuing countries that can be blocked: ISO 3166-1 alpha-2, plus `XK` (Kosovo),
/// which is not in the standard but is what card networks and providers report for it.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE \
    BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD \
    CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM \
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF \
    GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
    ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME \
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA \
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM \
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI \
    SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK \
    TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI \
    VN VU WF WS XK YE YT ZA ZM ZW";

/// The fraud rules' settings, read from `FRAUD_*` variables by [`FraudConfig::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudConfig {
    /// `FRAUD_VELOCITY_WINDOW` (default 1h): how far back the service counts payments and
    /// declines for [`RiskInput`]. The engine itself only sees the counts.
    pub velocity_window: Duration,
    /// `FRAUD_MAX_PAYMENTS_PER_USER` (default 10): payments per user allowed in the window.
    pub max_payments_per_user: u32,
    /// `FRAUD_MAX_PAYMENTS_PER_CARD` (default 5): payments per card allowed in the window.
    pub max_payments_per_card: u32,
    /// `FRAUD_MAX_DECLINES` (default 3): declines per user tolerated in the window.
    pub max_declines: u32,
    /// `FRAUD_AMOUNT_LIMITS`: the largest amount (minor units) allowed per currency; above it
    /// the payment is blocked. A currency without an entry has no amount limit.
    pub block_limits: BTreeMap<Currency, i64>,
    /// `FRAUD_REVIEW_LIMITS`: the largest amount (minor units) per currency that passes
    /// without review.
    pub review_limits: BTreeMap<Currency, i64>,
    /// `FRAUD_HISTORY_MULTIPLIER` (default 10): an amount more than this many times the user's
    /// average payment is reviewed.
    pub history_multiplier: u32,
    /// `FRAUD_BLOCKED_BINS`: card BIN prefixes (6 to 8 digits) never accepted.
    pub blocked_bins: BTreeSet<String>,
    /// `FRAUD_BLOCKED_COUNTRIES`: card issuing countries (upper-case alpha-2) never accepted.
    pub blocked_countries: BTreeSet<String>,
    /// `FRAUD_REVIEW_SCORE` (default 50): a score at or above it is held for review.
    pub review_score: u8,
    /// `FRAUD_BLOCK_SCORE` (default 80): a score at or above it is blocked.
    pub block_score: u8,
}

impl Default for FraudConfig {
    /// The same values [`FraudConfig::from_env`] uses when nothing is set.
    fn default() -> Self {
        // EUR, USD and GBP are the currencies the shop prices in; €1,000 gets a second look
        // and €5,000 is beyond any basket the catalogue can produce legitimately.
        let limits = |amount: i64| -> BTreeMap<Currency, i64> {
            [
                Some(Currency::EUR),
                Some(Currency::USD),
                Currency::parse("GBP").ok(),
            ]
            .into_iter()
            .flatten()
            .map(|currency| (currency, amount))
            .collect()
        };
        Self {
            velocity_window: Duration::from_secs(3600),
            max_payments_per_user: 10,
            max_payments_per_card: 5,
            max_declines: 3,
            block_limits: limits(500_000),
            review_limits: limits(100_000),
            history_multiplier: 10,
            blocked_bins: BTreeSet::new(),
            blocked_countries: BTreeSet::new(),
            review_score: 50,
            block_score: 80,
        }
    }
}

impl FraudConfig {
    /// Reads every `FRAUD_*` variable. An unset variable takes its default; a malformed one is
    /// reported through `env` (so start-up fails listing every problem) and takes its default
    /// too, so that reading goes on to find the others. Never panics.
    pub fn from_env(env: &mut Env) -> Self {
        let defaults = Self::default();
        let velocity_window = env
            .optional_with(
                "FRAUD_VELOCITY_WINDOW",
                "a duration from 1m to 30d, such as 15m or 1h",
                |raw| Duration::from_env(raw).filter(|d| (MIN_WINDOW..=MAX_WINDOW).contains(d)),
            )
            .unwrap_or(defaults.velocity_window);
        // A maximum of 0 payments would refuse every payment: that is switching payments off,
        // not a fraud rule. Zero declines tolerated is a legitimate (strict) policy.
        let max_payments_per_user = env.in_range(
            "FRAUD_MAX_PAYMENTS_PER_USER",
            defaults.max_payments_per_user,
            1..=100_000,
        );
        let max_payments_per_card = env.in_range(
            "FRAUD_MAX_PAYMENTS_PER_CARD",
            defaults.max_payments_per_card,
            1..=100_000,
        );
        let max_declines = env.in_range("FRAUD_MAX_DECLINES", defaults.max_declines, 0..=10_000);
        let block_limits = env
            .optional_with("FRAUD_AMOUNT_LIMITS", LIMITS_EXPECTED, parse_limits)
            .unwrap_or(defaults.block_limits);
        let review_limits = env
            .optional_with("FRAUD_REVIEW_LIMITS", LIMITS_EXPECTED, parse_limits)
            .unwrap_or(defaults.review_limits);
        // 1× would flag every payment above the user's average, i.e. about half of them.
        let history_multiplier = env.in_range(
            "FRAUD_HISTORY_MULTIPLIER",
            defaults.history_multiplier,
            2..=1000,
        );
        let blocked_bins = env
            .optional_with(
                "FRAUD_BLOCKED_BINS",
                "a comma-separated list of card BIN prefixes of 6 to 8 digits",
                parse_bins,
            )
            .unwrap_or(defaults.blocked_bins);
        let blocked_countries = env
            .optional_with(
                "FRAUD_BLOCKED_COUNTRIES",
                "a comma-separated list of ISO 3166 alpha-2 country codes such as RU,KP",
                parse_countries,
            )
            .unwrap_or(defaults.blocked_countries);
        let review_score = env.in_range("FRAUD_REVIEW_SCORE", defaults.review_score, 1..=100);
        let block_score = env.in_range("FRAUD_BLOCK_SCORE", defaults.block_score, 1..=100);

        // Cross-field rules: settings that parse but cannot both hold, where one would
        // silently switch the other off.
        if review_score >= block_score {
            env.report(
                "FRAUD_REVIEW_SCORE",
                format!(
                    "a score below FRAUD_BLOCK_SCORE ({block_score}); otherwise nothing is ever reviewed"
                ),
            );
        }
        for (currency, review) in &review_limits {
            if let Some(block) = block_limits.get(currency)
                && review >= block
            {
                env.report(
                    "FRAUD_REVIEW_LIMITS",
                    format!(
                        "a {currency} limit below the FRAUD_AMOUNT_LIMITS one ({block}); \
                         otherwise nothing in {currency} is ever reviewed for its amount"
                    ),
                );
            }
        }

        Self {
            velocity_window,
            max_payments_per_user,
            max_payments_per_card,
            max_declines,
            block_limits,
            review_limits,
            history_multiplier,
            blocked_bins,
            blocked_countries,
            review_score,
            block_score,
        }
    }
}

const LIMITS_EXPECTED: &str = "a comma-separated list of CURRENCY:AMOUNT in minor units, \
    such as EUR:500000,JPY:50000000, each currency once (or none)";

/// The non-empty items of a comma-separated list.
fn list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `EUR:500000,JPY:50000000` → limits per currency; `none` → no limits at all (the only way to
/// switch the defaults off, since an empty variable counts as unset). A repeated currency is
/// refused rather than letting one entry silently win.
fn parse_limits(raw: &str) -> Option<BTreeMap<Currency, i64>> {
    if raw.eq_ignore_ascii_case("none") {
        return Some(BTreeMap::new());
    }
    let mut limits = BTreeMap::new();
    for entry in list(raw) {
        let (code, amount) = entry.split_once(':')?;
        let currency = Currency::parse(code).ok()?;
        let amount = amount.trim().parse::<i64>().ok().filter(|a| *a > 0)?;
        if limits.insert(currency, amount).is_some() {
            return None;
        }
    }
    (!limits.is_empty()).then_some(limits)
}

/// BINs are 6 digits (8 on newer cards); a shorter prefix would block whole card networks.
fn parse_bins(raw: &str) -> Option<BTreeSet<String>> {
    let bins = list(raw)
        .map(|bin| {
            ((6..=8).contains(&bin.len()) && bin.bytes().all(|b| b.is_ascii_digit()))
                .then(|| bin.to_owned())
        })
        .collect::<Option<BTreeSet<_>>>()?;
    (!bins.is_empty()).then_some(bins)
}

/// Country codes are checked against the real list: `UK` (for `GB`) is the classic mistake,
/// and a code that matches no card would silently block nothing.
fn parse_countries(raw: &str) -> Option<BTreeSet<String>> {
    let countries = list(raw)
        .map(|code| {
            let code = code.to_ascii_uppercase();
            (code.len() == 2 && COUNTRIES.split_ascii_whitespace().any(|c| c == code))
                .then_some(code)
        })
        .collect::<Option<BTreeSet<_>>>()?;
    (!countries.is_empty()).then_some(countries)
}

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

/// What to do with the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Send it to a provider.
    Allow,
    /// Hold it for a human (status `requires_review`).
    Review,
    /// Refuse it without contacting a provider (status `blocked`).
    Block,
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Review => "review",
            Self::Block => "block",
        }
    }
}

/// A rule that fired. Serialized as its [`code`](Reason::code), so stored assessments stay
/// readable and stable when messages are reworded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    BlockedBin,
    BlockedCountry,
    AmountOverBlockLimit,
    AmountOverReviewLimit,
    AmountFarAboveHistory,
    VelocityUser,
    VelocityCard,
    RecentDeclines,
}

impl Reason {
    /// Every reason, in the order [`assess`] reports them.
    pub const ALL: [Reason; 8] = [
        Self::BlockedBin,
        Self::BlockedCountry,
        Self::AmountOverBlockLimit,
        Self::AmountOverReviewLimit,
        Self::AmountFarAboveHistory,
        Self::VelocityUser,
        Self::VelocityCard,
        Self::RecentDeclines,
    ];

    /// The stable code: what is stored, returned and used as a metric label.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::BlockedBin => "blocked_bin",
            Self::BlockedCountry => "blocked_country",
            Self::AmountOverBlockLimit => "amount_over_block_limit",
            Self::AmountOverReviewLimit => "amount_over_review_limit",
            Self::AmountFarAboveHistory => "amount_far_above_history",
            Self::VelocityUser => "velocity_user",
            Self::VelocityCard => "velocity_card",
            Self::RecentDeclines => "recent_declines",
        }
    }

    /// For people: the support agent reviewing the payment, the admin UI.
    pub fn message(&self) -> &'static str {
        match self {
            Self::BlockedBin => "the card's BIN is on the blocked list",
            Self::BlockedCountry => "the card was issued in a blocked country",
            Self::AmountOverBlockLimit => "the amount is above the maximum for its currency",
            Self::AmountOverReviewLimit => "the amount is above the review limit for its currency",
            Self::AmountFarAboveHistory => "the amount is far above the user's average payment",
            Self::VelocityUser => "more payments by this user in the velocity window than allowed",
            Self::VelocityCard => {
                "more payments with this card in the velocity window than allowed"
            }
            Self::RecentDeclines => {
                "too many declined payments by this user in the velocity window"
            }
        }
    }

    /// What the rule adds to the score (see the table in the module documentation).
    pub const fn points(&self) -> u8 {
        match self {
            // Hard rules block by themselves; their points only make them show in the score.
            Self::BlockedBin | Self::BlockedCountry | Self::AmountOverBlockLimit => 40,
            // Each alone reaches the default review score (50).
            Self::AmountOverReviewLimit | Self::AmountFarAboveHistory | Self::VelocityUser => 50,
            // Card testing: many attempts on one card, or many declines, weigh a little more.
            Self::VelocityCard | Self::RecentDeclines => 60,
        }
    }

    /// Whether the rule blocks the payment whatever the score.
    pub const fn is_hard(&self) -> bool {
        matches!(
            self,
            Self::BlockedBin | Self::BlockedCountry | Self::AmountOverBlockLimit
        )
    }
}

/// The outcome of [`assess`]: stored with the payment and returned as `risk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskAssessment {
    /// 0 to 100: the sum of the points of every rule that fired, capped at 100.
    pub score: u8,
    pub decision: Decision,
    /// Every rule that fired, in the order of [`Reason::ALL`].
    pub reasons: Vec<Reason>,
}

/// Scores one payment attempt. Pure and deterministic; see the module documentation for the
/// rules, their weights and how limits compare.
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

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::EUR).unwrap()
    }

    fn currency(code: &str) -> Currency {
        Currency::parse(code).unwrap()
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

    fn read_config(pairs: &[(&str, &str)]) -> FraudConfig {
        let mut env = Env::from_pairs(pairs.iter().copied());
        let config = FraudConfig::from_env(&mut env);
        assert_eq!(env.issues(), &[], "{pairs:?}");
        config
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

    #[test]
    fn codes_are_stable_and_serialize_as_codes() {
        assert_eq!(
            RULES,
            [
                "blocked_bin",
                "blocked_country",
                "amount_over_block_limit",
                "amount_over_review_limit",
                "amount_far_above_history",
                "velocity_user",
                "velocity_card",
                "recent_declines",
            ]
        );
        assert_eq!(Reason::ALL.map(|r| r.code()), RULES);
        for reason in Reason::ALL {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.code()));
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), reason);
            assert!(!reason.message().is_empty());
            assert!(reason.points() > 0 && u32::from(reason.points()) <= MAX_SCORE);
        }
        for decision in [Decision::Allow, Decision::Review, Decision::Block] {
            let json = serde_json::to_string(&decision).unwrap();
            assert_eq!(json, format!("\"{}\"", decision.as_str()));
        }
        let assessment = RiskAssessment {
            score: 50,
            decision: Decision::Review,
            reasons: vec![Reason::VelocityUser],
        };
        let json = serde_json::to_string(&assessment).unwrap();
        assert_eq!(
            json,
            r#"{"score":50,"decision":"review","reasons":["velocity_user"]}"#
        );
        assert_eq!(
            serde_json::from_str::<RiskAssessment>(&json).unwrap(),
            assessment
        );
        assert!(serde_json::from_str::<Reason>("\"VelocityUser\"").is_err());
    }

    #[test]
    fn defaults_apply_when_unset() {
        let mut env = Env::from_pairs(Vec::<(String, String)>::new());
        let config = FraudConfig::from_env(&mut env);
        assert_eq!(env.issues(), &[]);
        assert_eq!(config, FraudConfig::default());
        assert_eq!(config.velocity_window, Duration::from_secs(3600));
        assert_eq!(
            (
                config.max_payments_per_user,
                config.max_payments_per_card,
                config.max_declines,
                config.history_multiplier,
                config.review_score,
                config.block_score
            ),
            (10, 5, 3, 10, 50, 80)
        );
        for code in ["EUR", "USD", "GBP"] {
            assert_eq!(config.review_limits.get(&currency(code)), Some(&100_000));
            assert_eq!(config.block_limits.get(&currency(code)), Some(&500_000));
        }
        assert_eq!(config.review_limits.len(), 3);
        assert_eq!(config.block_limits.len(), 3);
        assert!(config.blocked_bins.is_empty() && config.blocked_countries.is_empty());
    }

    #[test]
    fn valid_values_are_parsed() {
        let config = read_config(&[
            ("FRAUD_VELOCITY_WINDOW", "15m"),
            ("FRAUD_MAX_PAYMENTS_PER_USER", "20"),
            ("FRAUD_MAX_PAYMENTS_PER_CARD", "3"),
            ("FRAUD_MAX_DECLINES", "0"),
            ("FRAUD_AMOUNT_LIMITS", "eur:900000, JPY:50000000 ,"),
            ("FRAUD_REVIEW_LIMITS", "EUR:200000,USD:150000"),
            ("FRAUD_HISTORY_MULTIPLIER", "5"),
            ("FRAUD_BLOCKED_BINS", "424242,12345678,424242"),
            ("FRAUD_BLOCKED_COUNTRIES", "kp, RU ,XK"),
            ("FRAUD_REVIEW_SCORE", "40"),
            ("FRAUD_BLOCK_SCORE", "90"),
        ]);
        assert_eq!(config.velocity_window, Duration::from_secs(900));
        assert_eq!(config.max_payments_per_user, 20);
        assert_eq!(config.max_payments_per_card, 3);
        assert_eq!(config.max_declines, 0);
        assert_eq!(
            config.block_limits,
            BTreeMap::from([(Currency::EUR, 900_000), (currency("JPY"), 50_000_000)])
        );
        assert_eq!(
            config.review_limits,
            BTreeMap::from([(Currency::EUR, 200_000), (Currency::USD, 150_000)])
        );
        assert_eq!(config.history_multiplier, 5);
        assert_eq!(
            config.blocked_bins,
            BTreeSet::from(["12345678".to_owned(), "424242".to_owned()])
        );
        assert_eq!(
            config.blocked_countries,
            BTreeSet::from(["KP".to_owned(), "RU".to_owned(), "XK".to_owned()])
        );
        assert_eq!((config.review_score, config.block_score), (40, 90));
        let none = read_config(&[
            ("FRAUD_AMOUNT_LIMITS", "NONE"),
            ("FRAUD_REVIEW_LIMITS", "none"),
        ]);
        assert!(none.block_limits.is_empty() && none.review_limits.is_empty());
    }

    #[test]
    fn each_invalid_value_is_reported_with_its_name_and_falls_back_to_the_default() {
        let cases: &[(&str, &[&str])] = &[
            (
                "FRAUD_VELOCITY_WINDOW",
                &["soon", "0s", "30s", "31d", "-1h"],
            ),
            ("FRAUD_MAX_PAYMENTS_PER_USER", &["0", "ten", "-1", "100001"]),
            ("FRAUD_MAX_PAYMENTS_PER_CARD", &["0", "5.5"]),
            ("FRAUD_MAX_DECLINES", &["many", "-1", "10001"]),
            (
                "FRAUD_AMOUNT_LIMITS",
                &[
                    "EUR",
                    "EUR:",
                    "EUR:0",
                    "EUR:-5",
                    "EUR:1.5",
                    "EURO:100",
                    "XXX:100",
                    "EUR:100,eur:200",
                    ",",
                    "500000",
                ],
            ),
            ("FRAUD_REVIEW_LIMITS", &["USD:abc", "USD 100"]),
            ("FRAUD_HISTORY_MULTIPLIER", &["0", "1", "x", "1001"]),
            (
                "FRAUD_BLOCKED_BINS",
                &["12345", "123456789", "4242ab", "424242,abc", ","],
            ),
            (
                "FRAUD_BLOCKED_COUNTRIES",
                &["UK", "USA", "1A", "R", "RU,ZZ", ","],
            ),
            ("FRAUD_REVIEW_SCORE", &["0", "101", "high"]),
            ("FRAUD_BLOCK_SCORE", &["0", "101", "-80"]),
        ];
        for (variable, values) in cases {
            for value in *values {
                let mut env = Env::from_pairs([(*variable, *value)]);
                let config = FraudConfig::from_env(&mut env);
                let names: Vec<_> = env.issues().iter().map(|i| i.variable.as_str()).collect();
                assert_eq!(names, [*variable], "{variable}={value:?}");
                assert_eq!(env.issues()[0].found.as_deref(), Some(*value));
                assert_eq!(config, FraudConfig::default(), "{variable}={value:?}");
            }
        }
    }

    #[test]
    fn contradictory_settings_are_reported() {
        let mut env = Env::from_pairs([("FRAUD_REVIEW_SCORE", "80"), ("FRAUD_BLOCK_SCORE", "80")]);
        FraudConfig::from_env(&mut env);
        let issues = env.issues();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].variable, "FRAUD_REVIEW_SCORE");
        assert!(issues[0].expected.contains("below FRAUD_BLOCK_SCORE (80)"));

        // A review limit at or above the block limit of the same currency.
        let mut env = Env::from_pairs([("FRAUD_REVIEW_LIMITS", "EUR:500000,USD:1000")]);
        FraudConfig::from_env(&mut env);
        let issues = env.issues();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].variable, "FRAUD_REVIEW_LIMITS");
        assert!(issues[0].expected.contains("EUR"));

        // A review limit for a currency without a block limit is fine.
        read_config(&[("FRAUD_REVIEW_LIMITS", "CHF:100000")]);

        // Several problems are all reported, in reading order.
        let mut env = Env::from_pairs([
            ("FRAUD_MAX_DECLINES", "x"),
            ("FRAUD_BLOCKED_COUNTRIES", "UK"),
            ("FRAUD_BLOCK_SCORE", "1000"),
        ]);
        FraudConfig::from_env(&mut env);
        let names: Vec<_> = env.issues().iter().map(|i| i.variable.as_str()).collect();
        assert_eq!(
            names,
            [
                "FRAUD_MAX_DECLINES",
                "FRAUD_BLOCKED_COUNTRIES",
                "FRAUD_BLOCK_SCORE"
            ]
        );
    }

    #[test]
    fn the_country_list_is_well_formed() {
        let codes: Vec<_> = COUNTRIES.split_ascii_whitespace().collect();
        assert_eq!(codes.len(), 250); // 249 ISO 3166-1 codes + XK
        assert!(
            codes.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
        for code in ["GB", "US", "DE", "JP", "RU", "KP"] {
            assert!(codes.contains(&code), "{code}");
        }
    }
}
