//! payment-service: charges through payment providers with failover, signed webhooks,
//! refunds, fraud checks and idempotency.
//!
//! Layout:
//! - [`domain`]: ids, card tokens (never card numbers), the payment state machine;
//! - [`providers`]: the provider trait, failover, and the sandbox, Stripe and Adyen clients;
//! - [`fraud`]: the rules engine (score, decision, reasons), pure;
//! - [`service`]: the use cases (charge, refund, webhooks) with their exactly-once rules;
//! - [`repo`] and [`migration`]: the tables;
//! - [`http`] (REST, through the gateway) and [`grpc`] (for the order saga); [`view`]: what
//!   they return;
//! - [`config`] and [`startup`]: configuration and wiring; `main.rs` only calls `run_main`.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod fraud;
pub mod grpc;
pub mod http;
pub mod migration;
pub mod orders;
pub mod providers;
pub mod repo;
pub mod service;
pub mod startup;
pub mod view;

pub use config::PaymentServiceConfig;
pub use startup::Application;
