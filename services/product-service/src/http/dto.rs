//! Wire types of the REST API and their conversion to domain types. Every invalid field is
//! named in one 422.

use platform_http::{FieldErrors, Problem};
use platform_money::{Currency, Money};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use platform_http::text;

use crate::domain::{
    Category, Description, IMAGE_URL_PATTERN, ImageUrl, ProductFilter, ProductName, ProductSort,
    SKU_PATTERN, SearchTerms, Sku, Stock,
};
use crate::repo::products::StockChange;
use crate::service::{NewProduct, ProductChange};

/// A price as sent by clients; checked field by field so errors name `price.amount` etc.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    /// Minor units (cents), greater than zero.
    #[schema(example = 1999, minimum = 1)]
    #[serde(deserialize_with = "platform_http::number::integer")]
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(example = "EUR", schema_with = platform_money::currency_schema)]
    pub currency: String,
}

impl PriceInput {
    fn parse(&self, errors: &mut FieldErrors) -> Option<Money> {
        let currency = errors.check("price.currency", Currency::parse(&self.currency))?;
        errors.check("price.amount", Money::new(self.amount, currency))
    }
}

/// `POST /api/v1/admin/products`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sku": "MUG-001", "name": "Ceramic mug", "description": "350 ml, dishwasher safe", "category": "kitchen", "price": {"amount": 1299, "currency": "EUR"}, "stock": 40}))]
pub struct CreateProductRequest {
    /// Letters, digits, `-`, `_`, `.`; at most 64; unique (case-insensitive).
    #[schema(schema_with = sku_schema)]
    pub sku: String,
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = description_schema)]
    pub description: String,
    #[schema(schema_with = category_schema)]
    pub category: String,
    pub price: PriceInput,
    /// Units on hand (default 0).
    #[serde(deserialize_with = "platform_http::number::integer", default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub stock: i64,
    #[schema(schema_with = image_url_or_null_schema)]
    pub image_url: Option<String>,
}

// The text fields' rules, as the domain types check them.
fn sku_schema() -> utoipa::openapi::Object {
    text::pattern_schema(SKU_PATTERN, Sku::MAX_CHARS)
}
fn sku_or_null_schema() -> utoipa::openapi::Object {
    text::pattern_schema_or_null(SKU_PATTERN, Sku::MAX_CHARS)
}
fn name_schema() -> utoipa::openapi::Object {
    text::pattern_schema(text::LINE_PATTERN, ProductName::MAX_CHARS)
}
fn name_or_null_schema() -> utoipa::openapi::Object {
    text::pattern_schema_or_null(text::LINE_PATTERN, ProductName::MAX_CHARS)
}
fn description_schema() -> utoipa::openapi::Object {
    text::pattern_schema(text::TEXT_PATTERN, Description::MAX_CHARS)
}
fn description_or_null_schema() -> utoipa::openapi::Object {
    text::pattern_schema_or_null(text::TEXT_PATTERN, Description::MAX_CHARS)
}
fn category_schema() -> utoipa::openapi::Object {
    text::pattern_schema(text::LINE_PATTERN, Category::MAX_CHARS)
}
fn category_or_null_schema() -> utoipa::openapi::Object {
    text::pattern_schema_or_null(text::LINE_PATTERN, Category::MAX_CHARS)
}
fn image_url_or_null_schema() -> utoipa::openapi::Object {
    text::pattern_schema_or_null(IMAGE_URL_PATTERN, ImageUrl::MAX_CHARS)
}

