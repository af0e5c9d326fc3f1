//! Audit records on the event bus, so that the event store keeps them with everything else.
//!
//! [`BusSink`] is the [`Sink`] a service gives its [`Audit`]: the request path only puts the
//! record's event in a bounded queue (never waits); [`AuditPublisher`] publishes the queue in
//! the background, one event of family `audit` per record, type `audit.<action>`
//! (`audit.auth.login`), subject the actor (`<user id>`, `service:<name>`, or `anonymous`),
//! data the [`AuditRecord`]. When the queue is full (the bus is down or slow) a record is
//! dropped, counted (`audit_records_dropped_total`) and logged; it is in the service's log
//! regardless.
//!
//! Unlike domain events, records do not go through the outbox: they belong to no database
//! transaction, and a refusal must be recorded even when nothing is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use platform_audit::{Action, Actor, Audit, AuditRecord, Sink};
use platform_metrics::{Metrics, counter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::envelope::{Envelope, SPEC_VERSION};
use crate::transport::Transport;

/// The family of audit events.
pub const FAMILY: &str = "audit";

/// The subject of records without a known actor.
pub const ANONYMOUS: &str = "anonymous";

/// Records waiting to be published; beyond this they are dropped.
pub const QUEUE: usize = 1024;

/// The event type of a record of `action`: `audit.<action>`.
pub fn event_type(action: Action) -> String {
    format!("{FAMILY}.{action}")
}

/// The subject of a record of `actor`: what `?actor=` of the event store's audit query
/// matches.
pub fn subject(actor: Option<&Actor>) -> String {
    actor.map_or_else(|| ANONYMOUS.to_owned(), ToString::to_string)
}

/// The event carrying `record`, with the request's trace context when called inside it.
pub fn envelope(record: &AuditRecord) -> Result<Envelope, serde_json::Error> {
    Ok(Envelope {
        specversion: SPEC_VERSION.to_owned(),
        // The record's id: a re-published record is stored once.
        id: record.id,
        source: record.service.clone(),
        event_type: event_type(record.action),
        time: record.time,
        subject: subject(record.actor.as_ref()),
        datacontenttype: "application/json".to_owned(),
        data: serde_json::to_value(record)?,
        correlation_id: platform_telemetry::current_trace_id(),
        causation_id: record.request_id.clone(),
        traceparent: platform_telemetry::current_traceparent(),
        schema_version: 1,
    })
}

/// The request side: queues records without waiting.
pub struct BusSink {
    queue: mpsc::Sender<Envelope>,
    dropped: AtomicU64,
    metrics: Option<Metrics>,
}

impl BusSink {
    fn drop_record(&self, record: &AuditRecord, why: &str) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(metrics) = &self.metrics {
            metrics.record(|| counter!("audit_records_dropped_total").increment(1));
        }
        tracing::warn!(
            audit_id = %record.id,
            action = record.action.as_str(),
            dropped,
            "audit record not sent to the event bus: {why}"
        );
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Sink for BusSink {
    fn accept(&self, record: AuditRecord) {
        let envelope = match envelope(&record) {
            Ok(envelope) => envelope,
            Err(error) => return self.drop_record(&record, &error.to_string()),
        };
        match self.queue.try_send(envelope) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.drop_record(&record, "queue full"),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.drop_record(&record, "publisher stopped")
            }
        }
    }
}

/// The background side: publishes queued records to the bus.
pub struct AuditPublisher {
    queue: mpsc::Receiver<Envelope>,
    transport: Arc<dyn Transport>,
}

/// How long a stopping publisher waits for the last records: the server drains requests
/// first (their records still arrive), then drops every sender, which ends the wait sooner.
const FINAL_DRAIN: Duration = Duration::from_secs(30);

/// Attempts per record while the bus fails; the queue fills meanwhile and sheds.
const ATTEMPTS: u32 = 3;

