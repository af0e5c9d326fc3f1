//! The order's vocabulary, valid by construction: ids, quantities, payment tokens, shipping
//! addresses, the order's state machine and the saga's steps.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use platform_db::UnknownValue;
use sea_orm::DeriveValueType;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Now, to the microsecond both databases keep (so a value read back equals the one written).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// An order's id (UUIDv7: ordered by creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderId(Uuid);

impl OrderId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The idempotency key of the order's charge: every attempt, retry or recovery of the
    /// checkout charges under this one key, so the payment service charges at most once.
    pub fn charge_key(&self) -> String {
        format!("order-{}-charge", self.0)
    }

    /// The idempotency key of the order's refund.
    pub fn refund_key(&self) -> String {
        format!("order-{}-refund", self.0)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a field is invalid; the message completes "`field` …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("must be between 1 and {0}")]
    OutOfRange(u32),
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must be an ISO 3166 alpha-2 country code, e.g. DE")]
    NotACountry,
    #[error("must not contain control characters")]
    Control,
}

/// Units of one product in an order: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 1000;

    pub fn new(units: i64) -> Result<Self, FieldError> {
        match u32::try_from(units) {
            Ok(units) if (1..=Self::MAX).contains(&units) => Ok(Self(units)),
            _ => Err(FieldError::OutOfRange(Self::MAX)),
        }
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

pub use platform_money::CardToken;

fn text(raw: &str, max: usize, required: bool) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() && required {
        return Err(FieldError::Empty);
    }
    if trimmed.chars().count() > max {
        return Err(FieldError::TooLong(max));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldError::Control);
    }
    Ok(trimmed.to_owned())
}

/// Where the order goes. Every field trimmed and bounded; the country an upper-case ISO 3166
/// alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippingAddress {
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    #[schema(example = "12 Analytical Row")]
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    #[schema(example = "London")]
    pub city: String,
    #[schema(example = "NW1 6XE")]
    pub postal_code: String,
    #[schema(example = "GB")]
    pub country: String,
}

impl ShippingAddress {
    /// Checks every field; the errors name the field (`line1`, `country`, …).
    pub fn parse(raw: &ShippingAddress) -> Result<Self, Vec<(&'static str, FieldError)>> {
        let mut errors = Vec::new();
        let mut field = |name: &'static str, value: &str, max: usize, required: bool| {
            text(value, max, required).unwrap_or_else(|error| {
                errors.push((name, error));
                String::new()
            })
        };
        let name = field("name", &raw.name, 200, true);
        let line1 = field("line1", &raw.line1, 200, true);
        let line2 = raw
            .line2
            .as_deref()
            .map(|line| field("line2", line, 200, false))
            .filter(|line| !line.is_empty());
        let city = field("city", &raw.city, 100, true);
        let postal_code = field("postal_code", &raw.postal_code, 20, true);
        let country = raw.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(("country", FieldError::NotACountry));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name,
            line1,
            line2,
            city,
            postal_code,
            country,
        })
    }
}

