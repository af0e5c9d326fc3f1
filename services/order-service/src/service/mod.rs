//! The order use cases: place (prices from the catalog, never the client; idempotent per key),
//! read, list, ship and deliver (administrators), cancel; and the effect of
//! `payment.refunded` on an order. Checkout itself is the saga's ([`crate::saga`]).
//!
//! Layout: this module holds the use cases' types and the reads; `place` places an order
//! and waits for its checkout, `lifecycle` moves it on afterwards (ship, deliver, cancel,
//! refund), `payment_events` applies what the payment service reports about it.

mod lifecycle;
mod payment_events;
mod place;

use platform_auth::{AuthUser, UserId};
use platform_http::audit::Audit;
use platform_http::{Page, PageRequest};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::clients::CallError;
use crate::domain::{CardToken, OrderId, OrderStatus, Quantity, ShippingAddress};
use crate::repo::{self, OrderRow};
use crate::saga::{Saga, SagaError};
use crate::view::{CorruptRow, OrderView};

/// Everything a use case can fail with. The HTTP layer maps these to problems.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// No such order, or one the caller may not see (indistinguishable on purpose).
    #[error("order not found")]
    NotFound,
    #[error("unknown products: {0:?}")]
    UnknownProducts(Vec<Uuid>),
    #[error("the products are priced in different currencies")]
    MixedCurrencies,
    #[error("the order total is too large")]
    TotalTooLarge,
    #[error("this idempotency key was used for a different request")]
    KeyReused,
    #[error("an order that is {0} cannot become {1}")]
    InvalidTransition(OrderStatus, OrderStatus),
    #[error("{0} orders cannot be cancelled")]
    NotCancellable(OrderStatus),
    #[error("the catalog is unavailable: {0}")]
    Catalog(CallError),
    #[error("the payment service is unavailable: {0}")]
    Payments(CallError),
    #[error("a {0} order has nothing to refund here")]
    NotRefundable(OrderStatus),
    #[error("the payment service refused the refund: {0}")]
    RefundRefused(String),
    /// The payment service judged the request itself invalid: in practice its
    /// `Idempotency-Key` was used before for a different refund.
    #[error("the payment service refused the refund request: {0}")]
    RefundRequestInvalid(String),
    #[error("the order has refunds; it ships only with force and a reason")]
    RefundedCannotShip,
    #[error("the refund must be in the order's currency ({0})")]
    WrongCurrency(String),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("{0}")]
    Corrupt(#[from] CorruptRow),
    #[error("{0}")]
    Saga(#[from] SagaError),
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One line as the client asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedLine {
    pub product_id: Uuid,
    pub quantity: Quantity,
}

/// An order to place, validated.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    pub lines: Vec<WantedLine>,
    pub token: CardToken,
    pub shipping_address: ShippingAddress,
    pub idempotency_key: String,
}

/// A use case's answer, and whether it is the replay of an earlier request.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: OrderView,
    pub replayed: bool,
}

/// The use cases. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Orders {
    db: DatabaseConnection,
    saga: Saga,
    source: String,
    /// Automatic refunds (late captures) are audited, with this service as the actor.
    audit: Audit,
}

impl Orders {
    pub fn new(db: DatabaseConnection, saga: Saga, source: &str, audit: Audit) -> Self {
        Self {
            db,
            saga,
            source: source.to_owned(),
            audit,
        }
    }

    pub fn saga(&self) -> &Saga {
        &self.saga
    }

    async fn view(&self, row: &OrderRow) -> Result<OrderView, OrderError> {
        let items = repo::items(&self.db, &[row.id]).await?;
        Ok(OrderView::build(row, &items)?)
    }

    async fn visible(&self, caller: AuthUser, id: OrderId) -> Result<OrderRow, OrderError> {
        repo::find(&self.db, id)
            .await?
            .filter(|row| caller.may_access(UserId::from_uuid(row.user_id)))
            .ok_or(OrderError::NotFound)
    }

    pub async fn get(&self, caller: AuthUser, id: OrderId) -> Result<OrderView, OrderError> {
        let row = self.visible(caller, id).await?;
        self.view(&row).await
    }

    /// The caller's orders (an administrator's: everyone's), newest first.
    pub async fn list(
        &self,
        caller: AuthUser,
        status: Option<OrderStatus>,
        page: PageRequest,
    ) -> Result<Page<OrderView>, OrderError> {
        let user = (!caller.is_admin()).then_some(caller.id.as_uuid());
        let (rows, total) = repo::list(&self.db, user, status, page).await?;
        let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
        let items = repo::items(&self.db, &ids).await?;
        let views = rows
            .iter()
            .map(|row| OrderView::build(row, &items))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.into_page(views, total))
    }
}
