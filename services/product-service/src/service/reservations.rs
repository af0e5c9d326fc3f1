//! The inventory reservations the order saga relies on: all-or-nothing, idempotent per order,
//! and settled (released, committed, returned) exactly once, with expired holds given back.

use std::collections::BTreeMap;
use std::sync::Arc;

use platform_events::outbox;
use sea_orm::DbErr;

use super::{Catalog, CatalogError, InventoryEvents};
use crate::domain::{Line, OrderId, ProductId, Quantity, Reservation, ReservationState, now};
use crate::repo::products::{self, Settlement};
use crate::repo::reservations;

impl Catalog {
    /// Reserves every line or none. Idempotent per order: a repeat returns the existing
    /// reservation. Lines naming one product twice are merged.
    pub async fn reserve(
        &self,
        order_id: OrderId,
        lines: &[Line],
    ) -> Result<Reservation, CatalogError> {
        let lines = merge_lines(lines)?;
        let at = now();
        let expires_at = at
            + chrono::Duration::from_std(self.settings.reservation_ttl)
                .unwrap_or(chrono::Duration::minutes(15));
        let txn = platform_db::begin_write(&self.db).await?;
        // The reservation row first: its primary key makes a concurrent duplicate fail here.
        if let Err(error) =
            reservations::insert(&txn, order_id, ReservationState::Reserved, expires_at, at).await
        {
            drop(txn);
            if !platform_db::is_unique_violation(&error) {
                return Err(error.into());
            }
            let existing = reservations::find(&self.db, order_id)
                .await?
                .ok_or(CatalogError::NoReservation(order_id))?;
            return match existing.state {
                ReservationState::Reserved => Ok(existing),
                settled => Err(CatalogError::AlreadySettled(order_id, settled.as_str())),
            };
        }
        // The lines before the products: a product's row stays locked from its update to the
        // commit, and every checkout of it waits for that lock.
        reservations::insert_lines(&txn, order_id, &lines).await?;
        let mut events = InventoryEvents::default();
        for line in &lines {
            let quantity = i64::from(line.quantity.get());
            let Some(product) =
                products::reserve_units(&txn, line.product_id, quantity, at).await?
            else {
                let exists = products::find(&txn, line.product_id)
                    .await?
                    .is_some_and(|p| !p.archived);
                return Err(if exists {
                    CatalogError::InsufficientStock(line.product_id)
                } else {
                    CatalogError::UnknownProduct(line.product_id)
                });
            };
            self.inventory_events(&mut events, &product, "reserved", Some(order_id), true)?;
        }
        for event in &events.0 {
            outbox::enqueue(&txn, event).await?;
        }
        txn.commit().await?;
        let touched = lines.iter().map(|l| l.product_id).collect();
        self.invalidate(touched).await;
        tracing::info!(order_id = %order_id, lines = lines.len(), "stock reserved");
        Ok(Reservation {
            order_id,
            state: ReservationState::Reserved,
            lines,
            expires_at,
        })
    }

    /// Gives the reserved units back. Idempotent; releasing an order never reserved records
    /// the release, so a Reserve arriving late for it is refused instead of holding stock.
    pub async fn release(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.settle(order_id, ReservationState::Released, "released")
            .await
    }

    /// Turns the reservation into a sale. Idempotent.
    pub async fn commit(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.settle(order_id, ReservationState::Committed, "committed")
            .await
    }

    /// Takes a committed sale back: its units return to stock (an order cancelled before it
    /// shipped). Idempotent.
    pub async fn restock(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.settle(order_id, ReservationState::Returned, "returned")
            .await
    }