/// An order's status: where it is in its life.
///
/// ```text
/// pending → stock_reserved → payment_authorized → confirmed → shipped → delivered
///                  └─→ payment_review ─┘ (held for a person: approved → payment_authorized)
///    └────────────┴──────┴──────────┴──→ failed (checkout could not complete; a review declined or expired)
///    └────────────┴──────┴──────────┴─────────────┴──→ cancelled (before shipping)
/// ```
///
/// Stored as its snake_case name (the `status` column); a row holding any other word fails to
/// load ([`platform_db::UnknownValue`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, DeriveValueType,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(
    value_type = "String",
    from_str = "OrderStatus::from_db",
    to_str = "OrderStatus::as_str"
)]
pub enum OrderStatus {
    Pending,
    StockReserved,
    /// The payment is held for a person to decide (the fraud rules or the provider held it).
    PaymentReview,
    PaymentAuthorized,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
    Failed,
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot become {to}")]
pub struct InvalidTransition {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        Self::Pending,
        Self::StockReserved,
        Self::PaymentReview,
        Self::PaymentAuthorized,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::StockReserved => "stock_reserved",
            Self::PaymentReview => "payment_review",
            Self::PaymentAuthorized => "payment_authorized",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == raw)
    }

    /// The stored `status` column, or what it holds instead of a status.
    pub fn from_db(raw: &str) -> Result<Self, UnknownValue> {
        Self::parse(raw).ok_or_else(|| UnknownValue {
            what: "order status",
            found: raw.to_owned(),
        })
    }

    /// Whether the state machine has an edge from `self` to `to`.
    pub fn allows(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Pending, StockReserved | Failed | Cancelled)
                | (
                    StockReserved,
                    PaymentReview | PaymentAuthorized | Failed | Cancelled
                )
                | (PaymentReview, PaymentAuthorized | Failed | Cancelled)
                | (PaymentAuthorized, Confirmed | Failed | Cancelled)
                | (Confirmed, Shipped | Cancelled)
                | (Shipped, Delivered)
        )
    }

    /// The move to `to`, if the state machine allows it.
    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, InvalidTransition> {
        if self.allows(to) {
            Ok(to)
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }

    /// Whether the order can still be cancelled (it has not shipped, and has not ended).
    pub fn cancellable(self) -> bool {
        self.allows(OrderStatus::Cancelled)
    }

    /// The statuses an administrator sets by hand; the rest belong to the checkout saga.
    pub fn set_by_admin(self) -> bool {
        matches!(self, Self::Shipped | Self::Delivered)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The checkout saga's next step, persisted with the order (the `step` column, by name) so
/// that a restarted service resumes exactly where the last one stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveValueType)]
#[sea_orm(
    value_type = "String",
    from_str = "Step::from_db",
    to_str = "Step::as_str"
)]
pub enum Step {
    /// Reserve the stock (product service).
    Reserve,
    /// Charge the card (payment service), under the order's charge key.
    Charge,
    /// Wait for the decision on a payment held for review (no deadline: the review has its
    /// own, `PAYMENT_REVIEW_TTL`).
    Review,
    /// Turn the reservation into a sale, then confirm.
    Commit,
    /// Undo what was done (release or restock, refund), then end `failed` or `cancelled`.
    Compensate,
    /// Nothing left to do.
    Done,
}

impl Step {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Charge => "charge",
            Self::Review => "review",
            Self::Commit => "commit",
            Self::Compensate => "compensate",
            Self::Done => "done",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Reserve,
            Self::Charge,
            Self::Review,
            Self::Commit,
            Self::Compensate,
            Self::Done,
        ]
        .into_iter()
        .find(|step| step.as_str() == raw)
    }

    /// The stored `step` column, or what it holds instead of a step.
    pub fn from_db(raw: &str) -> Result<Self, UnknownValue> {
        Self::parse(raw).ok_or_else(|| UnknownValue {
            what: "saga step",
            found: raw.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_bounded() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(1000).unwrap().get(), 1000);
        for bad in [0, -1, 1001, i64::MAX] {
            assert!(Quantity::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_trimmed_and_checked_field_by_field() {
        let raw = ShippingAddress {
            name: "  Ada ".into(),
            line1: "1 Road".into(),
            line2: Some("  ".into()),
            city: "London".into(),
            postal_code: "N1".into(),
            country: "gb".into(),
        };
        let address = ShippingAddress::parse(&raw).unwrap();
        assert_eq!(address.name, "Ada");
        assert_eq!(address.line2, None);
        assert_eq!(address.country, "GB");

        let bad = ShippingAddress {
            name: String::new(),
            country: "GBR".into(),
            ..raw
        };
        let fields: Vec<_> = ShippingAddress::parse(&bad)
            .unwrap_err()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(fields, ["name", "country"]);
    }

    #[test]
    fn the_state_machine_has_only_its_edges() {
        use OrderStatus::*;
        let edges = [
            (Pending, StockReserved),
            (StockReserved, PaymentAuthorized),
            (StockReserved, PaymentReview),
            (PaymentReview, PaymentAuthorized),
            (PaymentAuthorized, Confirmed),
            (Confirmed, Shipped),
            (Shipped, Delivered),
        ];
        for (from, to) in edges {
            assert_eq!(from.transition(to), Ok(to));
        }
        for from in [Pending, StockReserved, PaymentReview, PaymentAuthorized] {
            assert!(from.allows(Failed) && from.allows(Cancelled));
        }
        assert!(Confirmed.cancellable());
        for from in [Shipped, Delivered, Cancelled, Failed] {
            assert!(!from.cancellable(), "{from}");
        }
        for terminal in [Delivered, Cancelled, Failed] {
            for to in OrderStatus::ALL {
                assert!(!terminal.allows(to), "{terminal} → {to}");
            }
        }
        assert_eq!(
            Pending.transition(Shipped),
            Err(InvalidTransition {
                from: Pending,
                to: Shipped
            })
        );
        assert!(!Confirmed.allows(Pending) && !Shipped.allows(Confirmed));
        assert!(!Pending.allows(PaymentReview) && !PaymentReview.allows(Confirmed));
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
    }
}
