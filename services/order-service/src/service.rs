//! The order use cases: place (prices from the catalog, never the client; idempotent per key),
//! read, list, ship and deliver (administrators), cancel; and the effect of
//! `payment.refunded` on an order. Checkout itself is the saga's ([`crate::saga`]).

use std::collections::HashMap;
use std::time::Duration;
use tracing::Instrument;

use platform_auth::{AuthUser, UserId};
use std::sync::Arc;

use platform_events::catalogue::{
    OrderCreated, OrderDelivered, OrderFacts, OrderLine, OrderShipped, PaymentCaptured,
    PaymentRefunded,
};
use platform_events::{Envelope, idempotency, outbox};
use platform_http::audit::{
    Action, Actor, Audit, AuditContext, AuditEvent, Outcome as AuditOutcome,
};
use platform_http::{Page, PageRequest, fingerprint};
use platform_money::{Currency, Money};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::clients::CallError;
use crate::domain::{OrderId, OrderStatus, PaymentToken, Quantity, ShippingAddress, now};
use crate::repo::{self, ItemRow, OrderRow};
use crate::saga::{Driven, Saga, SagaError};
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
    pub token: PaymentToken,
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

    /// Places an order and runs its checkout for up to the configured wait. A repeat of the
    /// same request under the same key answers with the order it placed.
    pub async fn place(&self, caller: AuthUser, command: PlaceOrder) -> Result<Placed, OrderError> {
        let request_hash = request_hash(&command);
        if let Some(existing) =
            repo::find_by_key(&self.db, caller.id.as_uuid(), &command.idempotency_key).await?
        {
            return self.replay(existing, &request_hash).await;
        }

        // Prices and names come from the catalog, as it is now.
        let mut ids: Vec<Uuid> = command.lines.iter().map(|l| l.product_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let products = self
            .saga
            .clients()
            .get_products(ids.iter().map(Uuid::to_string).collect())
            .await
            .map_err(OrderError::Catalog)?;
        let catalog: HashMap<Uuid, _> = products
            .into_iter()
            .filter(|p| !p.archived)
            .filter_map(|p| Uuid::parse_str(&p.id).ok().map(|id| (id, p)))
            .collect();
        let unknown: Vec<Uuid> = ids
            .iter()
            .filter(|id| !catalog.contains_key(id))
            .copied()
            .collect();
        if !unknown.is_empty() {
            return Err(OrderError::UnknownProducts(unknown));
        }

        let id = OrderId::generate();
        let mut total: Option<Money> = None;
        let mut items = Vec::with_capacity(command.lines.len());
        let mut lines = Vec::with_capacity(command.lines.len());
        for (index, wanted) in command.lines.iter().enumerate() {
            let product = catalog
                .get(&wanted.product_id)
                .ok_or(OrderError::UnknownProducts(vec![wanted.product_id]))?;
            let price = product
                .price
                .as_ref()
                .and_then(|p| {
                    let currency = Currency::parse(&p.currency).ok()?;
                    Money::new(p.amount, currency).ok()
                })
                .ok_or(OrderError::UnknownProducts(vec![wanted.product_id]))?;
            let line_total = price
                .times(wanted.quantity.get())
                .map_err(|_| OrderError::TotalTooLarge)?;
            total = Some(match total {
                None => line_total,
                Some(sum) => sum.plus(line_total).map_err(|error| match error {
                    platform_money::MoneyError::CurrencyMismatch => OrderError::MixedCurrencies,
                    _ => OrderError::TotalTooLarge,
                })?,
            });
            items.push(ItemRow {
                order_id: id.as_uuid(),
                line: i32::try_from(index).unwrap_or(i32::MAX),
                product_id: wanted.product_id,
                name: product.name.clone(),
                quantity: i32::try_from(wanted.quantity.get()).unwrap_or(i32::MAX),
                unit_price: price.amount(),
            });
            lines.push(OrderLine {
                product_id: wanted.product_id,
                name: product.name.clone(),
                quantity: wanted.quantity.get(),
                unit_price: price.amount(),
            });
        }
        let total = total.ok_or(OrderError::UnknownProducts(Vec::new()))?;

        let at = now();
        let deadline = at
            + chrono::Duration::from_std(self.saga.config().deadline)
                .unwrap_or(chrono::Duration::minutes(2));
        let mut row = OrderRow {
            id: id.as_uuid(),
            user_id: caller.id.as_uuid(),
            status: OrderStatus::Pending.as_str().to_owned(),
            step: crate::domain::Step::Reserve.as_str().to_owned(),
            total: total.amount(),
            currency: total.currency().to_string(),
            shipping_address: serde_json::to_string(&command.shipping_address)?,
            payment_token: Some(command.token.as_str().to_owned()),
            payment_id: None,
            charge_unresolved: false,
            refunded: 0,
            failure_reason: None,
            cancel_requested: false,
            idempotency_key: command.idempotency_key.clone(),
            request_hash: request_hash.clone(),
            deadline,
            lease_owner: None,
            lease_until: None,
            attempts: 0,
            created_at: at,
            updated_at: at,
        };
        self.saga.lease_new(&mut row);
        let created = Envelope::new(
            &self.source,
            &OrderCreated {
                order: OrderFacts {
                    order_id: id.as_uuid(),
                    user_id: caller.id.as_uuid(),
                    total: total.amount(),
                    currency: total.currency().to_string(),
                },
                items: lines,
            },
        )?;
        let txn = platform_db::begin_write(&self.db).await?;
        if let Err(error) = repo::insert(&txn, row.clone(), items.clone()).await {
            drop(txn);
            if !platform_db::is_unique_violation(&error) {
                return Err(error.into());
            }
            // A concurrent repeat of this request placed it first.
            let existing =
                repo::find_by_key(&self.db, caller.id.as_uuid(), &command.idempotency_key)
                    .await?
                    .ok_or(OrderError::Database(error))?;
            return self.replay(existing, &request_hash).await;
        }
        outbox::enqueue(&txn, &created).await?;
        txn.commit().await?;
        tracing::info!(order_id = %id, total = %total, "order placed");

        let saga = self.saga.clone();
        let lines = items.clone();
        let order = self
            .settle(
                id,
                Some(lines),
                async move { saga.drive_new(row, items).await },
            )
            .await?;
        Ok(Placed {
            order,
            replayed: false,
        })
    }

    async fn replay(&self, existing: OrderRow, request_hash: &str) -> Result<Placed, OrderError> {
        if existing.request_hash != request_hash {
            return Err(OrderError::KeyReused);
        }
        let order = self
            .settle_existing(OrderId::from_uuid(existing.id))
            .await?;
        Ok(Placed {
            order,
            replayed: true,
        })
    }

    /// Drives the order's saga (in a task of its own, so a client that goes away cannot stop
    /// it halfway) and waits for it up to the checkout wait; then answers with the order as
    /// it is. When another request or process drives it, waits for that instead.
    async fn settle_existing(&self, id: OrderId) -> Result<OrderView, OrderError> {
        let saga = self.saga.clone();
        self.settle(id, None, async move { saga.drive(id).await })
            .await
    }

    /// Waits for `drive` (the saga of `id`, `items` its lines when known) as
    /// [`Self::settle_existing`] says.
    async fn settle(
        &self,
        id: OrderId,
        items: Option<Vec<ItemRow>>,
        drive: impl Future<Output = Result<Driven, SagaError>> + Send + 'static,
    ) -> Result<OrderView, OrderError> {
        let wait = self.saga.config().checkout_wait;
        // The saga goes on in the request's trace even if the client stops waiting.
        let driving = tokio::spawn(drive.instrument(tracing::Span::current()));
        let deadline = tokio::time::Instant::now() + wait;
        match tokio::time::timeout_at(deadline, driving).await {
            // Confirmed by this call: the row it wrote is the order as it is.
            Ok(Ok(Ok(Driven::Confirmed(row)))) => {
                return match items {
                    Some(items) => Ok(OrderView::build(&row, &items)?),
                    None => self.view(&row).await,
                };
            }
            Ok(Ok(Ok(Driven::Stopped))) | Err(_) => {}
            Ok(Ok(Ok(Driven::Elsewhere))) => {
                // Someone else drives it: watch the row until it settles or time is up.
                while tokio::time::Instant::now() < deadline {
                    let row = repo::find(&self.db, id)
                        .await?
                        .ok_or(OrderError::NotFound)?;
                    if row.step == crate::domain::Step::Done.as_str() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            Ok(Ok(Err(error))) => return Err(error.into()),
            Ok(Err(join)) => {
                tracing::error!(order_id = %id, error = %join, "saga task failed");
            }
        }
        let row = repo::find(&self.db, id)
            .await?
            .ok_or(OrderError::NotFound)?;
        self.view(&row).await
    }

    /// An administrator moves a confirmed order along: `shipped`, then `delivered`. An order
    /// with refunds ships only when `forced` (the caller audits why).
    pub async fn set_status(
        &self,
        id: OrderId,
        to: OrderStatus,
        forced: bool,
    ) -> Result<OrderView, OrderError> {
        let row = repo::find(&self.db, id)
            .await?
            .ok_or(OrderError::NotFound)?;
        let from = OrderStatus::parse(&row.status).ok_or_else(|| CorruptRow {
            id: row.id,
            what: format!("unknown status {:?}", row.status),
        })?;
        if !to.set_by_admin() || !from.allows(to) {
            return Err(OrderError::InvalidTransition(from, to));
        }
        if to == OrderStatus::Shipped && row.refunded > 0 && !forced {
            return Err(OrderError::RefundedCannotShip);
        }
        let at = now();
        let order = OrderFacts {
            order_id: row.id,
            user_id: row.user_id,
            total: row.total,
            currency: row.currency.clone(),
        };
        let event = match to {
            OrderStatus::Shipped => Envelope::new(&self.source, &OrderShipped { order })?,
            _ => Envelope::new(&self.source, &OrderDelivered { order })?,
        };
        let txn = platform_db::begin_write(&self.db).await?;
        if !repo::set_status(&txn, id, from, to, at).await? {
            drop(txn);
            // Moved meanwhile (or its saga is still running): report where it is now.
            let now_row = repo::find(&self.db, id)
                .await?
                .ok_or(OrderError::NotFound)?;
            let current = OrderStatus::parse(&now_row.status).unwrap_or(from);
            return Err(OrderError::InvalidTransition(current, to));
        }
        outbox::enqueue(&txn, &event).await?;
        txn.commit().await?;
        tracing::info!(order_id = %id, %from, %to, "order status set");
        let row = repo::find(&self.db, id)
            .await?
            .ok_or(OrderError::NotFound)?;
        self.view(&row).await
    }

    /// Cancels an order that has not shipped: its stock goes back and what was charged is
    /// refunded. Cancelling a cancelled order changes nothing.
    pub async fn cancel(&self, caller: AuthUser, id: OrderId) -> Result<OrderView, OrderError> {
        let row = self.visible(caller, id).await?;
        let status = OrderStatus::parse(&row.status).ok_or_else(|| CorruptRow {
            id: row.id,
            what: format!("unknown status {:?}", row.status),
        })?;
        if status == OrderStatus::Cancelled || (row.cancel_requested && status.cancellable()) {
            return self.settle_existing(id).await;
        }
        if !status.cancellable() || !repo::request_cancel(&self.db, id, now()).await? {
            let current = repo::find(&self.db, id)
                .await?
                .ok_or(OrderError::NotFound)?;
            let current = OrderStatus::parse(&current.status).unwrap_or(status);
            if current == OrderStatus::Cancelled {
                return self.get(caller, id).await;
            }
            return Err(OrderError::NotCancellable(current));
        }
        tracing::info!(order_id = %id, "cancellation requested");
        self.settle_existing(id).await
    }

    /// An administrator refunds an order. Everything not refunded yet, of an order that has
    /// not shipped, is a cancellation (the stock goes back too, so stock and money agree);
    /// anything else (part of it, or after shipping) refunds the payment through the payment
    /// service, under a key of the request's own, and records it on the order.
    pub async fn refund(
        &self,
        admin: AuthUser,
        id: OrderId,
        amount: Option<Money>,
        reason: String,
        key: &str,
    ) -> Result<Placed, OrderError> {
        let row = self.visible(admin, id).await?;
        let status = OrderStatus::parse(&row.status).ok_or_else(|| CorruptRow {
            id: row.id,
            what: format!("unknown status {:?}", row.status),
        })?;
        if let Some(money) = amount
            && money.currency().as_str() != row.currency
        {
            return Err(OrderError::WrongCurrency(row.currency.clone()));
        }
        let left = row.total - row.refunded;
        let whole = amount.is_none_or(|m| m.amount() == left);
        match status {
            OrderStatus::Confirmed if whole => {
                let order = self.cancel(admin, id).await?;
                return Ok(Placed {
                    order,
                    replayed: false,
                });
            }
            OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered => {}
            other => return Err(OrderError::NotRefundable(other)),
        }
        let Some(payment_id) = row.payment_id else {
            return Err(OrderError::NotRefundable(status));
        };
        let refunded = self
            .saga
            .clients()
            .refund_reporting_replay(platform_proto::payment::v1::RefundRequest {
                payment_id: payment_id.to_string(),
                amount: amount.map(|m| platform_proto::payment::v1::Money {
                    amount: m.amount(),
                    currency: m.currency().to_string(),
                }),
                reason,
                idempotency_key: format!("order-{}-admin-{key}", row.id),
            })
            .await;
        let (paid, replayed) = match refunded {
            Ok(answer) => answer,
            Err(CallError::Refused { status, .. })
                if status.code() == tonic::Code::FailedPrecondition =>
            {
                return Err(OrderError::RefundRefused(status.message().to_owned()));
            }
            Err(CallError::Refused { status, .. })
                if status.code() == tonic::Code::InvalidArgument =>
            {
                return Err(OrderError::RefundRequestInvalid(
                    status.message().to_owned(),
                ));
            }
            Err(error) => return Err(OrderError::Payments(error)),
        };
        repo::record_refunded(&self.db, payment_id, paid.refunded_amount, now()).await?;
        if !replayed {
            tracing::info!(order_id = %id, refunded = paid.refunded_amount, "order refunded by an administrator");
        }
        let order = self.get(admin, id).await?;
        Ok(Placed { order, replayed })
    }

    /// `payment.captured` for an order that had already ended `failed` or `cancelled`: money
    /// taken after the checkout gave up (a payment made directly for the order, a provider that
    /// captured late). It is refunded at once, under a key of its own per payment (so a
    /// redelivered event refunds once), audited, and the customer hears of it from the
    /// refund's notification. `true` when this call asked for the refund.
    pub async fn repair_late_capture(
        &self,
        captured: &PaymentCaptured,
    ) -> Result<bool, OrderError> {
        let facts = &captured.payment;
        let Some(row) = repo::find(&self.db, OrderId::from_uuid(facts.order_id)).await? else {
            // Not one of our orders (a direct charge with an order id of its own).
            return Ok(false);
        };
        let status = OrderStatus::parse(&row.status);
        if !matches!(status, Some(OrderStatus::Failed | OrderStatus::Cancelled)) {
            return Ok(false);
        }
        let refunded = self
            .saga
            .clients()
            .refund(platform_proto::payment::v1::RefundRequest {
                payment_id: facts.payment_id.to_string(),
                amount: None,
                reason: format!("captured after order {} ended", row.id),
                idempotency_key: format!("order-{}-late-{}", row.id, facts.payment_id),
            })
            .await;
        match refunded {
            Ok(_) => {
                tracing::warn!(order_id = %row.id, payment_id = %facts.payment_id, amount = facts.amount, "payment captured after its order ended; refunded");
                self.audit.record(
                    &AuditContext::default(),
                    AuditEvent::new(Action::PaymentRefund, AuditOutcome::Success)
                        .actor(Actor::Service(Arc::from(self.source.as_str())))
                        .target(format!("payment:{}", facts.payment_id))
                        .reason("late_capture"),
                );
                Ok(true)
            }
            // Refunded already (this event was delivered before), or nothing left to refund.
            Err(error) if error.refused_code() == Some(tonic::Code::FailedPrecondition) => {
                Ok(false)
            }
            Err(error) => Err(OrderError::Payments(error)),
        }
    }

    /// `payment.refunded`: records refunds made outside the saga (at the provider, by an
    /// administrator) on the order. Idempotent per event.
    pub async fn apply_refund(
        &self,
        consumer: &str,
        event_id: Uuid,
        refund: &PaymentRefunded,
    ) -> Result<(), OrderError> {
        let txn = platform_db::begin_write(&self.db).await?;
        if idempotency::first_time(&txn, consumer, event_id).await? {
            repo::record_refunded(
                &txn,
                refund.payment.payment_id,
                refund.refunded_total,
                now(),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

/// The request's fingerprint: the same key with another request is refused.
fn request_hash(command: &PlaceOrder) -> String {
    let mut parts: Vec<String> = command
        .lines
        .iter()
        .map(|l| format!("{}x{}", l.product_id, l.quantity.get()))
        .collect();
    parts.push(command.token.as_str().to_owned());
    parts.push(serde_json::to_string(&command.shipping_address).unwrap_or_default());
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    fingerprint(&parts)
}
