//! The consumer runtime: reads a group's share of the streams and runs the handlers.
//!
//! For each delivery: the handler for its type runs; success acks it; failure (an error or a
//! panic) is retried with exponential backoff and jitter until `max_attempts`, then the event is
//! dead-lettered with the error and attempt count. The acks of one read's deliveries go to the
//! bus together once the read is handled (or before a retry's wait), one round trip instead of
//! one per event; a crash in between only redelivers handled events, which handlers must
//! tolerate anyway. Deliveries left pending by a consumer that
//! died are claimed after the visibility timeout and count their earlier deliveries as
//! attempts. Deliveries are handled one at a time, in stream order, so a retry holds back the
//! events behind it rather than reordering them; a batch handler ([`Consumer::on_families`])
//! takes its share of a read first, in one call. On shutdown the consumer stops between
//! deliveries (or during a backoff), leaving unacked work pending for the next consumer.
//!
//! Handlers must be idempotent (see [`crate::idempotency`]): at-least-once delivery means the
//! same event may arrive again.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use platform_metrics::{Metrics, counter, gauge};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::EventsConfig;
use crate::envelope::Envelope;
use crate::transport::{Delivery, Transport, family_of};

mod handlers;

use handlers::OneOfBatch;
pub use handlers::{BatchHandler, Handler, HandlerError};

/// How a consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group: the consuming service's name. Each group gets every event once.
    pub group: String,
    /// This instance's name within the group.
    pub consumer: String,
    /// Handler attempts before an event is dead-lettered (`EVENTS_MAX_ATTEMPTS`); earlier
    /// deliveries to a consumer that died count.
    pub max_attempts: u32,
    /// How long a delivery may stay unacked before another consumer of the group claims it
    /// (`EVENTS_VISIBILITY_TIMEOUT`); stale deliveries are looked for every half of it.
    pub visibility_timeout: Duration,
    /// The backoff before the second attempt, doubled for each further one
    /// (`EVENTS_RETRY_BASE`).
    pub retry_base: Duration,
    /// The cap on one backoff (`EVENTS_RETRY_MAX`).
    pub retry_max: Duration,
    /// Messages per read.
    pub batch: usize,
    /// How long a read waits for new messages.
    pub block: Duration,
}

impl ConsumerConfig {
    /// For `group`, from the `EVENTS_*` settings; the instance name is unique per process.
    pub fn new(group: &str, events: &EventsConfig) -> Self {
        Self {
            group: group.to_owned(),
            consumer: format!("{group}-{}", uuid::Uuid::new_v4().simple()),
            max_attempts: events.max_attempts,
            visibility_timeout: events.visibility_timeout,
            retry_base: events.retry_base,
            retry_max: events.retry_max,
            batch: events.batch,
            block: Duration::from_secs(1),
        }
    }

    /// Backoff before attempt `attempt + 1`: `retry_base · 2^(attempt-1)`, capped at
    /// `retry_max`, with jitter (a random point in its upper half) so that consumers failing
    /// together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self
            .retry_base
            .saturating_mul(1u32 << exponent)
            .min(self.retry_max);
        let half = full / 2;
        let jitter_ms = rand::random_range(0..=u64::try_from(half.as_millis()).unwrap_or(u64::MAX));
        half + Duration::from_millis(jitter_ms)
    }
}

/// A consumer group member with its handlers.
pub struct Consumer {
    transport: Arc<dyn Transport>,
    config: ConsumerConfig,
    /// Handlers by event type.
    handlers: HashMap<String, Arc<dyn Handler>>,
    /// Handlers for every type of a family, by family; several families may share one.
    family_handlers: HashMap<String, Arc<dyn BatchHandler>>,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What became of one delivery.
enum Outcome {
    /// Handled (or not ours); its ack is among the read's pending acks.
    Handled,
    DeadLettered,
    /// Shutdown interrupted the retries; the delivery stays pending.
    Interrupted,
}

/// Deliveries of the current read that are handled but not yet acked, with the event type and
/// outcome their metric is counted under once the ack lands.
#[derive(Default)]
struct PendingAcks<'d> {
    deliveries: Vec<&'d Delivery>,
    counted: Vec<(String, &'static str)>,
}

impl<'d> PendingAcks<'d> {
    fn push(&mut self, delivery: &'d Delivery, event_type: &str, outcome: &'static str) {
        self.deliveries.push(delivery);
        self.counted.push((event_type.to_owned(), outcome));
    }
}

impl Consumer {
    /// A member of `config.group` reading from `transport`, with no handlers yet: add them
    /// with [`Consumer::on`] and [`Consumer::on_families`]. Events no handler wants are acked
    /// and skipped.
    pub fn new(transport: Arc<dyn Transport>, config: ConsumerConfig) -> Self {
        Self {
            transport,
            config,
            handlers: HashMap::new(),
            family_handlers: HashMap::new(),
            metrics: None,
        }
    }

