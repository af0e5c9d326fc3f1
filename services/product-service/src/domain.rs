//! The catalog's domain: plain types whose constructors enforce every rule, so a value that
//! exists is valid. No SQL and no HTTP here.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use platform_money::Money;
use uuid::Uuid;

pub use platform_money::{Currency, MoneyError};

/// The current time at the precision both backends store (PostgreSQL keeps microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Why a field was refused; the message completes "<field> …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("may contain only letters, digits, '-', '_' and '.'")]
    SkuCharacters,
    #[error("must be an http or https URL")]
    NotAUrl,
    #[error("must be zero or more")]
    Negative,
    #[error("must be at most {0}")]
    TooMany(i64),
    #[error("must be at least 1")]
    NotPositive,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Time-ordered (v7), so new rows land at the end of the primary key index.
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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A product's identity.
    ProductId
);

/// What [`Sku::parse`] takes (at most [`Sku::MAX_CHARS`]).
pub const SKU_PATTERN: &str = "^\\s*[A-Za-z0-9._-]+\\s*$";
/// What [`ImageUrl::parse`] takes (at most [`ImageUrl::MAX_CHARS`]).
pub const IMAGE_URL_PATTERN: &str =
    "^\\s*[hH][tT][tT][pP][sS]?://[^\\s\\x00-\\x1f\\x7f-\\x9f]+\\s*$";
id_type!(
    /// An order's identity, as the order service assigns it: the key of its reservation.
    OrderId
);

/// Checks length (in characters, as sent), trims, then checks emptiness and control
/// characters: what `platform_http::text::{LINE_PATTERN, TEXT_PATTERN}` say to clients.
fn text(raw: &str, max: usize, allow_empty: bool) -> Result<String, FieldError> {
    if raw.chars().count() > max {
        return Err(FieldError::TooLong(max));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() && !allow_empty {
        return Err(FieldError::Empty);
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldError::ControlCharacters);
    }
    Ok(trimmed.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $allow_empty:expr, $normalise:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, FieldError> {
                let value = text(raw, $max, $allow_empty)?;
                let normalise: fn(String) -> Result<String, FieldError> = $normalise;
                normalise(value).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_type!(
    /// Stock-keeping unit: unique, compared case-insensitively (stored upper-case).
    Sku, 64, false, |value| {
        if value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            Ok(value.to_ascii_uppercase())
        } else {
            Err(FieldError::SkuCharacters)
        }
    }
);
text_type!(
    /// What customers see as the product's title.
    ProductName, 200, false, Ok
);
text_type!(
    /// Free text; may be empty.
    Description, 5000, true, Ok
);
text_type!(
    /// A browsing category, stored lower-case so filters match regardless of case.
    Category, 64, false, |value| Ok(value.to_lowercase())
);
text_type!(
    /// Where the product's picture is.
    ImageUrl, 2048, false, |value| {
        let lower = value.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        match rest {
            Some(rest) if !rest.is_empty() && !value.contains(char::is_whitespace) => Ok(value),
            _ => Err(FieldError::NotAUrl),
        }
    }
);

/// Units on hand: never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stock(i64);

impl Stock {
    /// A trillion units: far beyond any real stock, and far enough from `i64::MAX` that no
    /// adjustment can overflow.
    pub const MAX: i64 = 1_000_000_000_000;

    pub fn new(units: i64) -> Result<Self, FieldError> {
        if units < 0 {
            Err(FieldError::Negative)
        } else if units > Self::MAX {
            Err(FieldError::TooMany(Self::MAX))
        } else {
            Ok(Self(units))
        }
    }

    pub fn get(&self) -> i64 {
        self.0
    }
}

/// Units on one reservation line: at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u32);

impl Quantity {
    pub fn new(units: u32) -> Result<Self, FieldError> {
        if units == 0 {
            Err(FieldError::NotPositive)
        } else {
            Ok(Self(units))
        }
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

/// A catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub category: Category,
    pub price: Money,
    /// Units on hand.
    pub stock: i64,
    /// Units held by reservations not yet committed or released; `reserved <= stock`.
    pub reserved: i64,
    pub image_url: Option<ImageUrl>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// Units that can still be reserved; the database keeps it from going negative.
    pub fn available(&self) -> i64 {
        self.stock - self.reserved
    }
}

/// Where a reservation is in its life: `Reserved` moves once, to `Committed` (sold) or
/// `Released`; a committed sale may be taken back once (`Returned`, an order cancelled before
/// it shipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationState {
    Reserved,
    Committed,
    Released,
    Returned,
}

impl ReservationState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Returned => "returned",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "reserved" => Some(Self::Reserved),
            "committed" => Some(Self::Committed),
            "released" => Some(Self::Released),
            "returned" => Some(Self::Returned),
            _ => None,
        }
    }

    /// The one legal move to `to`: from `Reserved` to `Committed` or `Released`, from
    /// `Committed` to `Returned`. Repeating the move that already happened is a no-op
    /// (`Ok(None)`), which makes each idempotent.
    pub fn transition(self, to: ReservationState) -> Result<Option<ReservationState>, Self> {
        match (self, to) {
            (from, to) if to.source() == Some(from) => Ok(Some(to)),
            (from, to) if from == to => Ok(None),
            (from, _) => Err(from),
        }
    }

    /// The state a move to `self` starts from (`None` for the initial state).
    pub fn source(self) -> Option<ReservationState> {
        match self {
            Self::Reserved => None,
            Self::Committed | Self::Released => Some(Self::Reserved),
            Self::Returned => Some(Self::Committed),
        }
    }
}

