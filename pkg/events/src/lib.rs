//! Events: the envelope, the catalogue of every event the platform emits, and the outbox.
//!
//! - [`Envelope`]: CloudEvents attributes (`id`, `source`, `type`, `time`, `subject`,
//!   `datacontenttype`, `data`) plus `correlation_id`, `causation_id`, `traceparent` and
//!   `schema_version`.
//! - [`catalogue`]: one typed payload per event type; producers never hand-write JSON.
//! - [`outbox`]: the table each producing service owns, its migration, and [`outbox::enqueue`],
//!   which writes an event in the caller's transaction so that the state change and its event
//!   commit or roll back together. Publishing the outbox to a bus is the relay's job.
#![forbid(unsafe_code)]

pub mod catalogue;
pub mod envelope;
pub mod outbox;

pub use catalogue::Event;
pub use envelope::Envelope;