    /// Handles events of `event_type` (e.g. `user.registered`).
    pub fn on(mut self, event_type: &str, handler: impl Handler) -> Self {
        self.handlers
            .insert(event_type.to_owned(), Arc::new(handler));
        self
    }

    /// Handles every event of `families` (e.g. `user`) with one handler, given each read's
    /// events of those families together. A batch that fails is handled again one event at a
    /// time (with the usual retries and dead letters), so the handler must be idempotent per
    /// event. A read's batch is handled before its events of other handlers.
    pub fn on_families(mut self, families: &[&str], handler: impl BatchHandler) -> Self {
        let handler: Arc<dyn BatchHandler> = Arc::new(handler);
        for family in families {
            self.family_handlers
                .insert((*family).to_owned(), handler.clone());
        }
        self
    }

    /// Records `events_consumed_total`, `events_dead_lettered_total` and the lag gauge.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn families(&self) -> Vec<String> {
        let families: BTreeSet<String> = self
            .handlers
            .keys()
            .map(|t| family_of(t).to_owned())
            .chain(self.family_handlers.keys().cloned())
            .collect();
        families.into_iter().collect()
    }

    fn handler_for(&self, event_type: &str) -> Option<Arc<dyn Handler>> {
        if let Some(handler) = self.handlers.get(event_type) {
            return Some(handler.clone());
        }
        self.batch_handler_for(event_type)
            .map(|batch| Arc::new(OneOfBatch(batch.clone())) as Arc<dyn Handler>)
    }

    /// The batch handler of `event_type`'s family, unless a handler of the type itself wins.
    fn batch_handler_for(&self, event_type: &str) -> Option<&Arc<dyn BatchHandler>> {
        if self.handlers.contains_key(event_type) {
            return None;
        }
        self.family_handlers.get(family_of(event_type))
    }

