//! The user service's API, end to end over HTTP and gRPC, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod access_tokens;
mod audit;
mod blocking;
mod grpc;
mod login;
mod ops;
mod process;
mod registration;
mod revocation;
mod sessions;
mod throttling;
mod users;
