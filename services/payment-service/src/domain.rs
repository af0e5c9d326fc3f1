//! The payment domain: ids, the card token, the payment state machine. Plain types whose
//! constructors enforce every rule; no SQL and no HTTP here.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

pub use platform_money::{Currency, Money, MoneyError};

/// The current time at the precision both backends store (PostgreSQL keeps microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A payment's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentId(Uuid);

impl PaymentId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub use platform_money::{CardToken, TokenError};

/// How a payment came to be: for an order, by the checkout saga (refunded through the order,
/// so the order's state and the stock agree), or a direct charge (`POST /api/v1/payments`,
/// switched off with `DIRECT_PAYMENTS=false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentSource {
    Order,
    Direct,
}

impl PaymentSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Direct => "direct",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Order, Self::Direct]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// What the provider tells us about the card.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CardInfo {
    /// `visa`, `mastercard`, … as the provider names it.
    pub brand: String,
    pub last4: String,
}

/// Where a payment is. Transitions are explicit (see [`PaymentStatus::can_become`]).
/// Stored as its snake_case name (the `status` column); a row holding any other word fails to
/// load ([`platform_db::UnknownValue`]).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    sea_orm::DeriveValueType,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(
    value_type = "String",
    from_str = "PaymentStatus::from_db",
    to_str = "PaymentStatus::as_str"
)]
pub enum PaymentStatus {
    Pending,
    Authorized,
    Captured,
    PartiallyRefunded,
    Refunded,
    Failed,
    /// Stopped by the fraud rules before reaching a provider.
    Blocked,
    /// Held by the fraud rules or the provider for a human to decide.
    RequiresReview,
    /// Sent to a provider whose answer never arrived (a timeout, a broken connection): the
    /// money may or may not be taken. Resolved by asking that provider again under the same
    /// key, by its webhook, or by the reconciler; never by charging elsewhere.
    Unknown,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 9] = [
        Self::Pending,
        Self::Authorized,
        Self::Captured,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::Failed,
        Self::Blocked,
        Self::RequiresReview,
        Self::Unknown,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
            Self::RequiresReview => "requires_review",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// The stored `status` column, or what it holds instead of a status.
    pub fn from_db(raw: &str) -> Result<Self, platform_db::UnknownValue> {
        Self::parse(raw).ok_or_else(|| platform_db::UnknownValue {
            what: "payment status",
            found: raw.to_owned(),
        })
    }

    /// The state machine: `pending → authorized → captured → (partially_)refunded`;
    /// `pending`/`authorized`/`requires_review` may fail; review resolves to authorized,
    /// captured or failed (by the provider), or to pending when an administrator approves a
    /// payment the fraud rules held (it then goes to a provider); `pending → unknown` when the provider's answer is lost, and
    /// `unknown` resolves to whatever the provider says; `blocked`, `failed` and `refunded`
    /// are final.
    pub fn can_become(self, to: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, to),
            (
                Pending,
                Authorized | Captured | Failed | Blocked | RequiresReview | Unknown
            ) | (
                Unknown,
                Pending | Authorized | Captured | Failed | RequiresReview
            ) | (Authorized, Captured | Failed)
                | (
                    RequiresReview,
                    Pending | Unknown | Authorized | Captured | Failed
                )
                | (Captured, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }

    /// Whether money was taken (so it can be refunded).
    pub fn is_captured(self) -> bool {
        matches!(
            self,
            Self::Captured | Self::PartiallyRefunded | Self::Refunded
        )
    }
}

/// Where a refund is: `requested` while the provider has not answered, `unknown` once its
/// answer was lost (asked again, like `requested` rows left behind), then what the provider
/// said: `succeeded`, or `pending` (it accepted and will settle later). A refused refund leaves
/// no row. Stored by name; an unknown word fails to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sea_orm::DeriveValueType)]
#[sea_orm(
    value_type = "String",
    from_str = "RefundStatus::from_db",
    to_str = "RefundStatus::as_str"
)]
pub enum RefundStatus {
    /// Sent to the provider; no answer yet.
    Requested,
    /// The provider's answer was lost; asked again.
    Unknown,
    /// The provider refunded.
    Succeeded,
    /// The provider accepted; the money moves later.
    Pending,
}

impl RefundStatus {
    /// Its stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Unknown => "unknown",
            Self::Succeeded => "succeeded",
            Self::Pending => "pending",
        }
    }

    /// The stored `status` column, or what it holds instead of a refund status.
    pub fn from_db(raw: &str) -> Result<Self, platform_db::UnknownValue> {
        [
            Self::Requested,
            Self::Unknown,
            Self::Succeeded,
            Self::Pending,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
        .ok_or_else(|| platform_db::UnknownValue {
            what: "refund status",
            found: raw.to_owned(),
        })
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine_allows_only_its_transitions() {
        use PaymentStatus::*;
        assert!(Pending.can_become(Authorized));
        assert!(Authorized.can_become(Captured));
        assert!(Captured.can_become(PartiallyRefunded));
        assert!(PartiallyRefunded.can_become(Refunded));
        assert!(RequiresReview.can_become(Captured));
        assert!(Pending.can_become(Unknown));
        assert!(Unknown.can_become(Captured));
        assert!(Unknown.can_become(Failed));
        assert!(!Unknown.can_become(Refunded));
        assert!(!Unknown.can_become(Blocked));
        assert!(!Captured.can_become(Unknown));
        for final_state in [Failed, Blocked, Refunded] {
            for to in PaymentStatus::ALL {
                assert!(!final_state.can_become(to), "{final_state:?} -> {to:?}");
            }
        }
        assert!(!Captured.can_become(Authorized));
        assert!(!Pending.can_become(Refunded));
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
    }
}
