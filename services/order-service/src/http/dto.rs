//! Wire types of the REST API and their conversion to commands; every invalid field is named
//! in one 422.

use platform_http::{FieldErrors, Problem};
use platform_money::{Currency, Money};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{CardToken, OrderStatus, Quantity, ShippingAddress};
use crate::service::WantedLine;

/// At most this many lines per order.
pub const MAX_LINES: usize = 100;

/// One line of a new order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    pub product_id: Uuid,
    /// 1 to 1000.
    #[schema(example = 2, minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "platform_http::number::integer")]
    pub quantity: i64,
}

/// How the order is paid.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentInput {
    /// The payment provider's card token (`tok_…`, `pm_…`); card numbers are refused.
    #[schema(example = "tok_visa")]
    pub token: String,
}

/// `POST /api/v1/orders`. Prices are the catalog's, never the client's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "items": [{"product_id": "0192f0c1-8e1f-7c4a-9b7e-2d3c4b5a6978", "quantity": 2}],
    "payment": {"token": "tok_visa"},
    "shipping_address": {"name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "London",
        "postal_code": "NW1 6XE", "country": "GB"}
}))]
pub struct OrderInput {
    pub items: Vec<ItemInput>,
    pub payment: PaymentInput,
    pub shipping_address: ShippingAddress,
}

/// A valid order request.
pub struct ParsedOrder {
    pub lines: Vec<WantedLine>,
    pub token: CardToken,
    pub shipping_address: ShippingAddress,
}

impl OrderInput {
    pub fn parse(self) -> Result<ParsedOrder, Problem> {
        let mut errors = FieldErrors::new();
        if self.items.is_empty() {
            errors.add("items", "must name at least one product");
        }
        if self.items.len() > MAX_LINES {
            errors.add("items", format!("must have at most {MAX_LINES} lines"));
        }
        let mut lines = Vec::with_capacity(self.items.len());
        for (index, item) in self.items.iter().enumerate() {
            let field = format!("items[{index}].quantity");
            if let Some(quantity) = errors.check(&field, Quantity::new(item.quantity)) {
                lines.push(WantedLine {
                    product_id: item.product_id,
                    quantity,
                });
            }
        }
        // One line per product: repeated products add up (and must stay within the limit).
        lines.sort_by_key(|line| line.product_id);
        let mut merged: Vec<WantedLine> = Vec::with_capacity(lines.len());
        for line in lines {
            match merged.last_mut() {
                Some(last) if last.product_id == line.product_id => {
                    let sum = i64::from(last.quantity.get()) + i64::from(line.quantity.get());
                    if let Some(quantity) = errors.check("items", Quantity::new(sum)) {
                        last.quantity = quantity;
                    }
                }
                _ => merged.push(line),
            }
        }
        let token = errors.check("payment.token", CardToken::parse(&self.payment.token));
        let address = match ShippingAddress::parse(&self.shipping_address) {
            Ok(address) => Some(address),
            Err(problems) => {
                for (field, error) in problems {
                    errors.add(&format!("shipping_address.{field}"), error.to_string());
                }
                None
            }
        };
        errors.finish()?;
        match (token, address) {
            (Some(token), Some(shipping_address)) => Ok(ParsedOrder {
                lines: merged,
                token,
                shipping_address,
            }),
            _ => Err(Problem::internal()),
        }
    }
}

/// `PUT /api/v1/orders/{id}/status`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusInput {
    /// `shipped` or `delivered`.
    pub status: String,
    /// Ship an order with refunds anyway (audited with `reason`).
    #[serde(default)]
    pub force: bool,
    /// Why a refunded order ships anyway: `replacement_agreed`, `partial_refund_agreed` or
    /// `customer_request`. Required with `force`.
    pub reason: Option<String>,
}

/// Two exact shapes: a status alone (`force` false or absent, no reason), or a status
/// forced with one of the reason codes.
impl utoipa::PartialSchema for StatusInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let status = serde_json::json!({
            "type": "string",
            "enum": OrderStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        });
        platform_http::contract::json_schema(serde_json::json!({
            "description": "The new status; `force` ships an order that has refunds, with a reason code.",
            "example": {"status": "shipped"},
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["status"],
                    "properties": {
                        "status": status,
                        "force": {"type": "boolean", "enum": [false]},
                        "reason": {"type": "null"},
                    },
                },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["status", "force", "reason"],
                    "properties": {
                        "status": status,
                        "force": {"type": "boolean", "enum": [true]},
                        "reason": {"type": "string", "enum": FORCE_REASONS},
                    },
                },
            ],
        }))
    }
}

impl utoipa::ToSchema for StatusInput {}

/// Why an administrator may ship an order that has refunds: codes, so the audit trail holds
/// no free text.
pub const FORCE_REASONS: [&str; 3] = [
    "replacement_agreed",
    "partial_refund_agreed",
    "customer_request",
];

fn status_field(field: &str, raw: &str) -> Result<OrderStatus, Problem> {
    OrderStatus::parse(raw).ok_or_else(|| {
        let names: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
        Problem::invalid_field(field, format!("must be one of {}", names.join(", ")))
    })
}

impl StatusInput {
    /// The status, and the forcing reason code when `force` is set.
    pub fn parse(self) -> Result<(OrderStatus, Option<&'static str>), Problem> {
        let status = status_field("status", &self.status)?;
        let forced = match (self.force, self.reason.as_deref()) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Problem::invalid_field("reason", "is only taken with force"));
            }
            (true, reason) => Some(
                FORCE_REASONS
                    .into_iter()
                    .find(|code| Some(*code) == reason)
                    .ok_or_else(|| {
                        Problem::invalid_field(
                            "reason",
                            format!("must be one of {}", FORCE_REASONS.join(", ")),
                        )
                    })?,
            ),
        };
        Ok((status, forced))
    }
}

/// `POST /api/v1/admin/orders/{id}/refund`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": {"amount": 500, "currency": "EUR"}, "reason": "damaged in transit"}))]
pub struct RefundInput {
    /// Unset: everything not refunded yet.
    pub amount: Option<MoneyInput>,
    /// Why (1 to 500 characters; kept with the refund at the payment service).
    #[schema(schema_with = platform_http::text::reason_schema)]
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyInput {
    /// Minor units.
    #[serde(deserialize_with = "platform_http::number::integer")]
    #[schema(minimum = 1)]
    pub amount: i64,
    /// ISO 4217, the order's currency.
    #[schema(schema_with = platform_money::currency_schema)]
    pub currency: String,
}

impl RefundInput {
    pub fn parse(self) -> Result<(Option<Money>, String), Problem> {
        let mut errors = FieldErrors::new();
        let amount = self.amount.and_then(|raw| {
            let currency = Currency::parse(&raw.currency)
                .map_err(|e| errors.add("amount.currency", e.to_string()))
                .ok()?;
            Money::new(raw.amount, currency)
                .map_err(|e| errors.add("amount.amount", e.to_string()))
                .ok()
        });
        let reason = errors.check("reason", platform_http::text::reason(&self.reason));
        errors.finish()?;
        Ok((amount, reason.unwrap_or_default()))
    }
}

/// `GET /api/v1/orders` filters (besides `page`, `per_page`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
}

impl ListQuery {
    pub fn parse(self) -> Result<Option<OrderStatus>, Problem> {
        self.status
            .map(|raw| status_field("status", &raw))
            .transpose()
    }
}