/// One line of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

/// An order's hold on stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: OrderId,
    pub state: ReservationState,
    pub lines: Vec<Line>,
    pub expires_at: DateTime<Utc>,
}

/// List order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ProductSort {
    PriceAsc,
    PriceDesc,
    Name,
    #[default]
    Newest,
}

impl ProductSort {
    pub const ALL: [ProductSort; 4] = [Self::PriceAsc, Self::PriceDesc, Self::Name, Self::Newest];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "price_asc" => Some(Self::PriceAsc),
            "price_desc" => Some(Self::PriceDesc),
            "name" => Some(Self::Name),
            "newest" => Some(Self::Newest),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PriceAsc => "price_asc",
            Self::PriceDesc => "price_desc",
            Self::Name => "name",
            Self::Newest => "newest",
        }
    }
}

/// The list filters, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct ProductFilter {
    pub category: Option<Category>,
    /// Minor units, inclusive.
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// `Some(true)`: only products with units available; `Some(false)`: only sold out.
    pub in_stock: Option<bool>,
    pub sort: ProductSort,
}

impl ProductFilter {
    /// A stable text form, part of the list cache key.
    pub fn cache_key(&self) -> String {
        format!(
            "c={}&min={}&max={}&stock={}&sort={}",
            self.category.as_ref().map_or("", |c| c.as_str()),
            self.min_price.map_or(String::new(), |v| v.to_string()),
            self.max_price.map_or(String::new(), |v| v.to_string()),
            self.in_stock.map_or("", |v| if v { "1" } else { "0" }),
            self.sort.as_str()
        )
    }
}

/// A search query reduced to its words: lower-case letters and digits only, so no input can
/// reach the full-text engines' query syntax. At most [`SearchTerms::MAX_TERMS`] words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerms {
    terms: Vec<String>,
    /// The query as typed (trimmed), to rank an exact name match first.
    phrase: String,
}

impl SearchTerms {
    pub const MAX_TERMS: usize = 10;
    pub const MAX_CHARS: usize = 200;
    const MAX_TERM_CHARS: usize = 64;

    /// What the API document says `q` is: at most 200 characters, no control characters
    /// but tab and newline.
    pub const PATTERN: &'static str = "^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]{1,200}$";

