//! Wire types of the REST API and their conversion to commands; every invalid field is named
//! in one 422.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use platform_auth::{AdminUser, Jwt};
use platform_config::ExposeSecret;
use platform_http::{FieldErrors, Problem};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use crate::address::{DeviceToken, EmailAddress, PhoneNumber};
use crate::channels::{Channel, Recipient};
use crate::domain::{DeliveryStatus, Topic};
use crate::repo::DeliveryFilter;
use crate::service::{ALL_TOPICS, Content, DirectCommand, SubscribeCommand};
use crate::templates::Templates;

/// The header other services authenticate with (`NOTIFY_INTERNAL_TOKEN`).
pub const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";

/// Longest subject: one line in a mail client or a push title.
const MAX_SUBJECT: usize = 200;
/// Longest literal body.
const MAX_BODY: usize = 10_000;

/// Who may post notifications: an administrator, or another service presenting the
/// internal token. 401 without credentials, 403 for other users.
#[derive(Debug, Clone, Copy)]
pub struct Poster;

impl<S> FromRequestParts<S> for Poster
where
    AppState: FromRef<S>,
    Jwt: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Some(given) = parts.headers.get(INTERNAL_TOKEN_HEADER) else {
            return AdminUser::from_request_parts(parts, state)
                .await
                .map(|_| Poster);
        };
        let app = AppState::from_ref(state);
        match &app.internal_token {
            // Constant time: the token cannot be learned byte by byte from response times.
            Some(expected)
                if platform_outbound::sign::same(
                    expected.expose_secret().as_bytes(),
                    given.as_bytes(),
                ) =>
            {
                Ok(Poster)
            }
            _ => Err(Problem::unauthorized("The internal token is not valid.")),
        }
    }
}

/// A notification to one user: a built-in template with its data, or a subject and body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendInput {
    pub user_id: Uuid,
    /// `email`, `sms`, `push` or `in_app`; every channel the user has enabled when absent.
    #[schema(example = "email", schema_with = channel_schema)]
    pub channel: Option<String>,
    /// A built-in template: `welcome`, `order_confirmed`, `order_failed`, `order_shipped`,
    /// `payment_refunded`, `payment_review_requested`, `payment_review_waiting`,
    /// `payment_review_decided`, `inventory_low`.
    #[schema(example = "order_shipped")]
    pub template: Option<String>,
    /// With `body`, instead of a template.
    pub subject: Option<String>,
    pub body: Option<String>,
    /// A JSON object: the template's variables, and extras for the app.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

impl SendInput {
    pub fn parse(self) -> Result<DirectCommand, Problem> {
        let mut errors = FieldErrors::new();
        let channel = self
            .channel
            .as_deref()
            .and_then(|raw| errors.check("channel", Channel::parse(raw)));
        let data = match self.data {
            None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
            Some(object @ Value::Object(_)) => object,
            Some(_) => {
                errors.add("data", "must be a JSON object");
                Value::Null
            }
        };
        let content = match (self.template, self.subject, self.body) {
            (Some(name), None, None) => {
                if !Templates::exists(&name) {
                    let known: Vec<_> = Templates::names().collect();
                    errors.add("template", format!("must be one of {}", known.join(", ")));
                }
                Some(Content::Template {
                    name,
                    context: data.clone(),
                })
            }
            (None, Some(subject), Some(body)) => {
                let subject = subject.trim().to_owned();
                if subject.is_empty() || subject.chars().count() > MAX_SUBJECT {
                    errors.add("subject", format!("must be 1 to {MAX_SUBJECT} characters"));
                }
                if subject.contains(['\r', '\n']) {
                    errors.add("subject", "must be one line");
                }
                if body.trim().is_empty() || body.chars().count() > MAX_BODY {
                    errors.add("body", format!("must be 1 to {MAX_BODY} characters"));
                }
                Some(Content::Literal { subject, body })
            }
            (Some(_), _, _) => {
                errors.add(
                    "template",
                    "give a template or a subject and body, not both",
                );
                None
            }
            (None, None, None) => {
                errors.add("template", "a template, or a subject and body, is required");
                None
            }
            (None, subject, _) => {
                let missing = if subject.is_none() { "subject" } else { "body" };
                errors.add(missing, "is required with a literal message");
                None
            }
        };
        errors.finish()?;
        let content = content.ok_or_else(|| Problem::invalid_field("template", "required"))?;
        Ok(DirectCommand {
            user: self.user_id,
            channel,
            content,
            data,
        })
    }
}

