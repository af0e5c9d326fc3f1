//! user-service: accounts and authentication.
//!
//! Layout:
//! - [`domain`]: `Email`, `Password`, `UserName`, `User` — values valid by construction;
//! - [`passwords`]: Argon2id hashing on the blocking pool, bounded by a semaphore;
//! - [`throttle`]: per-account throttling of failed logins (Redis or in-process);
//! - [`service`]: the use cases (register, login, refresh, logout, get, update, delete, list);
//! - [`repo`] and [`migration`]: the tables and their schema;
//! - [`http`] and [`grpc`]: the REST API (through the gateway) and the internal gRPC API;
//! - [`config`] and [`startup`]: configuration and wiring; `main.rs` only calls `run_main`.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod migration;
pub mod passwords;
pub mod repo;
pub mod service;
pub mod startup;
pub mod throttle;

pub use config::UserServiceConfig;
pub use startup::Application;
