//! The template of a service: the smallest real service the kit runs, to copy when adding
//! one (ARCHITECTURE.md, "Adding a new service"). It keeps named items, each owned by the
//! user who created it: one table, `POST /api/v1/items` and `GET /api/v1/items/{id}`.
//!
//! - [`config`]: its own settings beside the common ones.
//! - [`migration`]: its schema. [`repo`]: its queries.
//! - [`http`]: its REST API, documented by its handlers.
//! - [`startup`]: its declaration to the kit.
#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod migration;
pub mod repo;
pub mod startup;

pub use config::TemplateServiceConfig;
pub use startup::Application;
