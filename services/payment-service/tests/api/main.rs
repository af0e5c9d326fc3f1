//! The payment service end to end: the REST API (charges, idempotency, visibility, refunds,
//! webhooks, fraud rules, provider failover), the gRPC API and the outbox events, each test on
//! SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The suites read gRPC payments' and orders' text `status` (deprecated on the wire, still sent
// for older peers) as well as the typed `state`.
#![allow(deprecated)]

mod helpers;

mod access;
mod charges;
mod events;
mod failover;
mod fraud;
mod grpc;
mod idempotency;
mod orders;
mod refunds;
mod reviews;
mod unknown;
mod visibility;
mod webhooks;