    async fn settle(
        &self,
        order_id: OrderId,
        to: ReservationState,
        reason: &str,
    ) -> Result<Reservation, CatalogError> {
        let at = now();
        let (from, settlement) = match to {
            ReservationState::Committed => (ReservationState::Reserved, Settlement::Sell),
            ReservationState::Returned => (ReservationState::Committed, Settlement::Return),
            _ => (ReservationState::Reserved, Settlement::Release),
        };
        let txn = platform_db::begin_write(&self.db).await?;
        let Some(mut reservation) = reservations::transition(&txn, order_id, from, to, at).await?
        else {
            // Not held (anymore): a repeat, a conflicting settlement, or an unknown order.
            drop(txn);
            return match reservations::find(&self.db, order_id).await? {
                Some(existing) => match existing.state.transition(to) {
                    Ok(_) => Ok(existing),
                    Err(state) => Err(CatalogError::AlreadySettled(order_id, state.as_str())),
                },
                None if to == ReservationState::Released => {
                    self.record_early_release(order_id, at).await
                }
                None => Err(CatalogError::NoReservation(order_id)),
            };
        };
        let mut events = InventoryEvents::default();
        for line in &reservation.lines {
            let quantity = i64::from(line.quantity.get());
            let Some(product) =
                products::settle_units(&txn, line.product_id, quantity, settlement, at).await?
            else {
                return Err(CatalogError::Database(Arc::new(DbErr::Custom(format!(
                    "reservation {order_id} holds more of {} than is reserved",
                    line.product_id
                )))));
            };
            self.inventory_events(&mut events, &product, reason, Some(order_id), false)?;
        }
        for event in &events.0 {
            outbox::enqueue(&txn, event).await?;
        }
        txn.commit().await?;
        let touched = reservation.lines.iter().map(|l| l.product_id).collect();
        self.invalidate(touched).await;
        reservation.state = to;
        tracing::info!(order_id = %order_id, state = to.as_str(), "reservation settled");
        Ok(reservation)
    }

    async fn record_early_release(
        &self,
        order_id: OrderId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Reservation, CatalogError> {
        match reservations::insert(&self.db, order_id, ReservationState::Released, at, at).await {
            Ok(()) => Ok(Reservation {
                order_id,
                state: ReservationState::Released,
                lines: Vec::new(),
                expires_at: at,
            }),
            // A Reserve or another Release got there first: answer from what it stored.
            Err(error) if platform_db::is_unique_violation(&error) => {
                Box::pin(self.release(order_id)).await
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Releases up to `limit` reservations past their expiry; returns how many.
    pub async fn release_expired(&self, limit: u64) -> Result<usize, CatalogError> {
        let expired = reservations::expired(&self.db, now(), limit).await?;
        let mut released = 0;
        for order_id in expired {
            match self
                .settle(order_id, ReservationState::Released, "expired")
                .await
            {
                Ok(_) => released += 1,
                // Committed or released meanwhile: nothing to do.
                Err(CatalogError::AlreadySettled(..)) => {}
                Err(error) => return Err(error),
            }
        }
        if released > 0 {
            tracing::info!(released, "expired reservations released");
        }
        Ok(released)
    }
}

/// One line per product (quantities added), in product id order: rows are then always
/// locked in the same order, so two reservations can never deadlock on PostgreSQL.
fn merge_lines(lines: &[Line]) -> Result<Vec<Line>, CatalogError> {
    if lines.is_empty() {
        return Err(CatalogError::EmptyReservation);
    }
    let mut merged: BTreeMap<ProductId, u32> = BTreeMap::new();
    for line in lines {
        let total = merged.entry(line.product_id).or_default();
        *total = total.saturating_add(line.quantity.get());
    }
    Ok(merged
        .into_iter()
        .filter_map(|(product_id, units)| {
            Quantity::new(units).ok().map(|quantity| Line {
                product_id,
                quantity,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_merged_per_product_and_ordered() {
        let a = ProductId::generate();
        let b = ProductId::generate();
        let line = |product_id, units| Line {
            product_id,
            quantity: Quantity::new(units).unwrap(),
        };
        let merged = merge_lines(&[line(b, 1), line(a, 2), line(b, 3)]).unwrap();
        assert_eq!(merged, vec![line(a, 2), line(b, 4)]);
        assert!(matches!(
            merge_lines(&[]),
            Err(CatalogError::EmptyReservation)
        ));
    }
}
