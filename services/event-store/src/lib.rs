//! event-store: the platform's audit trail.
//!
//! Consumes every event family as the `event-store` consumer group and appends each event to
//! an append-only table; administrators query it (`GET /api/v1/admin/events`) and manage the
//! bus's dead letters (`GET /api/v1/admin/events/dead-letters`,
//! `POST /api/v1/admin/events/dead-letters/{id}/replay`) through the gateway.
//!
//! Architecture invariant: it never reads another service's database; everything it knows
//! arrived as an event.
#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod migration;
pub mod startup;

pub use config::EventStoreConfig;
pub use startup::Application;