impl CreateProductRequest {
    pub fn parse(self) -> Result<NewProduct, Problem> {
        let mut errors = FieldErrors::new();
        let sku = errors.check("sku", Sku::parse(&self.sku));
        let name = errors.check("name", ProductName::parse(&self.name));
        let description = errors.check("description", Description::parse(&self.description));
        let category = errors.check("category", Category::parse(&self.category));
        let price = self.price.parse(&mut errors);
        let stock = errors.check("stock", Stock::new(self.stock));
        let image_url = match self.image_url.as_deref() {
            Some(url) => errors.check("image_url", ImageUrl::parse(url)).map(Some),
            None => Some(None),
        };
        match (sku, name, description, category, price, stock, image_url) {
            (
                Some(sku),
                Some(name),
                Some(description),
                Some(category),
                Some(price),
                Some(stock),
                Some(image_url),
            ) => Ok(NewProduct {
                sku,
                name,
                description,
                category,
                price,
                stock,
                image_url,
            }),
            _ => Err(errors.into_problem()),
        }
    }
}

/// `PUT /api/v1/admin/products/{id}`: every field optional; `image_url: null` removes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"price": {"amount": 1099, "currency": "EUR"}}))]
pub struct UpdateProductRequest {
    #[schema(schema_with = sku_or_null_schema)]
    pub sku: Option<String>,
    #[schema(schema_with = name_or_null_schema)]
    pub name: Option<String>,
    #[schema(schema_with = description_or_null_schema)]
    pub description: Option<String>,
    #[schema(schema_with = category_or_null_schema)]
    pub category: Option<String>,
    pub price: Option<PriceInput>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = image_url_or_null_schema)]
    pub image_url: Option<Option<String>>,
}

/// Tells `"image_url": null` (remove) from a missing field (keep).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl UpdateProductRequest {
    pub fn parse(self) -> Result<ProductChange, Problem> {
        let mut errors = FieldErrors::new();
        let change = ProductChange {
            sku: self.sku.and_then(|v| errors.check("sku", Sku::parse(&v))),
            name: self
                .name
                .and_then(|v| errors.check("name", ProductName::parse(&v))),
            description: self
                .description
                .and_then(|v| errors.check("description", Description::parse(&v))),
            category: self
                .category
                .and_then(|v| errors.check("category", Category::parse(&v))),
            price: self.price.and_then(|p| p.parse(&mut errors)),
            image_url: match self.image_url {
                Some(Some(url)) => errors.check("image_url", ImageUrl::parse(&url)).map(Some),
                Some(None) => Some(None),
                None => None,
            },
        };
        errors.finish()?;
        Ok(change)
    }
}

/// `PUT /api/v1/admin/products/{id}/inventory`: exactly one of `stock` (set) or `delta`
/// (adjust).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryRequest {
    #[serde(default, deserialize_with = "platform_http::number::optional_integer")]
    pub stock: Option<i64>,
    #[serde(default, deserialize_with = "platform_http::number::optional_integer")]
    pub delta: Option<i64>,
}

/// Exactly one of `stock` (0 or more) and `delta` (not zero).
impl utoipa::PartialSchema for InventoryRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        platform_http::contract::json_schema(serde_json::json!({
            "description": "Set the units on hand (`stock`), or adjust them (`delta`).",
            "example": {"delta": -3},
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["stock"],
                    "properties": {
                        "stock": {"type": "integer", "format": "int64", "minimum": 0, "maximum": Stock::MAX},
                        "delta": {"type": "null"},
                    },
                },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["delta"],
                    "properties": {
                        "stock": {"type": "null"},
                        "delta": {"anyOf": [
                            {"type": "integer", "format": "int64", "minimum": -Stock::MAX, "maximum": -1},
                            {"type": "integer", "format": "int64", "minimum": 1, "maximum": Stock::MAX},
                        ]},
                    },
                },
            ],
        }))
    }
}

impl utoipa::ToSchema for InventoryRequest {}

