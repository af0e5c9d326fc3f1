//! The delivery channels against fake providers: an SMTP server spoken to over a real socket,
//! and Twilio and FCM stand-ins (axum) that check each request the way the real APIs would
//! read it and answer with scripted statuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]
//!
//! One module per provider, plus the log sink and the configuration that chooses between
//! them; the fixtures a module shares (credentials, a message per channel) live with their
//! provider.

#[path = "../support/fakes.rs"]
mod fakes;

mod config;
mod fcm;
mod smtp;
mod twilio;
