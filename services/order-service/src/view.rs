//! What the API returns for an order.

use chrono::{DateTime, Utc};
use platform_money::{Currency, Money};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{OrderStatus, ShippingAddress};
use crate::repo::{ItemRow, OrderRow};

/// One line of an order, priced by the catalog when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ItemView {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    pub items: Vec<ItemView>,
    pub total: Money,
    pub shipping_address: ShippingAddress,
    /// The payment, once the payment service made one.
    pub payment_id: Option<Uuid>,
    /// Minor units given back to the customer.
    pub refunded: i64,
    /// Why checkout failed, when it did.
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    /// Whether the checkout saga is done with it (`201`) or still at work (`202`).
    pub fn settled(&self) -> bool {
        !matches!(
            self.status,
            OrderStatus::Pending
                | OrderStatus::StockReserved
                | OrderStatus::PaymentReview
                | OrderStatus::PaymentAuthorized
        )
    }
}

/// Why a stored row could not be shown (a corrupt database, never user input).
#[derive(Debug, thiserror::Error)]
#[error("order {id} is corrupt: {what}")]
pub struct CorruptRow {
    pub id: Uuid,
    pub what: String,
}

impl OrderView {
    /// The view of `row` with its `items` (any order's lines may be passed: only its own are
    /// taken).
    pub fn build(row: &OrderRow, items: &[ItemRow]) -> Result<Self, CorruptRow> {
        let corrupt = |what: String| CorruptRow { id: row.id, what };
        let currency = Currency::parse(&row.currency).map_err(|e| corrupt(e.to_string()))?;
        let money = |amount: i64| Money::new(amount, currency).map_err(|e| corrupt(e.to_string()));
        let items = items
            .iter()
            .filter(|item| item.order_id == row.id)
            .map(|item| {
                let quantity = u32::try_from(item.quantity).map_err(|e| corrupt(e.to_string()))?;
                let unit_price = money(item.unit_price)?;
                Ok(ItemView {
                    product_id: item.product_id,
                    name: item.name.clone(),
                    quantity,
                    unit_price,
                    line_total: unit_price
                        .times(quantity)
                        .map_err(|e| corrupt(e.to_string()))?,
                })
            })
            .collect::<Result<Vec<_>, CorruptRow>>()?;
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            status: row.status,
            items,
            total: money(row.total)?,
            shipping_address: serde_json::from_str(&row.shipping_address)
                .map_err(|e| corrupt(e.to_string()))?,
            payment_id: row.payment_id,
            refunded: row.refunded,
            failure_reason: row.failure_reason.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}
