//! Events: the envelope, the catalogue of every event the platform emits, and the outbox.
//!
//! - [`Envelope`]: CloudEvents attributes (`id`, `source`, `type`, `time`, `subject`,
//!   `datacontenttype`, `data`) plus `correlation_id`, `causation_id`, `traceparent` and
//!   `schema_version`.
//! - [`catalogue`]: one typed payload per event type; producers never hand-write JSON.
//! - [`outbox`]: the table each producing service owns, its migration, and [`outbox::enqueue`],
//!   which writes an event in the caller's transaction so that the state change and its event
//!   commit or roll back together;
//! - [`relay`]: publishes each outbox to the bus, in order, at least once;
//! - [`transport`]: the bus (Redis Streams, or an embedded SQLite file), with consumer groups,
//!   claiming of stale deliveries, dead letters and replay;
//! - [`consumer`]: the consumer runtime (handlers, retries with backoff and jitter, dead letters);
//! - [`idempotency`]: processed-event records that make each effect happen once;
//! - [`retention`]: published outbox rows and processed-event records deleted after
//!   `EVENTS_RETENTION`;
//! - [`store`]: the append-only event store (audit trail);
//! - [`config`]: `EVENTS_*` settings and the choice of transport;
//! - [`audit`]: audit records published to the bus (family `audit`) from a bounded queue.
//!
//! Architecture invariant: a service sees only this crate's API; which transport runs
//! underneath is configuration.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod catalogue;
pub mod config;
pub mod consumer;
pub mod envelope;
pub mod idempotency;
pub mod outbox;
pub mod relay;
pub mod retention;
pub mod store;
pub mod transport;

pub use catalogue::Event;
pub use config::EventsConfig;
pub use consumer::{Consumer, ConsumerConfig, Handler, HandlerError};
pub use envelope::Envelope;
pub use relay::Relay;
pub use transport::{BusError, DeadLetter, Delivery, Transport};
