//! notification-service: email, SMS, push and in-app notifications, driven by the platform's
//! events and each user's preferences, with a real-time stream of in-app notifications.
//!
//! Layout:
//! - [`address`]: validated email addresses, E.164 phone numbers, push device tokens;
//! - [`channels`]: the `Sender` trait and its SMTP, Twilio-shaped, FCM-shaped and log
//!   implementations, configured from `SMTP_*`, `TWILIO_*`, `FCM_*`;
//! - [`domain`]: ids, topics, the delivery state machine, rate limits and quiet hours;
//! - [`templates`]: the built-in minijinja templates (subject, text, HTML);
//! - [`service`]: the use cases: events and direct requests → messages, per preferences and
//!   idempotently; the inbox; preferences;
//! - [`delivery`]: the worker that sends queued messages with retries and dead letters;
//! - [`repo`] and [`migration`]: the tables (contacts read model, preferences, addresses,
//!   messages);
//! - [`http`]: REST and SSE, through the gateway; [`view`]: what they return;
//! - [`config`] and [`startup`]: configuration and wiring; `main.rs` only calls `run_main`.
//!
//! Architecture invariant: it never asks another service anything; everything it knows about
//! users (email, name, role) arrived as `user.*` events.
#![forbid(unsafe_code)]

pub mod address;
pub mod channels;
pub mod config;
mod consumers;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod migration;
pub mod repo;
pub mod service;
pub mod startup;
pub mod templates;
pub mod view;

pub use config::NotificationServiceConfig;
pub use startup::Application;
