//! The outbox relay: publishes a service's outbox to the bus.
//!
//! Each round claims pending rows (see [`crate::outbox::claim`]), publishes them in order, and
//! marks them published in the same transaction. When the bus fails mid-round, the rows
//! published so far are marked, the failed row and everything after it stay pending (so no
//! aggregate's events are reordered), and the relay retries with exponential backoff. A crash
//! between publishing and committing republishes those rows: delivery is at least once, and
//! consumers are idempotent.

use std::sync::Arc;
use std::time::Duration;

use platform_metrics::{Metrics, counter, gauge, histogram};
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::EventsConfig;
use crate::envelope::Envelope;
use crate::outbox;
use crate::transport::{BusError, Transport};

/// A round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The outbox database failed (claiming or marking rows): the round's rows stay pending,
    /// and those already published are published again next round.
    #[error("outbox database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Publishing a row failed (or its stored envelope does not decode); the rows before it
    /// are marked published, it and the rows after it stay pending.
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
}

/// Publishes one database's outbox.
pub struct Relay {
    db: DatabaseConnection,
    transport: Arc<dyn Transport>,
    batch: u64,
    interval: Duration,
    retry_base: Duration,
    retry_max: Duration,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay of `db`'s outbox onto `transport`: `EVENTS_BATCH` rows a round, a look every
    /// `EVENTS_RELAY_INTERVAL` when idle, and the `EVENTS_RETRY_*` backoff while the bus fails.
    pub fn new(
        db: DatabaseConnection,
        transport: Arc<dyn Transport>,
        config: &EventsConfig,
    ) -> Self {
        Self {
            db,
            transport,
            batch: config.batch as u64,
            interval: config.relay_interval,
            retry_base: config.retry_base,
            retry_max: config.retry_max.max(config.retry_base),
            metrics: None,
        }
    }

    /// Records `events_published_total` and `outbox_pending`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One round: publishes up to a batch of pending rows; returns how many were published.
    pub async fn publish_pending(&self) -> Result<usize, RelayError> {
        let txn = self.db.begin().await?;
        let claimed = outbox::claim(&txn, self.batch).await?;
        let mut published = Vec::with_capacity(claimed.len());
        let mut failure = None;
        for row in &claimed {
            let mut envelope: Envelope = match serde_json::from_value(row.envelope.clone()) {
                Ok(envelope) => envelope,
                Err(error) => {
                    // Written by this code base, so this is a bug; keep the row for inspection
                    // and hold back the rest to keep order.
                    failure = Some((row.seq, RelayError::Bus(BusError::Encode(error))));
                    break;
                }
            };
            let span = self.publish_span(&envelope);
            // Consumers continue the trace from the publish, itself a child of the change.
            if let Some(traceparent) = platform_telemetry::traceparent_of(&span) {
                envelope.traceparent = Some(traceparent);
            }
            match self
                .transport
                .publish(&envelope)
                .instrument(span.clone())
                .await
            {
                Ok(_) => {
                    published.push(row.seq);
                    if let Some(metrics) = &self.metrics {
                        let lag = (chrono::Utc::now() - envelope.time)
                            .to_std()
                            .unwrap_or_default();
                        metrics.record(|| {
                            counter!("events_published_total", "type" => row.event_type.clone())
                                .increment(1);
                            histogram!("outbox_relay_lag_seconds").record(lag.as_secs_f64());
                        });
                    }
                }
                Err(error) => {
                    platform_telemetry::record_error(&span, "BusError", &error.to_string());
                    failure = Some((row.seq, error.into()));
                    break;
                }
            }
        }
        outbox::mark_published(&txn, &published).await?;
        if let Some((seq, error)) = &failure {
            outbox::mark_failed(&txn, *seq, &error.to_string()).await?;
        }
        txn.commit().await?;
        match failure {
            Some((_, error)) => Err(error),
            None => Ok(published.len()),
        }
    }

    /// The producer span of publishing `envelope` (OpenTelemetry messaging conventions), a
    /// child of the trace that wrote it.
    fn publish_span(&self, envelope: &Envelope) -> tracing::Span {
        let family = crate::transport::family_of(&envelope.event_type);
        let span = tracing::info_span!(
            "publish",
            otel.name = %format_args!("publish {family}"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            service = self.metrics.as_ref().map_or("", Metrics::service),
            messaging.system = self.transport.system(),
            messaging.destination.name = family,
            messaging.operation.type = "publish",
            messaging.message.id = %envelope.id,
            event_type = %envelope.event_type,
        );
        platform_telemetry::join_traceparent(&span, envelope.traceparent.as_deref());
        span
    }

    /// Publishes until `shutdown` fires: at once while rows keep coming, every
    /// `EVENTS_RELAY_INTERVAL` when idle, with exponential backoff while the bus is down.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        let mut next_gauge = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let wait = match self.publish_pending().await {
                Ok(published) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "event bus reachable again; outbox publishing resumed"
                        );
                    }
                    failures = 0;
                    if published as u64 >= self.batch {
                        Duration::ZERO
                    } else {
                        self.interval
                    }
                }
                Err(error) => {
                    failures += 1;
                    let wait = self
                        .retry_base
                        .saturating_mul(1u32 << failures.min(16))
                        .min(self.retry_max);
                    tracing::warn!(%error, failures, retry_in_ms = wait.as_millis() as u64, "publishing the outbox failed; retrying");
                    wait
                }
            };
            if let Some(metrics) = &self.metrics
                && Instant::now() >= next_gauge
            {
                next_gauge = Instant::now() + Duration::from_secs(5);
                if let Ok(pending) = outbox::pending(&self.db).await {
                    metrics.record(|| gauge!("outbox_pending").set(pending as f64));
                }
            }
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }
}
