//! Wire types of the REST API and their conversion to commands; every invalid field is named
//! in one 422.

use platform_http::{FieldErrors, Problem};
use platform_money::{Currency, Money};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{CardToken, PaymentStatus};

/// An amount as sent by clients; checked field by field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountInput {
    /// Minor units (cents), greater than zero.
    #[schema(example = 4999, minimum = 1)]
    #[serde(deserialize_with = "platform_http::number::integer")]
    pub amount: i64,
    #[schema(example = "EUR", schema_with = platform_money::currency_schema)]
    pub currency: String,
}

impl AmountInput {
    pub fn parse(&self, field: &str, errors: &mut FieldErrors) -> Option<Money> {
        let currency = errors.check(
            &format!("{field}.currency"),
            Currency::parse(&self.currency),
        );
        // Checked even when the currency is not, so one 422 names both.
        let amount = errors.check(
            &format!("{field}.amount"),
            Money::new(self.amount, currency.unwrap_or(Currency::EUR)),
        );
        Money::new(amount?.amount(), currency?).ok()
    }
}

/// How the customer pays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodInput {
    /// `card` (the only type today).
    #[serde(rename = "type")]
    #[schema(example = "card")]
    pub kind: String,
    /// The provider's card token (`tok_…`, `pm_…`). Card numbers are refused.
    #[schema(example = "tok_visa")]
    pub token: String,
    /// The card's first 6 to 8 digits, when tokenization reported them (fraud rules).
    pub bin: Option<String>,
    /// The card's issuing country, ISO 3166 alpha-2 (fraud rules).
    pub country: Option<String>,
}

/// `POST /api/v1/payments`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"order_id": "0191e3b0-7c3e-7d4a-9a4e-000000000001", "amount": {"amount": 4999, "currency": "EUR"}, "method": {"type": "card", "token": "tok_visa"}}))]
pub struct ChargeInput {
    /// The charge's own reference. It may not name an order: orders are paid by their
    /// checkout.
    pub order_id: Uuid,
    pub amount: AmountInput,
    pub method: MethodInput,
}

/// What a charge needs, validated.
pub struct ParsedCharge {
    pub order_id: Uuid,
    pub amount: Money,
    pub token: CardToken,
    pub bin: Option<String>,
    pub country: Option<String>,
}

impl ChargeInput {
    pub fn parse(self) -> Result<ParsedCharge, Problem> {
        let mut errors = FieldErrors::new();
        let amount = self.amount.parse("amount", &mut errors);
        if self.method.kind != "card" {
            errors.add("method.type", "must be card");
        }
        let token = errors.check("method.token", CardToken::parse(&self.method.token));
        let bin = self.method.bin.filter(|bin| {
            let ok = (6..=8).contains(&bin.len()) && bin.bytes().all(|b| b.is_ascii_digit());
            if !ok {
                errors.add("method.bin", "must be 6 to 8 digits");
            }
            ok
        });
        let country = self
            .method
            .country
            .map(|c| c.to_ascii_uppercase())
            .filter(|c| {
                let ok = c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase());
                if !ok {
                    errors.add("method.country", "must be an ISO 3166 alpha-2 code");
                }
                ok
            });
        errors.finish()?;
        match (amount, token) {
            (Some(amount), Some(token)) => Ok(ParsedCharge {
                order_id: self.order_id,
                amount,
                token,
                bin,
                country,
            }),
            _ => Err(Problem::internal()),
        }
    }
}

/// `POST /api/v1/payments/{id}/refund`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": {"amount": 1000, "currency": "EUR"}, "reason": "damaged item"}))]
pub struct RefundInput {
    /// Unset: everything left to refund.
    pub amount: Option<AmountInput>,
    /// Why (kept with the refund; 1 to 500 characters).
    #[schema(schema_with = platform_http::text::reason_schema)]
    pub reason: String,
}

impl RefundInput {
    pub fn parse(self) -> Result<(Option<Money>, String), Problem> {
        let mut errors = FieldErrors::new();
        let amount = self.amount.as_ref().map(|a| a.parse("amount", &mut errors));
        let reason = errors.check("reason", platform_http::text::reason(&self.reason));
        errors.finish()?;
        Ok((amount.flatten(), reason.unwrap_or_default()))
    }
}

/// An administrator's decline of a held payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclineInput {
    /// Why (kept with the payment and in the audit trail; 1 to 500 characters).
    #[schema(schema_with = platform_http::text::reason_schema)]
    pub reason: String,
}

impl DeclineInput {
    pub fn parse(self) -> Result<String, Problem> {
        platform_http::text::reason(&self.reason)
            .map_err(|message| Problem::invalid_field("reason", message))
    }
}

/// `GET /api/v1/payments` filters (besides `page`, `per_page`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only payments in this status.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
}

fn status_schema() -> utoipa::openapi::Object {
    platform_http::contract::string_enum(PaymentStatus::ALL.map(|s| s.as_str()))
}

impl ListQuery {
    pub fn parse(self) -> Result<Option<PaymentStatus>, Problem> {
        self.status
            .map(|raw| {
                PaymentStatus::parse(&raw).ok_or_else(|| {
                    Problem::invalid_field(
                        "status",
                        "must be pending, authorized, captured, partially_refunded, refunded, failed, blocked, requires_review or unknown",
                    )
                })
            })
            .transpose()
    }
}
