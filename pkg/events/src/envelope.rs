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
    /// The CloudEvents version: [`SPEC_VERSION`].
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
    /// The media type of `data`: always `application/json`.
    pub datacontenttype: String,
    /// The payload as JSON: a catalogue event (see [`Envelope::decode`]), or an
    /// `AuditRecord` for the `audit.*` types.
    pub data: serde_json::Value,
    /// Ties together everything one client request caused (the request's trace id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the event (or request) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// W3C trace context, so a consumer's spans join the producer's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,

    /// Version of `data`'s schema for this `type` (1 when a producer does not say).
    #[serde(default = "first_version")]
    pub schema_version: u32,
}

fn first_version() -> u32 {
    1
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

    /// Sets `causation_id`: the id of the event (or request) that led to this one.
    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    /// The typed payload, when this envelope carries an `E`.
    pub fn decode<E: Event>(&self) -> Option<Result<E, serde_json::Error>> {
        (self.event_type == E::TYPE).then(|| serde_json::from_value(self.data.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::UserRegistered;

    fn registered() -> Envelope {
        Envelope::new(
            "user-service",
            &UserRegistered {
                user_id: Uuid::now_v7(),
                email: "ada@example.com".into(),
                name: "Ada".into(),
                role: "user".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn an_envelope_is_a_cloudevents_json_event() {
        let json = serde_json::to_value(registered().caused_by("req-1")).unwrap();
        let attributes = json.as_object().unwrap();
        // Required context attributes (CloudEvents 1.0): non-empty strings.
        assert_eq!(attributes["specversion"], "1.0");
        for required in ["id", "source", "type"] {
            assert!(
                attributes[required].as_str().is_some_and(|s| !s.is_empty()),
                "{required}"
            );
        }
        assert_eq!(attributes["type"], "user.registered");
        // Optional attributes with their types.
        chrono::DateTime::parse_from_rfc3339(attributes["time"].as_str().unwrap()).unwrap();
        assert_eq!(attributes["datacontenttype"], "application/json");
        assert!(attributes["subject"].is_string());
        assert!(attributes["data"].is_object());
        // Absent attributes are omitted, never null; extensions are scalars.
        assert!(attributes.values().all(|v| !v.is_null()), "{json}");
        for (name, value) in attributes {
            if ![
                "data",
                "specversion",
                "id",
                "source",
                "type",
                "time",
                "subject",
                "datacontenttype",
            ]
            .contains(&name.as_str())
            {
                assert!(
                    value.is_string() || value.is_number(),
                    "extension {name} is a scalar"
                );
            }
        }
        assert_eq!(attributes["causation_id"], "req-1");
        assert!(
            attributes.get("correlation_id").is_none(),
            "no trace outside a request"
        );
    }

    #[test]
    fn envelopes_round_trip_and_foreign_cloudevents_are_readable() {
        let event = registered();
        let back: Envelope = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(back, event);
        let payload = back.decode::<UserRegistered>().unwrap().unwrap();
        assert_eq!(payload.email, "ada@example.com");
        assert!(
            back.decode::<crate::catalogue::UserDeleted>().is_none(),
            "another type"
        );

        // A CloudEvent from a producer that knows nothing of our extensions.
        let foreign: Envelope = serde_json::from_value(serde_json::json!({
            "specversion": "1.0", "id": "0191e3b0-7c3e-7d4a-9a4e-000000000001",
            "source": "/billing", "type": "user.registered", "time": "2026-11-26T10:00:00Z",
            "subject": "42", "datacontenttype": "application/json", "data": {"anything": true}
        }))
        .unwrap();
        assert_eq!(foreign.schema_version, 1);
        assert!(foreign.correlation_id.is_none() && foreign.traceparent.is_none());
    }
}
