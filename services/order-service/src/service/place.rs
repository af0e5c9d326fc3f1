//! Placing an order: prices from the catalog, never the client; idempotent per key; then
//! driving its checkout for up to the configured wait, so most answers are final.

use std::collections::HashMap;
use std::time::Duration;

use platform_auth::AuthUser;
use platform_events::catalogue::{OrderCreated, OrderFacts, OrderLine};
use platform_events::{Envelope, outbox};
use platform_http::fingerprint;
use platform_money::{Currency, Money};
use tracing::Instrument;
use uuid::Uuid;

use super::{OrderError, Orders, PlaceOrder, Placed};
use crate::domain::{OrderId, OrderStatus, now};
use crate::repo::{self, ItemRow, OrderRow};
use crate::saga::{Driven, SagaError};
use crate::view::OrderView;

impl Orders {
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
            status: OrderStatus::Pending,
            step: crate::domain::Step::Reserve,
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
    pub(super) async fn settle_existing(&self, id: OrderId) -> Result<OrderView, OrderError> {
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
                    if row.step == crate::domain::Step::Done {
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