/// `GET /api/v1/notifications` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only notifications not yet read.
    pub unread: Option<bool>,
}

/// Turns channels on or off for some or all event types, and sets the channel's address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeInput {
    #[schema(example = "sms", schema_with = channel_schema)]
    pub channel: String,
    /// Event types (`order.shipped`, …, `direct`), or `["*"]` for all.
    #[schema(example = json!(["order.shipped", "order.failed"]), schema_with = subscribed_topics_schema)]
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Email address, phone number in E.164 (`+15551234567`) or push device token; none for
    /// in-app.
    #[schema(example = "+15551234567")]
    pub address: Option<String>,
}

impl SubscribeInput {
    pub fn parse(self) -> Result<SubscribeCommand, Problem> {
        let mut errors = FieldErrors::new();
        let channel = errors.check("channel", Channel::parse(&self.channel));
        let mut topics = Vec::new();
        let mut all = false;
        if self.event_types.is_empty() {
            errors.add(
                "event_types",
                "list at least one event type, or \"*\" for all",
            );
        }
        for (i, raw) in self.event_types.iter().enumerate() {
            if raw.trim() == ALL_TOPICS {
                all = true;
            } else if let Some(topic) =
                errors.check(&format!("event_types[{i}]"), Topic::parse(raw))
            {
                topics.push(topic);
            }
        }
        let address = match (channel, self.address.as_deref()) {
            (_, None) | (None, _) => None,
            (Some(Channel::InApp), Some(_)) => {
                errors.add("address", "in-app notifications take no address");
                None
            }
            (Some(Channel::Email), Some(raw)) => errors
                .check("address", EmailAddress::parse(raw))
                .map(Recipient::Email),
            (Some(Channel::Sms), Some(raw)) => errors
                .check("address", PhoneNumber::parse(raw))
                .map(Recipient::Sms),
            (Some(Channel::Push), Some(raw)) => errors
                .check("address", DeviceToken::parse(raw))
                .map(Recipient::Push),
        };
        errors.finish()?;
        let channel = channel.ok_or_else(|| Problem::invalid_field("channel", "required"))?;
        Ok(SubscribeCommand {
            channel,
            topics: (!all).then_some(topics),
            enabled: self.enabled,
            address,
        })
    }
}

/// `GET /api/v1/notifications/deliveries` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    pub user_id: Option<Uuid>,
    #[param(schema_with = delivery_status_schema)]
    pub status: Option<String>,
    #[param(schema_with = channel_schema)]
    pub channel: Option<String>,
    #[param(schema_with = topic_schema)]
    pub event_type: Option<String>,
}

fn delivery_status_schema() -> utoipa::openapi::Object {
    platform_http::contract::string_enum(DeliveryStatus::ALL.map(DeliveryStatus::as_str))
}

fn channel_schema() -> utoipa::openapi::Object {
    platform_http::contract::string_enum(Channel::ALL.map(Channel::as_str))
}

/// An event type (`order.shipped`, …) or `direct`.
fn topic_schema() -> utoipa::openapi::Object {
    platform_http::contract::string_enum(Topic::ALL.map(Topic::as_str))
}

/// At least one event type, or `*` for all.
fn subscribed_topics_schema() -> utoipa::openapi::Array {
    let topics = Topic::ALL.map(Topic::as_str);
    utoipa::openapi::ArrayBuilder::new()
        .items(platform_http::contract::string_enum(
            topics.into_iter().chain([ALL_TOPICS]),
        ))
        .min_items(Some(1))
        .build()
}

impl DeliveriesQuery {
    pub fn parse(self) -> Result<DeliveryFilter, Problem> {
        let mut errors = FieldErrors::new();
        let status = self.status.as_deref().and_then(|raw| {
            let status = DeliveryStatus::parse(raw);
            if status.is_none() {
                errors.add("status", "must be queued, sent, failed or suppressed");
            }
            status
        });
        let channel = self
            .channel
            .as_deref()
            .and_then(|raw| errors.check("channel", Channel::parse(raw)));
        let topic = self
            .event_type
            .as_deref()
            .and_then(|raw| errors.check("event_type", Topic::parse(raw)))
            .map(|topic| topic.as_str().to_owned());
        errors.finish()?;
        Ok(DeliveryFilter {
            user: self.user_id,
            status,
            channel,
            topic,
        })
    }
}
