//! The envelope every event travels in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalogue::Event;

/// CloudEvents `specversion` of the envelope.
pub const SPEC_VERSION: &str = "1.0";

/// An event with its metadata. Field names follow CloudEvents, so a CloudEvents consumer can
/// read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    /// Unique per event; consumers deduplicate on it.
    pub id: Uuid,
    /// The producing service, e.g. `user-service`.
    pub source: String,
    /// e.g. `user.registered`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the change happened.
    pub time: DateTime<Utc>,
    /// The aggregate the event is about (its id); the unit of ordering.
    pub subject: String,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    /// Ties together everything one client request caused (the request's trace id).
    pub correlation_id: Option<String>,
    /// The id of the event (or request) that directly caused this one.
    pub causation_id: Option<String>,
    /// W3C trace context, so a consumer's spans join the producer's trace.
    pub traceparent: Option<String>,
    /// Version of `data`'s schema for this `type`.
    pub schema_version: u32,
}

impl Envelope {
    /// Wraps `event` from `source`, taking trace context from the current span.
    pub fn new<E: Event>(source: &str, event: &E) -> Result<Self, serde_json::Error> {
        Ok(Self {
            specversion: SPEC_VERSION.to_owned(),
            id: Uuid::now_v7(),
            source: source.to_owned(),
            event_type: E::TYPE.to_owned(),
            time: Utc::now(),
            subject: event.subject(),
            datacontenttype: "application/json".to_owned(),
            data: serde_json::to_value(event)?,
            correlation_id: platform_telemetry::current_trace_id(),
            causation_id: None,
            traceparent: platform_telemetry::current_traceparent(),
            schema_version: E::SCHEMA_VERSION,
        })
    }

    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    /// The typed payload, when this envelope carries an `E`.
    pub fn decode<E: Event>(&self) -> Option<Result<E, serde_json::Error>> {
        (self.event_type == E::TYPE).then(|| serde_json::from_value(self.data.clone()))
    }
}