impl InventoryRequest {
    pub fn parse(self) -> Result<StockChange, Problem> {
        match (self.stock, self.delta) {
            (Some(stock), None) => Stock::new(stock)
                .map(|s| StockChange::Set(s.get()))
                .map_err(|e| Problem::invalid_field("stock", e.to_string())),
            (None, Some(0)) => Err(Problem::invalid_field("delta", "must not be zero")),
            (None, Some(delta)) if delta.unsigned_abs() > Stock::MAX.unsigned_abs() => Err(
                Problem::invalid_field("delta", format!("must be within ±{}", Stock::MAX)),
            ),
            (None, Some(delta)) => Ok(StockChange::Adjust(delta)),
            _ => Err(Problem::invalid_field(
                "stock",
                "exactly one of `stock` and `delta` is required",
            )),
        }
    }
}

/// List filters (besides `page` and `per_page`). Taken as text so a bad value is a 422
/// naming the parameter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this category (case-insensitive).
    #[param(schema_with = category_schema)]
    pub category: Option<String>,
    /// Minimum price in minor units, inclusive.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_price: Option<String>,
    /// Maximum price in minor units, inclusive (below `min_price`: nothing matches).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub max_price: Option<String>,
    /// `true` (or `1`): only products with units available; `false` (or `0`): only sold-out
    /// ones.
    #[param(schema_with = in_stock_schema)]
    pub in_stock: Option<String>,
    /// `price_asc`, `price_desc`, `name` or `newest` (default).
    #[param(schema_with = sort_schema)]
    pub sort: Option<String>,
}

fn in_stock_schema() -> utoipa::openapi::Object {
    platform_http::contract::string_enum(["true", "false", "1", "0"])
}

fn sort_schema() -> utoipa::openapi::Object {
    platform_http::contract::string_enum(ProductSort::ALL.map(|s| s.as_str()))
}

impl ListQuery {
    pub fn parse(self) -> Result<ProductFilter, Problem> {
        let mut errors = FieldErrors::new();
        let mut price = |field: &str, raw: Option<String>| {
            raw.and_then(|raw| match raw.trim().parse::<i64>() {
                Ok(value) if value >= 0 => Some(value),
                _ => {
                    errors.add(field, "must be a whole number of minor units, 0 or more");
                    None
                }
            })
        };
        let min_price = price("min_price", self.min_price);
        let max_price = price("max_price", self.max_price);
        let filter = ProductFilter {
            category: self
                .category
                .and_then(|c| errors.check("category", Category::parse(&c))),
            min_price,
            max_price,
            in_stock: self.in_stock.and_then(|raw| match raw.as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => {
                    errors.add("in_stock", "must be true or false");
                    None
                }
            }),
            sort: match self.sort.as_deref() {
                None => ProductSort::default(),
                Some(raw) => ProductSort::parse(raw).unwrap_or_else(|| {
                    errors.add("sort", "must be price_asc, price_desc, name or newest");
                    ProductSort::default()
                }),
            },
        };
        errors.finish()?;
        Ok(filter)
    }
}

/// `GET /api/v1/products/search`
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to find in name, description, category or SKU (prefixes match). Without a
    /// letter or digit it matches nothing.
    ///
    /// (`schema_with` would drop `required`, so the pattern is spelled out here; a test holds
    /// it to `SearchTerms::PATTERN`.)
    #[param(value_type = String, required = true, pattern = "^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub q: Option<String>,
}

impl SearchQuery {
    pub fn parse(self) -> Result<SearchTerms, Problem> {
        // Absent, or empty (which the kit reads as absent): a 422 naming it.
        let raw = self
            .q
            .ok_or_else(|| Problem::invalid_field("q", "is required"))?;
        SearchTerms::parse(&raw).map_err(|message| Problem::invalid_field("q", message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_search_pattern_is_the_one_parsed() {
        let parameters = <SearchQuery as IntoParams>::into_params(|| {
            Some(utoipa::openapi::path::ParameterIn::Query)
        });
        let q = serde_json::to_value(&parameters[0]).unwrap();
        assert_eq!(q["name"], "q");
        assert_eq!(q["required"], true);
        assert_eq!(q["schema"]["pattern"], SearchTerms::PATTERN);
    }
}
