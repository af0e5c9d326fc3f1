//! Wire types of the REST API and their conversion to domain types. Every invalid field is
//! named in one 422.

use platform_http::{FieldErrors, Problem};
use platform_money::{Currency, Money};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::{
    Category, Description, ImageUrl, ProductFilter, ProductName, ProductSort, SearchTerms, Sku,
    Stock,
};
use crate::repo::products::StockChange;
use crate::service::{NewProduct, ProductChange};

/// A price as sent by clients; checked field by field so errors name `price.amount` etc.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    /// Minor units (cents), greater than zero.
    #[schema(example = 1999, minimum = 1)]
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
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
    pub sku: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    #[schema(min_length = 1, max_length = 64)]
    pub category: String,
    pub price: PriceInput,
    /// Units on hand (default 0).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub stock: i64,
    pub image_url: Option<String>,
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
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Option<PriceInput>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"delta": -3}))]
pub struct InventoryRequest {
    #[schema(minimum = 0)]
    pub stock: Option<i64>,
    pub delta: Option<i64>,
}

impl InventoryRequest {
    pub fn parse(self) -> Result<StockChange, Problem> {
        match (self.stock, self.delta) {
            (Some(stock), None) => Stock::new(stock)
                .map(|s| StockChange::Set(s.get()))
                .map_err(|e| Problem::invalid_field("stock", e.to_string())),
            (None, Some(0)) => Err(Problem::invalid_field("delta", "must not be zero")),
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
    pub category: Option<String>,
    /// Minimum price in minor units, inclusive.
    #[param(value_type = Option<i64>)]
    pub min_price: Option<String>,
    /// Maximum price in minor units, inclusive.
    #[param(value_type = Option<i64>)]
    pub max_price: Option<String>,
    /// `true`: only products with units available; `false`: only sold-out ones.
    #[param(value_type = Option<bool>)]
    pub in_stock: Option<String>,
    /// `price_asc`, `price_desc`, `name` or `newest` (default).
    pub sort: Option<String>,
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
        if let (Some(min), Some(max)) = (filter.min_price, filter.max_price)
            && min > max
        {
            errors.add("min_price", "must not exceed max_price");
        }
        errors.finish()?;
        Ok(filter)
    }
}

/// `GET /api/v1/products/search`
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to find in name, description, category or SKU (prefixes match).
    pub q: Option<String>,
}

impl SearchQuery {
    pub fn parse(self) -> Result<SearchTerms, Problem> {
        let raw = self
            .q
            .ok_or_else(|| Problem::invalid_field("q", "is required"))?;
        SearchTerms::parse(&raw).map_err(|message| Problem::invalid_field("q", message))
    }
}
