//! The reconciler: compares what the order service recorded about recently ended orders with
//! what the payment service recorded about their payments, repairs what it safely can, and
//! reports the rest: `reconciliation_mismatches{kind}` (found by the last pass) and
//! `reconciliation_repairs_total{kind}`, and the last report at
//! `GET /api/v1/admin/orders/reconciliation` (`POST` runs a pass now).
//!
//! | kind | what | repair |
//! |---|---|---|
//! | `refund_missing` | a `failed`/`cancelled` order whose payment is captured and not fully refunded | refund the rest (its own key) |
//! | `refund_not_recorded` | the order's `refunded` below the payment's | record the payment's figure |
//! | `refund_exceeds_record` | the order's `refunded` above the payment's | none: reported |
//! | `confirmed_not_paid` | a confirmed (or shipped, delivered) order whose payment is not captured | none: reported |
//! | `amount_mismatch` | the payment's amount or currency is not the order's | none: reported |
//!
//! Stock is not compared: the product service's reservations are keyed by order and every
//! compensation releases or restocks idempotently, but no read of a reservation exists yet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform_http::CancellationToken;
use platform_metrics::{Metrics, counter, gauge};
use platform_proto::payment::v1 as payment;
use platform_proto::payment::v1::PaymentStatus;
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use tonic::Code;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clients::{CallError, Clients};
use crate::domain::{OrderId, OrderStatus, now};
use crate::repo::{self, OrderRow};

/// Every kind of mismatch, for the metric's series.
pub const KINDS: [&str; 5] = [
    "refund_missing",
    "refund_not_recorded",
    "refund_exceeds_record",
    "confirmed_not_paid",
    "amount_mismatch",
];

/// One difference found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Mismatch {
    pub order_id: Uuid,
    pub payment_id: Option<Uuid>,
    /// One of the kinds in the table above.
    pub kind: String,
    pub detail: String,
    /// Whether this pass repaired it.
    pub repaired: bool,
}

/// What the last pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Report {
    /// When the pass ran; `null` before the first.
    pub checked_at: Option<DateTime<Utc>>,
    pub orders_checked: u64,
    pub mismatches: Vec<Mismatch>,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("the payment service cannot be asked: {0}")]
    Payments(#[from] CallError),
}

/// Runs passes. Cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    db: DatabaseConnection,
    clients: Clients,
    /// How far back ended orders are looked at.
    window: Duration,
    metrics: Metrics,
    last: Arc<Mutex<Report>>,
    /// One pass at a time (the periodic one and an administrator's).
    running: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    pub fn new(
        db: DatabaseConnection,
        clients: Clients,
        window: Duration,
        metrics: &Metrics,
    ) -> Self {
        // Every series exists from the start, at zero.
        metrics.record(|| {
            for kind in KINDS {
                gauge!("reconciliation_mismatches", "kind" => kind).set(0.0);
            }
        });
        Self {
            db,
            clients,
            window,
            metrics: metrics.clone(),
            last: Arc::new(Mutex::new(Report::default())),
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The last pass's report.
    pub fn report(&self) -> Report {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs a pass every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.run_once().await {
                tracing::warn!(%error, "reconciliation pass failed");
            }
        }
    }

    /// One pass over the orders that ended within the window.
    pub async fn run_once(&self) -> Result<Report, ReconcileError> {
        let _one = self.running.lock().await;
        let since = now() - chrono::Duration::from_std(self.window).unwrap_or_default();
        let orders = repo::ended_since(&self.db, since, 1000).await?;
        let mut report = Report {
            checked_at: Some(now()),
            orders_checked: orders.len() as u64,
            mismatches: Vec::new(),
        };
        for row in &orders {
            self.check(row, &mut report.mismatches).await?;
        }
        self.metrics.record(|| {
            for kind in KINDS {
                let found = report.mismatches.iter().filter(|m| m.kind == kind).count();
                gauge!("reconciliation_mismatches", "kind" => kind).set(found as f64);
            }
            for mismatch in report.mismatches.iter().filter(|m| m.repaired) {
                counter!("reconciliation_repairs_total", "kind" => mismatch.kind.clone())
                    .increment(1);
            }
        });
        for mismatch in &report.mismatches {
            tracing::warn!(order_id = %mismatch.order_id, kind = %mismatch.kind, repaired = mismatch.repaired, detail = %mismatch.detail, "reconciliation mismatch");
        }
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = report.clone();
        Ok(report)
    }

    async fn check(&self, row: &OrderRow, found: &mut Vec<Mismatch>) -> Result<(), ReconcileError> {
        let status = row.status;
        let paid_for = matches!(
            status,
            OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered
        );
        let mut mismatch = |kind: &str, detail: String, repaired: bool| {
            found.push(Mismatch {
                order_id: row.id,
                payment_id: row.payment_id,
                kind: kind.to_owned(),
                detail,
                repaired,
            });
        };
        let Some(payment_id) = row.payment_id else {
            if paid_for {
                mismatch("confirmed_not_paid", "no payment recorded".into(), false);
            }
            return Ok(());
        };
        let paid = match self.clients.get_payment(payment_id.to_string()).await {
            Ok(paid) => paid,
            Err(error) if error.refused_code() == Some(Code::NotFound) => {
                if paid_for {
                    mismatch(
                        "confirmed_not_paid",
                        "the payment does not exist".into(),
                        false,
                    );
                }
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let captured = matches!(
            paid.status(),
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
        );
        let (amount, currency) = paid
            .amount
            .as_ref()
            .map_or((0, String::new()), |m| (m.amount, m.currency.clone()));
        if amount != row.total || currency != row.currency {
            mismatch(
                "amount_mismatch",
                format!(
                    "order {} {}, payment {amount} {currency}",
                    row.total, row.currency
                ),
                false,
            );
        }
        if paid_for && !captured {
            mismatch(
                "confirmed_not_paid",
                format!("the payment is {}", paid.status().text()),
                false,
            );
        }
        let mut refunded = paid.refunded_amount;
        let ended_unpaid = matches!(status, OrderStatus::Failed | OrderStatus::Cancelled);
        if ended_unpaid && captured && refunded < amount {
            let refund = self
                .clients
                .refund(payment::RefundRequest {
                    payment_id: payment_id.to_string(),
                    amount: None,
                    reason: format!("reconciliation: order {} ended {}", row.id, row.status),
                    idempotency_key: format!("order-{}-reconcile-refund", row.id),
                })
                .await;
            let repaired = match refund {
                Ok(after) => {
                    refunded = after.refunded_amount;
                    true
                }
                Err(error) => {
                    tracing::warn!(order_id = %row.id, %error, "cannot refund a missed refund yet");
                    false
                }
            };
            mismatch(
                "refund_missing",
                format!(
                    "{} of {amount} refunded for a {} order",
                    paid.refunded_amount, row.status
                ),
                repaired,
            );
        }
        if row.refunded < refunded {
            // The payment's `payment.refunded` event may have been recorded meanwhile (a refund
            // this pass just made announces itself): repaired all the same.
            let repaired = repo::record_refunded(&self.db, payment_id, refunded, now()).await?
                || repo::find(&self.db, OrderId::from_uuid(row.id))
                    .await?
                    .is_some_and(|now| now.refunded >= refunded);
            mismatch(
                "refund_not_recorded",
                format!("the order says {}, the payment {refunded}", row.refunded),
                repaired,
            );
        } else if row.refunded > refunded {
            mismatch(
                "refund_exceeds_record",
                format!("the order says {}, the payment {refunded}", row.refunded),
                false,
            );
        }
        Ok(())
    }
}