    /// A query without a letter or digit is valid and matches nothing.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err("must be at most 200 characters");
        }
        let phrase = raw.trim();
        // The phrase reaches the database as a parameter, and PostgreSQL refuses text with a
        // NUL in it; no product name holds control characters anyway.
        if phrase
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err("must not contain control characters");
        }
        let terms: Vec<String> = phrase
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .take(Self::MAX_TERMS)
            .map(|word| {
                word.to_lowercase()
                    .chars()
                    .take(Self::MAX_TERM_CHARS)
                    .collect()
            })
            .collect();
        Ok(Self {
            terms,
            phrase: phrase.to_owned(),
        })
    }

    pub fn phrase(&self) -> &str {
        &self.phrase
    }

    /// No letter or digit to look for.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// PostgreSQL `to_tsquery` input: every word as a prefix, all required.
    pub fn to_tsquery(&self) -> String {
        self.terms
            .iter()
            .map(|term| format!("{term}:*"))
            .collect::<Vec<_>>()
            .join(" & ")
    }

    /// SQLite FTS5 `MATCH` input: every word quoted (so never an operator) and a prefix.
    pub fn to_fts5(&self) -> String {
        self.terms
            .iter()
            .map(|term| format!("\"{term}\"*"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_normalised_and_restricted() {
        assert_eq!(Sku::parse(" ab-12.x_Y ").unwrap().as_str(), "AB-12.X_Y");
        assert_eq!(Sku::parse(""), Err(FieldError::Empty));
        assert_eq!(Sku::parse("a b"), Err(FieldError::SkuCharacters));
        assert_eq!(Sku::parse("ä"), Err(FieldError::SkuCharacters));
        assert_eq!(Sku::parse(&"A".repeat(65)), Err(FieldError::TooLong(64)));
    }

    #[test]
    fn text_fields_are_trimmed_and_bounded() {
        assert_eq!(ProductName::parse("  Mug ").unwrap().as_str(), "Mug");
        assert_eq!(ProductName::parse("   "), Err(FieldError::Empty));
        assert_eq!(
            ProductName::parse("a\u{0}b"),
            Err(FieldError::ControlCharacters)
        );
        assert_eq!(Description::parse("").unwrap().as_str(), "");
        assert!(Description::parse("line one\nline two").is_ok());
        assert_eq!(Category::parse("Kitchen").unwrap().as_str(), "kitchen");
        assert!(ImageUrl::parse("https://img.example.com/a.png").is_ok());
        for bad in ["ftp://x", "https://", "javascript:alert(1)", "http://a b"] {
            assert_eq!(ImageUrl::parse(bad), Err(FieldError::NotAUrl), "{bad}");
        }
    }

    #[test]
    fn only_reserved_reservations_move_and_repeats_are_no_ops() {
        use ReservationState::*;
        assert_eq!(Reserved.transition(Committed), Ok(Some(Committed)));
        assert_eq!(Reserved.transition(Released), Ok(Some(Released)));
        assert_eq!(Committed.transition(Committed), Ok(None));
        assert_eq!(Released.transition(Released), Ok(None));
        assert_eq!(Committed.transition(Released), Err(Committed));
        assert_eq!(Released.transition(Committed), Err(Released));
        assert_eq!(Reserved.transition(Reserved), Ok(None));
        assert_eq!(Committed.transition(Returned), Ok(Some(Returned)));
        assert_eq!(Returned.transition(Returned), Ok(None));
        assert_eq!(Reserved.transition(Returned), Err(Reserved));
        assert_eq!(Released.transition(Returned), Err(Released));
        assert_eq!(Returned.transition(Committed), Err(Returned));
    }

    #[test]
    fn search_terms_cannot_carry_query_syntax() {
        let terms = SearchTerms::parse(r#"  "Red" MUG* & | !x:* ' -- ; drop"#).unwrap();
        assert_eq!(terms.to_tsquery(), "red:* & mug:* & x:* & drop:*");
        assert_eq!(terms.to_fts5(), r#""red"* "mug"* "x"* "drop"*"#);
        assert!(
            SearchTerms::parse("  !!! ").unwrap().is_empty(),
            "valid, matches nothing"
        );
        assert!(SearchTerms::parse("mug\u{0}").is_err());
        assert!(SearchTerms::parse("red\tmug\n").is_ok());
        assert!(SearchTerms::parse(&"a".repeat(201)).is_err());
        let unicode = SearchTerms::parse("Café Ünïcode 東京").unwrap();
        assert_eq!(unicode.to_tsquery(), "café:* & ünïcode:* & 東京:*");
        let many = SearchTerms::parse(&"w ".repeat(50)).unwrap();
        assert_eq!(many.to_fts5().matches('*').count(), SearchTerms::MAX_TERMS);
    }

    #[test]
    fn quantities_and_stock_reject_impossible_values() {
        assert!(Quantity::new(0).is_err());
        assert_eq!(Quantity::new(3).unwrap().get(), 3);
        assert!(Stock::new(-1).is_err());
        assert!(Stock::new(Stock::MAX).is_ok());
        assert!(Stock::new(Stock::MAX + 1).is_err());
        assert_eq!(Stock::new(0).unwrap().get(), 0);
    }

    #[test]
    fn filters_have_distinct_cache_keys() {
        let a = ProductFilter::default();
        let b = ProductFilter {
            in_stock: Some(true),
            ..ProductFilter::default()
        };
        assert_ne!(a.cache_key(), b.cache_key());
    }
}
