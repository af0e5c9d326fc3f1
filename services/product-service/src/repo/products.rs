//! The `products` table: catalog rows, list and search queries, and the conditional updates
//! that keep `0 <= reserved <= stock` under any concurrency.

use chrono::{DateTime, Utc};
use platform_http::PageRequest;
use platform_money::{Currency, Money};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, ExprTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use uuid::Uuid;

use super::entities::product;
use crate::domain::{
    Category, Description, ImageUrl, Product, ProductFilter, ProductId, ProductName, ProductSort,
    SearchTerms, Sku,
};

fn corrupt(what: &str, id: Uuid) -> DbErr {
    DbErr::Type(format!(
        "product {id} has an invalid {what} in the database"
    ))
}

impl TryFrom<product::Model> for Product {
    type Error = DbErr;

    fn try_from(row: product::Model) -> Result<Self, DbErr> {
        let id = row.id;
        let currency = Currency::parse(&row.currency).map_err(|_| corrupt("currency", id))?;
        Ok(Product {
            id: ProductId::from_uuid(id),
            sku: Sku::parse(&row.sku).map_err(|_| corrupt("sku", id))?,
            name: ProductName::parse(&row.name).map_err(|_| corrupt("name", id))?,
            description: Description::parse(&row.description)
                .map_err(|_| corrupt("description", id))?,
            category: Category::parse(&row.category).map_err(|_| corrupt("category", id))?,
            price: Money::new(row.price_amount, currency).map_err(|_| corrupt("price", id))?,
            stock: row.stock,
            reserved: row.reserved,
            image_url: row
                .image_url
                .as_deref()
                .map(ImageUrl::parse)
                .transpose()
                .map_err(|_| corrupt("image_url", id))?,
            archived: row.archived_at.is_some(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn products(rows: Vec<product::Model>) -> Result<Vec<Product>, DbErr> {
    rows.into_iter().map(Product::try_from).collect()
}

/// Inserts a new product. A duplicate SKU fails with a unique violation.
pub async fn insert<C: ConnectionTrait>(conn: &C, product: &Product) -> Result<(), DbErr> {
    product::ActiveModel {
        id: Set(product.id.as_uuid()),
        sku: Set(product.sku.as_str().to_owned()),
        name: Set(product.name.as_str().to_owned()),
        description: Set(product.description.as_str().to_owned()),
        category: Set(product.category.as_str().to_owned()),
        price_amount: Set(product.price.amount()),
        currency: Set(product.price.currency().as_str().to_owned()),
        stock: Set(product.stock),
        reserved: Set(product.reserved),
        image_url: Set(product.image_url.as_ref().map(|u| u.as_str().to_owned())),
        archived_at: Set(None),
        created_at: Set(product.created_at),
        updated_at: Set(product.updated_at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// A product by id, archived or not.
pub async fn find<C: ConnectionTrait>(conn: &C, id: ProductId) -> Result<Option<Product>, DbErr> {
    product::Entity::find_by_id(id.as_uuid())
        .one(conn)
        .await?
        .map(Product::try_from)
        .transpose()
}

/// Products by id (archived included); unknown ids are left out.
pub async fn find_many<C: ConnectionTrait>(
    conn: &C,
    ids: &[ProductId],
) -> Result<Vec<Product>, DbErr> {
    let rows = product::Entity::find()
        .filter(product::Column::Id.is_in(ids.iter().map(ProductId::as_uuid)))
        .all(conn)
        .await?;
    products(rows)
}

pub async fn count<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    product::Entity::find().count(conn).await
}

/// One page of the active catalog under `filter`, and the total count.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &ProductFilter,
    page: PageRequest,
) -> Result<(Vec<Product>, u64), DbErr> {
    let mut query = product::Entity::find().filter(product::Column::ArchivedAt.is_null());
    if let Some(category) = &filter.category {
        query = query.filter(product::Column::Category.eq(category.as_str()));
    }
    if let Some(min) = filter.min_price {
        query = query.filter(product::Column::PriceAmount.gte(min));
    }
    if let Some(max) = filter.max_price {
        query = query.filter(product::Column::PriceAmount.lte(max));
    }
    let available = Expr::col(product::Column::Stock).sub(Expr::col(product::Column::Reserved));
    match filter.in_stock {
        Some(true) => query = query.filter(available.gt(0)),
        Some(false) => query = query.filter(available.lte(0)),
        None => {}
    }
    let total = query.clone().count(conn).await?;
    query = match filter.sort {
        ProductSort::PriceAsc => query.order_by_asc(product::Column::PriceAmount),
        ProductSort::PriceDesc => query.order_by_desc(product::Column::PriceAmount),
        ProductSort::Name => query.order_by_asc(product::Column::Name),
        ProductSort::Newest => query.order_by_desc(product::Column::CreatedAt),
    };
    // A total order, so pages never overlap or skip rows with equal sort keys.
    let rows = query
        .order_by_asc(product::Column::Id)
        .offset(page.offset())
        .limit(page.per_page())
        .all(conn)
        .await?;
    Ok((products(rows)?, total))
}

const COLUMNS: &str = "products.id, products.sku, products.name, products.description, \
    products.category, products.price_amount, products.currency, products.stock, \
    products.reserved, products.image_url, products.archived_at, products.created_at, \
    products.updated_at";

#[derive(FromQueryResult)]
struct Total {
    total: i64,
}

/// Full-text search over the active catalog: every word must match (as a prefix), best
/// matches first, and a product whose name is exactly the query before anything else.
pub async fn search<C: ConnectionTrait>(
    conn: &C,
    terms: &SearchTerms,
    page: PageRequest,
) -> Result<(Vec<Product>, u64), DbErr> {
    let backend = conn.get_database_backend();
    let limit = i64::try_from(page.per_page()).unwrap_or(i64::MAX);
    let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
    let (select, count) = match backend {
        DbBackend::Postgres => {
            let query = terms.to_tsquery();
            (
                Statement::from_sql_and_values(
                    backend,
                    format!(
                        "SELECT {COLUMNS} FROM products
                         WHERE archived_at IS NULL AND search @@ to_tsquery('simple', $1)
                         ORDER BY (lower(name) = lower($2)) DESC,
                                  ts_rank(search, to_tsquery('simple', $1)) DESC, id
                         LIMIT $3 OFFSET $4"
                    ),
                    [
                        query.clone().into(),
                        terms.phrase().into(),
                        limit.into(),
                        offset.into(),
                    ],
                ),
                Statement::from_sql_and_values(
                    backend,
                    "SELECT count(*) AS total FROM products
                     WHERE archived_at IS NULL AND search @@ to_tsquery('simple', $1)",
                    [query.into()],
                ),
            )
        }
        _ => {
            let query = terms.to_fts5();
            (
                Statement::from_sql_and_values(
                    backend,
                    format!(
                        "SELECT {COLUMNS} FROM products_fts
                         JOIN products ON products.rowid = products_fts.rowid
                         WHERE products_fts MATCH ? AND products.archived_at IS NULL
                         ORDER BY (lower(products.name) = lower(?)) DESC,
                                  bm25(products_fts, 10.0, 10.0, 4.0, 1.0), products.id
                         LIMIT ? OFFSET ?"
                    ),
                    [
                        query.clone().into(),
                        terms.phrase().into(),
                        limit.into(),
                        offset.into(),
                    ],
                ),
                Statement::from_sql_and_values(
                    backend,
                    "SELECT count(*) AS total FROM products_fts
                     JOIN products ON products.rowid = products_fts.rowid
                     WHERE products_fts MATCH ? AND products.archived_at IS NULL",
                    [query.into()],
                ),
            )
        }
    };
    let total = Total::find_by_statement(count)
        .one(conn)
        .await?
        .map_or(0, |row| u64::try_from(row.total).unwrap_or(0));
    let rows = product::Entity::find()
        .from_raw_sql(select)
        .all(conn)
        .await?;
    Ok((products(rows)?, total))
}

/// Takes the product's row lock (and, on SQLite, the database write lock) before a
/// read-modify-write, so concurrent updates of one product apply one after the other instead of
/// losing one (PostgreSQL) or failing with `SQLITE_BUSY` (SQLite). `false` when there is no
/// such product.
pub async fn lock<C: ConnectionTrait>(conn: &C, id: ProductId) -> Result<bool, DbErr> {
    let result = product::Entity::update_many()
        .col_expr(
            product::Column::UpdatedAt,
            Expr::col(product::Column::UpdatedAt),
        )
        .filter(product::Column::Id.eq(id.as_uuid()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Writes every catalog field of `product` (not stock or reservations); `false` when there
/// is no such product or it is archived.
pub async fn update_details<C: ConnectionTrait>(
    conn: &C,
    product: &Product,
) -> Result<bool, DbErr> {
    let result = product::Entity::update_many()
        .col_expr(product::Column::Sku, Expr::value(product.sku.as_str()))
        .col_expr(product::Column::Name, Expr::value(product.name.as_str()))
        .col_expr(
            product::Column::Description,
            Expr::value(product.description.as_str()),
        )
        .col_expr(
            product::Column::Category,
            Expr::value(product.category.as_str()),
        )
        .col_expr(
            product::Column::PriceAmount,
            Expr::value(product.price.amount()),
        )
        .col_expr(
            product::Column::Currency,
            Expr::value(product.price.currency().as_str()),
        )
        .col_expr(
            product::Column::ImageUrl,
            Expr::value(product.image_url.as_ref().map(|u| u.as_str().to_owned())),
        )
        .col_expr(product::Column::UpdatedAt, Expr::value(product.updated_at))
        .filter(product::Column::Id.eq(product.id.as_uuid()))
        .filter(product::Column::ArchivedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Archives the product; `false` when there is none or it already is.
pub async fn archive<C: ConnectionTrait>(
    conn: &C,
    id: ProductId,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = product::Entity::update_many()
        .col_expr(product::Column::ArchivedAt, Expr::value(at))
        .col_expr(product::Column::UpdatedAt, Expr::value(at))
        .filter(product::Column::Id.eq(id.as_uuid()))
        .filter(product::Column::ArchivedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A change of stock, applied only when it keeps `reserved <= stock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    Set(i64),
    Adjust(i64),
}

/// Applies `change`; `false` when the product does not exist, or the result would fall below
/// the reserved quantity or rise above [`crate::domain::Stock::MAX`] (the caller tells them
/// apart). A delta is within ±`Stock::MAX` (the request is refused otherwise), so the sum
/// cannot overflow.
pub async fn change_stock<C: ConnectionTrait>(
    conn: &C,
    id: ProductId,
    change: StockChange,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let new_stock = match change {
        StockChange::Set(stock) => Expr::value(stock),
        StockChange::Adjust(delta) => Expr::col(product::Column::Stock).add(delta),
    };
    let result = product::Entity::update_many()
        .col_expr(product::Column::Stock, new_stock.clone())
        .col_expr(product::Column::UpdatedAt, Expr::value(at))
        .filter(product::Column::Id.eq(id.as_uuid()))
        .filter(new_stock.clone().gte(Expr::col(product::Column::Reserved)))
        .filter(new_stock.lte(crate::domain::Stock::MAX))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Holds `quantity` units for a reservation, only if that many are available and the product
/// is active; answers with the product as changed (`None`: not held). One statement:
/// concurrent reservations can never both take the last unit.
pub async fn reserve_units<C: ConnectionTrait>(
    conn: &C,
    id: ProductId,
    quantity: i64,
    at: DateTime<Utc>,
) -> Result<Option<Product>, DbErr> {
    let available = Expr::col(product::Column::Stock).sub(Expr::col(product::Column::Reserved));
    let mut result = product::Entity::update_many()
        .col_expr(
            product::Column::Reserved,
            Expr::col(product::Column::Reserved).add(quantity),
        )
        .col_expr(product::Column::UpdatedAt, Expr::value(at))
        .filter(product::Column::Id.eq(id.as_uuid()))
        .filter(product::Column::ArchivedAt.is_null())
        .filter(available.gte(quantity))
        .exec_with_returning(conn)
        .await?;
    result.pop().map(Product::try_from).transpose()
}

/// What settling a reservation does to a product's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Reserved units go back to available.
    Release,
    /// Reserved units leave stock: sold.
    Sell,
    /// Sold units come back into stock.
    Return,
}

/// Applies `settlement` to `quantity` units; answers with the product as changed, `None`
/// when the product does not hold that many reserved units (a release or sale of more than
/// was reserved).
pub async fn settle_units<C: ConnectionTrait>(
    conn: &C,
    id: ProductId,
    quantity: i64,
    settlement: Settlement,
    at: DateTime<Utc>,
) -> Result<Option<Product>, DbErr> {
    let mut update = product::Entity::update_many()
        .col_expr(product::Column::UpdatedAt, Expr::value(at))
        .filter(product::Column::Id.eq(id.as_uuid()));
    if settlement == Settlement::Return {
        update = update.col_expr(
            product::Column::Stock,
            Expr::col(product::Column::Stock).add(quantity),
        );
    } else {
        update = update
            .col_expr(
                product::Column::Reserved,
                Expr::col(product::Column::Reserved).sub(quantity),
            )
            .filter(product::Column::Reserved.gte(quantity));
    }
    if settlement == Settlement::Sell {
        update = update.col_expr(
            product::Column::Stock,
            Expr::col(product::Column::Stock).sub(quantity),
        );
    }
    update
        .exec_with_returning(conn)
        .await?
        .pop()
        .map(Product::try_from)
        .transpose()
}