    /// Hands each batch handler its share of the read, when it is more than one event, and
    /// queues the acks of what it handled; returns which deliveries are done. A failed batch
    /// leaves its deliveries to the one-at-a-time path.
    async fn handle_batches<'d>(
        &self,
        deliveries: &'d [Delivery],
        acks: &mut PendingAcks<'d>,
    ) -> Vec<bool> {
        let mut done = vec![false; deliveries.len()];
        let mut groups: Vec<(Arc<dyn BatchHandler>, Vec<usize>)> = Vec::new();
        for (index, delivery) in deliveries.iter().enumerate() {
            let Ok(envelope) = &delivery.envelope else {
                continue;
            };
            let Some(handler) = self.batch_handler_for(&envelope.event_type) else {
                continue;
            };
            match groups.iter_mut().find(|(h, _)| Arc::ptr_eq(h, handler)) {
                Some((_, members)) => members.push(index),
                None => groups.push((handler.clone(), vec![index])),
            }
        }
        for (handler, members) in groups {
            if members.len() < 2 {
                continue;
            }
            let mut envelopes = Vec::with_capacity(members.len());
            let mut spans = Vec::with_capacity(members.len());
            for &index in &members {
                let delivery = &deliveries[index];
                if let Ok(envelope) = &delivery.envelope {
                    spans.push(self.process_span(delivery, envelope));
                    envelopes.push(envelope.clone());
                }
            }
            let result = AssertUnwindSafe(handler.handle_batch(envelopes))
                .catch_unwind()
                .await;
            if let Ok(Ok(())) = result {
                for &index in &members {
                    let delivery = &deliveries[index];
                    if let Ok(envelope) = &delivery.envelope {
                        acks.push(delivery, &envelope.event_type, "ok");
                        done[index] = true;
                    }
                }
            } else {
                tracing::debug!(group = %self.config.group, count = members.len(), "a batch failed; handling its events one by one");
                for span in &spans {
                    platform_telemetry::record_error(span, "batch_failed", "retried one by one");
                }
            }
        }
        done
    }

    fn count(&self, event_type: &str, outcome: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.record(|| {
                counter!(
                    "events_consumed_total",
                    "type" => event_type.to_owned(),
                    "consumer" => self.config.group.clone(),
                    "outcome" => outcome,
                )
                .increment(1);
                if outcome == "dead_lettered" {
                    counter!(
                        "events_dead_lettered_total",
                        "type" => event_type.to_owned(),
                        "consumer" => self.config.group.clone(),
                    )
                    .increment(1);
                }
            });
        }
    }

    /// Consumes until `shutdown` fires. Transport failures are logged and retried with
    /// backoff; they never end the loop.
    pub async fn run(self, shutdown: CancellationToken) {
        let families = self.families();
        let group = self.config.group.clone();
        let mut failures = 0u32;
        while let Err(error) = self.transport.subscribe(&group, &families).await {
            failures += 1;
            tracing::warn!(%group, %error, "cannot subscribe to the event bus yet; retrying");
            if sleep_or_stop(self.config.backoff(failures), &shutdown).await {
                return;
            }
        }
        tracing::info!(%group, consumer = %self.config.consumer, ?families, "consuming events");

        let claim_every = (self.config.visibility_timeout / 2).max(Duration::from_millis(50));
        // Claim at once: a predecessor may have died holding deliveries.
        let mut next_claim = Instant::now();
        let mut next_lag = Instant::now();
        failures = 0;
        while !shutdown.is_cancelled() {
            let mut deliveries = Vec::new();
            if Instant::now() >= next_claim {
                next_claim = Instant::now() + claim_every;
                match self
                    .transport
                    .claim_stale(
                        &group,
                        &self.config.consumer,
                        &families,
                        self.config.visibility_timeout,
                        self.config.batch,
                    )
                    .await
                {
                    Ok(claimed) => {
                        if !claimed.is_empty() {
                            tracing::info!(%group, count = claimed.len(), "took over stale deliveries");
                        }
                        deliveries = claimed;
                    }
                    Err(error) => {
                        tracing::warn!(%group, %error, "claiming stale deliveries failed")
                    }
                }
            }
            if self.metrics.is_some() && Instant::now() >= next_lag {
                next_lag = Instant::now() + Duration::from_secs(5);
                if let (Ok(lag), Some(metrics)) =
                    (self.transport.lag(&group, &families).await, &self.metrics)
                {
                    metrics.record(|| {
                        gauge!("events_consumer_lag", "consumer" => group.clone()).set(lag as f64)
                    });
                }
            }
            if deliveries.is_empty() {
                let read = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    read = self.transport.read(&group, &self.config.consumer, &families, self.config.batch, self.config.block) => read,
                };
                match read {
                    Ok(read) => {
                        failures = 0;
                        deliveries = read;
                    }
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(%group, %error, "reading from the event bus failed; retrying");
                        if sleep_or_stop(self.config.backoff(failures), &shutdown).await {
                            break;
                        }
                        // A bus that restarted empty (Redis without persistence) lost the
                        // consumer group too, and every read fails until it exists again.
                        // Subscribing is idempotent, so it is simply done again.
                        if let Err(error) = self.transport.subscribe(&group, &families).await {
                            tracing::debug!(%group, %error, "cannot subscribe again yet");
                        }
                        continue;
                    }
                }
            }
            let mut acks = PendingAcks::default();
            let done = self.handle_batches(&deliveries, &mut acks).await;
            for (delivery, done) in deliveries.iter().zip(done) {
                if done {
                    continue;
                }
                if shutdown.is_cancelled() {
                    break;
                }
                if let Outcome::Interrupted = self.process(delivery, &mut acks, &shutdown).await {
                    break;
                }
            }
            // Handled work is acked even when shutdown cut the read short.
            self.settle_acks(&mut acks).await;
        }
        tracing::info!(%group, "event consumer stopped");
    }

    /// Handles one delivery to its end: acked, dead-lettered, or left pending on shutdown.
    async fn process<'d>(
        &self,
        delivery: &'d Delivery,
        acks: &mut PendingAcks<'d>,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let group = &self.config.group;
        let envelope = match &delivery.envelope {
            Ok(envelope) => envelope.clone(),
            Err(error) => {
                tracing::error!(%group, id = %delivery.id, %error, "undecodable event; dead-lettering it");
                self.settle_dead(delivery, error, delivery.deliveries, "undecodable")
                    .await;
                return Outcome::DeadLettered;
            }
        };
        let Some(handler) = self.handler_for(&envelope.event_type) else {
            // Another type of a family we read: not ours to handle.
            acks.push(delivery, &envelope.event_type, "ignored");
            return Outcome::Handled;
        };
        let span = self.process_span(delivery, &envelope);
        self.handle(handler, delivery, envelope, acks, shutdown)
            .instrument(span)
            .await
    }

    /// The consumer span of handling `envelope` (OpenTelemetry messaging conventions), a
    /// child of the publish, so the effect of a change shows in the change's own trace.
    fn process_span(&self, delivery: &Delivery, envelope: &Envelope) -> tracing::Span {
        let group = &self.config.group;
        let span = tracing::info_span!(
            "process",
            otel.name = %format_args!("process {}", delivery.family),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            service = %group,
            messaging.system = self.transport.system(),
            messaging.destination.name = %delivery.family,
            messaging.consumer.group.name = %group,
            messaging.operation.type = "process",
            messaging.message.id = %envelope.id,
            event_type = %envelope.event_type,
        );
        platform_telemetry::join_traceparent(&span, envelope.traceparent.as_deref());
        span
    }

    /// Runs `handler` on one decoded delivery, retrying, to its end.
    async fn handle<'d>(
        &self,
        handler: Arc<dyn Handler>,
        delivery: &'d Delivery,
        envelope: Envelope,
        acks: &mut PendingAcks<'d>,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let group = &self.config.group;
        let mut attempt = delivery.deliveries.max(1);
        loop {
            let result = AssertUnwindSafe(handler.handle(envelope.clone()))
                .catch_unwind()
                .await;
            let error = match result {
                Ok(Ok(())) => {
                    acks.push(delivery, &envelope.event_type, "ok");
                    return Outcome::Handled;
                }
                Ok(Err(error)) => error.to_string(),
                Err(panic) => format!(
                    "handler panicked: {}",
                    panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("unknown panic")
                ),
            };
            if attempt >= self.config.max_attempts {
                platform_telemetry::record_error(
                    &tracing::Span::current(),
                    "dead_lettered",
                    &error,
                );
                tracing::error!(%group, id = %envelope.id, r#type = %envelope.event_type, attempt, %error, "handler failed for the last time; dead-lettering the event");
                self.settle_dead(delivery, &error, attempt, &envelope.event_type)
                    .await;
                return Outcome::DeadLettered;
            }
            self.count(&envelope.event_type, "retry");
            // What this read handled before must not wait out a retry's backoff unacked (it
            // could pass the visibility timeout and be handled again elsewhere).
            self.settle_acks(acks).await;
            let wait = self.config.backoff(attempt);
            tracing::warn!(%group, id = %envelope.id, r#type = %envelope.event_type, attempt, %error, retry_in_ms = wait.as_millis() as u64, "handler failed; retrying");
            if sleep_or_stop(wait, shutdown).await {
                return Outcome::Interrupted;
            }
            attempt += 1;
        }
    }

    async fn settle_acks(&self, acks: &mut PendingAcks<'_>) {
        if acks.deliveries.is_empty() {
            return;
        }
        match self
            .transport
            .ack_many(&self.config.group, &acks.deliveries)
            .await
        {
            Ok(()) => {
                for (event_type, outcome) in &acks.counted {
                    self.count(event_type, outcome);
                }
            }
            // They stay pending and come back; idempotent handlers make that harmless.
            Err(error) => {
                tracing::warn!(group = %self.config.group, count = acks.deliveries.len(), %error, "ack failed; the events will be redelivered")
            }
        }
        acks.deliveries.clear();
        acks.counted.clear();
    }

    async fn settle_dead(&self, delivery: &Delivery, error: &str, attempts: u32, event_type: &str) {
        match self
            .transport
            .dead_letter(&self.config.group, delivery, error, attempts)
            .await
        {
            Ok(()) => self.count(event_type, "dead_lettered"),
            Err(bus_error) => {
                tracing::warn!(group = %self.config.group, id = %delivery.id, %bus_error, "dead-lettering failed; the event will be redelivered")
            }
        }
    }
}

/// Sleeps for `duration`; `true` when `shutdown` fired first.
async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let config = ConsumerConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..ConsumerConfig::new("g", &EventsConfig::embedded("."))
        };
        for _ in 0..50 {
            let first = config.backoff(1);
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
                "{first:?}"
            );
            let third = config.backoff(3);
            assert!(
                (Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third),
                "{third:?}"
            );
            let late = config.backoff(30);
            assert!(
                (Duration::from_millis(500)..=Duration::from_secs(1)).contains(&late),
                "{late:?}"
            );
        }
    }
}