impl AuditPublisher {
    /// Publishes until `shutdown` and every sender is gone (or [`FINAL_DRAIN`] after
    /// `shutdown`).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(FINAL_DRAIN).await;
        };
        tokio::pin!(deadline);
        loop {
            let envelope = tokio::select! {
                envelope = self.queue.recv() => match envelope {
                    Some(envelope) => envelope,
                    None => return,
                },
                () = &mut deadline => {
                    tracing::warn!(pending = self.queue.len(), "audit publisher stopped with records unsent");
                    return;
                }
            };
            self.publish(&envelope).await;
        }
    }

    async fn publish(&self, envelope: &Envelope) {
        for attempt in 1..=ATTEMPTS {
            match self.transport.publish(envelope).await {
                Ok(_) => return,
                Err(error) if attempt == ATTEMPTS => {
                    tracing::warn!(%error, audit_id = %envelope.id, "audit record not published");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100) * attempt).await,
            }
        }
    }
}

/// A service's audit trail, logged and published to `transport` by the returned publisher
/// (which the service runs with its other background tasks).
pub fn bus_audit(
    service: &str,
    transport: Arc<dyn Transport>,
    metrics: Option<Metrics>,
) -> (Audit, AuditPublisher) {
    let (queue, receiver) = mpsc::channel(QUEUE);
    let sink = BusSink {
        queue,
        dropped: AtomicU64::new(0),
        metrics,
    };
    (
        Audit::with_sink(service, Arc::new(sink)),
        AuditPublisher {
            queue: receiver,
            transport,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform_audit::{AuditContext, AuditEvent, Outcome};

    #[test]
    fn every_action_is_an_audit_event_type() {
        for action in Action::ALL {
            let event_type = event_type(action);
            assert_eq!(crate::transport::family_of(&event_type), FAMILY);
            assert!(event_type.ends_with(action.as_str()));
        }
        assert_eq!(event_type(Action::Login), "audit.auth.login");
    }

    #[test]
    fn a_record_travels_as_an_envelope_about_its_actor() {
        let audit = Audit::new("product-service");
        let admin = uuid::Uuid::now_v7();
        let record = audit.record(
            &AuditContext::default(),
            AuditEvent::new(Action::ProductCreate, Outcome::Success)
                .user(admin)
                .target("product:1"),
        );
        let envelope = envelope(&record).unwrap();
        assert_eq!(envelope.id, record.id);
        assert_eq!(envelope.event_type, "audit.product.create");
        assert_eq!(envelope.subject, admin.to_string());
        assert_eq!(envelope.source, "product-service");
        let back: AuditRecord = serde_json::from_value(envelope.data).unwrap();
        assert_eq!(back, record);
        assert_eq!(subject(None), "anonymous");
    }

    #[tokio::test]
    async fn queued_records_reach_the_bus_and_the_publisher_ends_with_its_senders() {
        let dir = tempfile::tempdir().unwrap();
        let transport: Arc<dyn Transport> = Arc::new(
            crate::transport::embedded::EmbeddedTransport::open(dir.path(), 1000)
                .await
                .unwrap(),
        );
        let (audit, publisher) = bus_audit("payment-service", transport.clone(), None);
        let running = tokio::spawn(publisher.run(CancellationToken::new()));
        let record = audit.record(
            &AuditContext::default(),
            AuditEvent::new(Action::PaymentRefund, Outcome::Success).target("payment:1"),
        );
        drop(audit);
        running.await.unwrap();
        let stored = transport.history(FAMILY, 10).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].id, record.id);
        assert_eq!(stored[0].event_type, "audit.payment.refund");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (queue, _receiver) = mpsc::channel(1);
        let sink = Arc::new(BusSink {
            queue,
            dropped: AtomicU64::new(0),
            metrics: None,
        });
        let audit = Audit::with_sink("order-service", sink.clone());
        for _ in 0..3 {
            audit.record(
                &AuditContext::default(),
                AuditEvent::new(Action::OrderStatusChange, Outcome::Success),
            );
        }
        assert_eq!(sink.dropped(), 2);
    }
}
