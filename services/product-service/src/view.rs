//! What reads return: the product as clients see it. Cached as it is (in process and in
//! Redis) and served without further work, so it is a plain serializable snapshot.

use chrono::{DateTime, Utc};
use platform_money::Money;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Product;

/// A catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    #[schema(example = "MUG-001")]
    pub sku: String,
    #[schema(example = "Ceramic mug")]
    pub name: String,
    pub description: String,
    #[schema(example = "kitchen")]
    pub category: String,
    pub price: Money,
    /// Units on hand.
    pub stock: i64,
    /// Units held by orders in progress.
    pub reserved: i64,
    /// `stock - reserved`: what can still be ordered.
    pub available: i64,
    pub image_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Product> for ProductView {
    fn from(product: &Product) -> Self {
        Self {
            id: product.id.as_uuid(),
            sku: product.sku.to_string(),
            name: product.name.to_string(),
            description: product.description.to_string(),
            category: product.category.to_string(),
            price: product.price,
            stock: product.stock,
            reserved: product.reserved,
            available: product.available(),
            image_url: product.image_url.as_ref().map(ToString::to_string),
            created_at: product.created_at,
            updated_at: product.updated_at,
        }
    }
}
