//! The product service end to end: the REST API, the gRPC reservations, the cache, the events
//! and the demo data, each test on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod access;
mod audit;
mod cache;
mod catalog;
mod events;
mod listing;
mod reservations;
mod search;
mod seed;
