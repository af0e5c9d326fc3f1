//! Integration tests of the order service: the real service with the real product and
//! payment services, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The suites read gRPC payments' and orders' text `status` (deprecated on the wire, still sent
// for older peers) as well as the typed `state`.
#![allow(deprecated)]

mod checkout;
mod concurrency;
mod grpc;
mod helpers;
mod lifecycle;
mod recovery;
mod refunds;
mod repair;
mod review;
