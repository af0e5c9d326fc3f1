//! order-service: orders and the checkout saga.
//!
//! Layout:
//! - [`domain`]: ids, quantities, payment tokens, addresses, the order state machine and the
//!   saga's steps;
//! - [`clients`]: the product and payment gRPC clients (deadlines, breakers, retries);
//! - [`saga`]: the checkout saga (forward steps, compensation, crash recovery);
//! - [`service`]: the use cases (place, read, ship, cancel); [`view`]: what they return;
//! - [`repo`] and [`migration`]: the tables;
//! - [`http`]: the REST API, through the gateway;
//! - [`config`] and [`startup`]: configuration and wiring; `main.rs` only calls `run_main`.
#![forbid(unsafe_code)]

pub mod clients;
pub mod config;
mod consumers;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod migration;
pub mod reconcile;
pub mod repo;
pub mod saga;
pub mod service;
pub mod startup;
pub mod view;

pub use config::OrderServiceConfig;
pub use startup::Application;
