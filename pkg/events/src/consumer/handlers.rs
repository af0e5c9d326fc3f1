//! What a consumer runs for an event: a handler per type, or a batch handler over whole
//! families (and its fallback to one event at a time when a batch fails).

use super::*;

/// What a handler may fail with; the message goes to the dead letters on the last attempt.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Handles one event.
pub trait Handler: Send + Sync + 'static {
    /// Applies `envelope`'s effect. `Err` (or a panic) is retried with backoff until
    /// `max_attempts`, then the event is dead-lettered; `Ok` acks it. May run more than once
    /// for one event: at-least-once delivery.
    fn handle(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Envelope) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(self(envelope))
    }
}

/// Handles every event of some families that one read brought, in one go (an append-only
/// store writes them in one statement). The events of a read are in stream order.
pub trait BatchHandler: Send + Sync + 'static {
    /// Applies every event of `envelopes` (at least one). `Err` (or a panic) sends each of
    /// them again through the one-event path, with its retries and dead letters.
    fn handle_batch(
        &self,
        envelopes: Vec<Envelope>,
    ) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut> BatchHandler for F
where
    F: Fn(Vec<Envelope>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle_batch(
        &self,
        envelopes: Vec<Envelope>,
    ) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(self(envelopes))
    }
}

/// A batch handler asked about one event: the path of retries and dead letters.
pub(super) struct OneOfBatch(pub(super) Arc<dyn BatchHandler>);

impl Handler for OneOfBatch {
    fn handle(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), HandlerError>> {
        self.0.handle_batch(vec![envelope])
    }
}
