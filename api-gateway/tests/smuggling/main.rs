//! Hostile requests on the wire, against both of the gateway's request paths.
//!
//! Each case of [`cases`] is a client's raw bytes; it states the statuses the client must get
//! (in order), whether the gateway then closes the connection, and exactly which requests a
//! recording upstream must receive. The upstream parses as an ordinary lenient HTTP/1.1
//! server does (a `Content-Length` body, else a chunked one), so any disagreement about where
//! a message ends — request smuggling — shows up as a request it received that the gateway
//! never admitted. Every case runs with the fast path on (the HTTP/1 engine, handing odd
//! requests to hyper) and off (everything through hyper and the kit's guard).
//!
//! The response-desync probes turn it around: the upstream misbehaves (bytes after a
//! response, two framings, bad chunks), and the next client must still get its own answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod cases;
mod client;
mod requests;
mod responses;
mod upstream;
