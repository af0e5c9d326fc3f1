//! product-service: the catalog, full-text search, stock, and the inventory reservations the
//! order saga relies on.
//!
//! Layout:
//! - [`domain`]: SKUs, names, categories, stock, quantities, reservation states, search
//!   terms — values valid by construction;
//! - [`service`]: the use cases, with the cache-aside reads and the invalidating writes;
//! - [`repo`] and [`migration`]: the tables, full-text indexes and the conditional updates
//!   that make overselling impossible;
//! - [`http`] (REST, through the gateway) and [`grpc`] (reservations, for the order saga);
//! - [`view`]: what reads return (and the cache holds);
//! - [`seed`]: the demo catalog; [`config`] and [`startup`]: configuration and wiring.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod migration;
pub mod repo;
pub mod seed;
pub mod service;
pub mod startup;
mod sweep;
pub mod view;

pub use config::ProductServiceConfig;
pub use startup::Application;
