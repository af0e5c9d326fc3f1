//! What an assessment says: the decision and the reasons behind it. Their codes are stored,
//! returned and used as metric labels, so they are kept stable here, apart from how they are
//! computed.

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
    /// Every reason, in the order [`assess`](super::assess) reports them.
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

    /// What the rule adds to the score (see the table in the [module documentation](super)).
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

/// The outcome of [`assess`](super::assess): stored with the payment and returned as `risk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskAssessment {
    /// 0 to 100: the sum of the points of every rule that fired, capped at 100.
    pub score: u8,
    pub decision: Decision,
    /// Every rule that fired, in the order of [`Reason::ALL`].
    pub reasons: Vec<Reason>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::MAX_SCORE;

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
}
