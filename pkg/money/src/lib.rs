//! Money as every service sees it: an amount in integer minor units (cents, pence, yen) and an
//! ISO 4217 currency. Floats never hold money; amounts of different currencies never mix.
//!
//! Owns [`Currency`] (a known ISO 4217 code, with its number of minor units) and [`Money`]
//! (`{"amount": 1999, "currency": "EUR"}` on the wire), and the [`CardToken`] a payment is
//! made with.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Active ISO 4217 codes and their minor units. Funds codes, precious metals and test codes
/// (XAU, XTS, …) are left out on purpose: nobody prices a product in them.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

mod token;

pub use token::{CardToken, TokenError};

/// The currency codes [`Currency::parse`] knows, for API documents (`schema_with`).
pub fn currency_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CURRENCIES.iter().map(|(code, _)| *code)))
        .build()
}

/// Why a currency or an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The code is not an ISO 4217 currency (in any case).
    #[error("is not an ISO 4217 currency code")]
    UnknownCurrency,
    /// The amount is zero or negative: money here is always positive.
    #[error("must be greater than zero")]
    NotPositive,
    /// Two amounts of different currencies were added; nothing converts between them.
    #[error("amounts in different currencies cannot be combined")]
    CurrencyMismatch,
    /// The result does not fit in an `i64` of minor units.
    #[error("is too large")]
    Overflow,
}

/// An ISO 4217 currency code we know, stored as its three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The euro (2 minor units).
    pub const EUR: Currency = Currency(*b"EUR");
    /// The US dollar (2 minor units).
    pub const USD: Currency = Currency(*b"USD");

    /// Accepts the code in any case (`eur` → `EUR`); refuses codes not in ISO 4217.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(known, _)| *known == upper)
            .and_then(|(known, _)| known.as_bytes().try_into().ok())
            .map(Currency)
            .ok_or(MoneyError::UnknownCurrency)
    }

    /// The three upper-case letters of the code, as on the wire (`EUR`).
    pub fn as_str(&self) -> &str {
        // Only ever built from the ASCII table above.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point: 2 for EUR, 0 for JPY, 3 for KWD.
    pub fn minor_units(&self) -> u8 {
        CURRENCIES
            .iter()
            .find(|(known, _)| known.as_bytes() == self.0)
            .map_or(2, |(_, units)| *units)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Currency::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A positive amount of one currency, in minor units. Zero and negative prices cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub struct Money {
    /// Minor units: 1999 with EUR is €19.99.
    #[schema(example = 1999, minimum = 1)]
    amount: i64,
    #[schema(value_type = String, example = "EUR")]
    currency: Currency,
}

impl Money {
    /// `amount` minor units of `currency`; [`MoneyError::NotPositive`] unless `amount > 0`.
    pub fn new(amount: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= 0 {
            return Err(MoneyError::NotPositive);
        }
        Ok(Self { amount, currency })
    }

    /// The amount in minor units (1999 for €19.99); always greater than zero.
    pub fn amount(&self) -> i64 {
        self.amount
    }

    /// The currency the amount is in.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// `self × quantity`, refusing overflow rather than wrapping.
    pub fn times(&self, quantity: u32) -> Result<Self, MoneyError> {
        let amount = self
            .amount
            .checked_mul(i64::from(quantity))
            .ok_or(MoneyError::Overflow)?;
        Money::new(amount, self.currency)
    }

    /// The sum of two amounts of one currency.
    pub fn plus(&self, other: Money) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Money::new(amount, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = u32::from(self.currency.minor_units());
        if units == 0 {
            return write!(f, "{} {}", self.amount, self.currency);
        }
        let scale = 10_i64.pow(units);
        write!(
            f,
            "{}.{:0width$} {}",
            self.amount / scale,
            self.amount % scale,
            self.currency,
            width = units as usize
        )
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            amount: i64,
            currency: Currency,
        }
        let raw = Raw::deserialize(deserializer)?;
        Money::new(raw.amount, raw.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_iso_codes_in_any_case() {
        assert_eq!(Currency::parse("eur").unwrap(), Currency::EUR);
        assert_eq!(Currency::parse(" USD ").unwrap().as_str(), "USD");
        assert_eq!(Currency::parse("JPY").unwrap().minor_units(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_units(), 3);
        for bad in ["", "EU", "EURO", "XXX", "ABC", "€", "E\u{301}UR"] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::UnknownCurrency),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_positive_amounts_exist() {
        assert_eq!(Money::new(0, Currency::EUR), Err(MoneyError::NotPositive));
        assert_eq!(Money::new(-1, Currency::EUR), Err(MoneyError::NotPositive));
        let price = Money::new(1999, Currency::EUR).unwrap();
        assert_eq!(price.to_string(), "19.99 EUR");
        assert_eq!(
            Money::new(5, Currency::parse("JPY").unwrap())
                .unwrap()
                .to_string(),
            "5 JPY"
        );
    }

    #[test]
    fn arithmetic_refuses_overflow_and_mixed_currencies() {
        let price = Money::new(1999, Currency::EUR).unwrap();
        assert_eq!(price.times(3).unwrap().amount(), 5997);
        assert_eq!(
            Money::new(i64::MAX, Currency::EUR).unwrap().times(2),
            Err(MoneyError::Overflow)
        );
        let dollars = Money::new(100, Currency::USD).unwrap();
        assert_eq!(price.plus(dollars), Err(MoneyError::CurrencyMismatch));
        assert_eq!(price.plus(price).unwrap().amount(), 3998);
    }

    #[test]
    fn wire_form_round_trips_and_rejects_invalid_values() {
        let price = Money::new(1999, Currency::EUR).unwrap();
        let json = serde_json::to_string(&price).unwrap();
        assert_eq!(json, r#"{"amount":1999,"currency":"EUR"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), price);
        for bad in [
            r#"{"amount":0,"currency":"EUR"}"#,
            r#"{"amount":10,"currency":"EURO"}"#,
            r#"{"amount":1.5,"currency":"EUR"}"#,
            r#"{"amount":10}"#,
            r#"{"amount":10,"currency":"EUR","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad}");
        }
    }
}
