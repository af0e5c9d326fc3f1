//! What the API returns for a payment (and what an idempotency key replays).

use chrono::{DateTime, Utc};
use platform_money::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{CardInfo, PaymentStatus};
use crate::fraud::{Decision, Reason};
use crate::repo::PaymentRow;

/// The fraud rules' verdict on a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RiskView {
    /// 0 (no risk seen) to 100.
    pub score: u8,
    pub decision: Decision,
    pub reasons: Vec<Reason>,
}

/// A card as the provider described it: never more than brand and last four digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardView {
    pub brand: String,
    pub last4: String,
}

/// A payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: Money,
    /// `pending`, `authorized`, `captured`, `partially_refunded`, `refunded`, `failed`,
    /// `blocked`, `requires_review` or `unknown` (the provider's answer was lost; it is asked
    /// again, and the payment moves on by itself).
    #[schema(example = "captured")]
    pub status: PaymentStatus,
    /// The provider that handled it (`sandbox`, `stripe`, `adyen`); empty when none did.
    pub provider: String,
    pub provider_payment_id: Option<String>,
    pub card: Option<CardView>,
    pub risk: RiskView,
    /// Minor units refunded so far.
    pub refunded_amount: i64,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a stored row could not be shown (a corrupt database, never user input).
#[derive(Debug, thiserror::Error)]
#[error("payment {0} has an invalid {1} in the database")]
pub struct CorruptRow(pub Uuid, pub &'static str);

impl TryFrom<&PaymentRow> for PaymentView {
    type Error = CorruptRow;

    fn try_from(row: &PaymentRow) -> Result<Self, CorruptRow> {
        let currency =
            Currency::parse(&row.currency).map_err(|_| CorruptRow(row.id, "currency"))?;
        let amount = Money::new(row.amount, currency).map_err(|_| CorruptRow(row.id, "amount"))?;
        let decision: Decision =
            serde_json::from_value(serde_json::Value::String(row.risk_decision.clone()))
                .map_err(|_| CorruptRow(row.id, "risk decision"))?;
        let reasons: Vec<Reason> = serde_json::from_str(&row.risk_reasons)
            .map_err(|_| CorruptRow(row.id, "risk reasons"))?;
        let card = match (&row.card_brand, &row.card_last4) {
            (Some(brand), Some(last4)) => Some(CardView {
                brand: brand.clone(),
                last4: last4.clone(),
            }),
            _ => None,
        };
        Ok(Self {
            id: row.id,
            order_id: row.order_id,
            user_id: row.user_id,
            amount,
            status: row.status,
            provider: row.provider.clone(),
            provider_payment_id: row.provider_payment_id.clone(),
            card,
            risk: RiskView {
                score: u8::try_from(row.risk_score).unwrap_or(100),
                decision,
                reasons,
            },
            refunded_amount: row.refunded_amount,
            failure_reason: row.failure_reason.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl From<CardInfo> for CardView {
    fn from(card: CardInfo) -> Self {
        Self {
            brand: card.brand,
            last4: card.last4,
        }
    }
}
