//! The rules' settings: every `FRAUD_*` variable with its default, its bounds, and the
//! cross-field checks, so that a misconfiguration fails start-up instead of silently switching
//! a rule off.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use platform_config::{Env, FromEnv};
use platform_money::Currency;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::test_support::{currency, read_config};

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
