//! Push notifications through Firebase Cloud Messaging's HTTP v1 API.
//!
//! One `POST {base}/v1/projects/{project}/messages:send` per message, with a bearer token and
//! the body `{"message": {"token", "notification": {"title", "body"}, "data"}}`. FCM's `data`
//! is a map of strings, so the message's JSON object is flattened: strings as they are, other
//! values as their JSON text (`42`, `true`, `{"a":1}`), nulls left out. A 200 carries the
//! message's `name` (`projects/…/messages/…`).
//!
//! Errors come as Google API errors whose `details` carry FCM's own `errorCode`. 404
//! `UNREGISTERED` (the app was uninstalled: the token should be dropped), 400
//! `INVALID_ARGUMENT`, 403 `SENDER_ID_MISMATCH` and any other 4xx are permanent; 429
//! `QUOTA_EXCEEDED`, 5xx `UNAVAILABLE`/`INTERNAL`, connection failures and timeouts are
//! transient. The `errorCode` is part of the error text so callers can act on it.
//!
//! Authentication is a static OAuth 2.0 access token (`FCM_ACCESS_TOKEN`). Minting tokens from
//! a service account (a signed JWT exchanged at Google's token endpoint, refreshed before its
//! hour runs out) is out of scope for now: whoever deploys this must supply a fresh token,
//! and an expired one shows up as permanent 401 failures.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use platform_config::{Env, ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::support::{self, build_client, exchange, status_error, wrong_channel};
use super::{Channel, Delivery, Message, Recipient, SendError, Sender, SetupError};
use crate::address::DeviceToken;

pub const NAME: &str = "fcm";
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";

/// How to reach FCM. `Debug` shows the access token as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// The Firebase project id (not its number).
    pub project_id: String,
    /// An OAuth 2.0 access token with the `firebase.messaging` scope.
    pub access_token: SecretString,
    /// Without a trailing slash; tests point it at a fake server.
    pub base_url: String,
    /// For a whole API call, connecting included.
    pub timeout: Duration,
}

impl FcmConfig {
    pub fn new(project_id: impl Into<String>, access_token: SecretString) -> Self {
        Self {
            project_id: project_id.into(),
            access_token,
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: super::DEFAULT_TIMEOUT,
        }
    }

    /// Reads `FCM_PROJECT_ID`, `FCM_ACCESS_TOKEN` and `FCM_BASE_URL`. `None` when neither of
    /// the first two is set (push goes to the log); one without the other is reported.
    pub fn from_env(env: &mut Env, timeout: Duration) -> Option<Self> {
        if !env.is_set("FCM_PROJECT_ID") && !env.is_set("FCM_ACCESS_TOKEN") {
            return None;
        }
        let project_id = env.optional_with(
            "FCM_PROJECT_ID",
            "a Firebase project id (letters, digits, dashes)",
            |raw| support::is_path_safe(raw).then(|| raw.to_owned()),
        );
        let access_token = env.secret("FCM_ACCESS_TOKEN");
        let base_url = support::base_url(env, "FCM_BASE_URL", DEFAULT_BASE_URL);
        if !env.is_set("FCM_PROJECT_ID") {
            env.report(
                "FCM_PROJECT_ID",
                "a Firebase project id (required when FCM_ACCESS_TOKEN is set)",
            );
        }
        if access_token.is_none() {
            env.report(
                "FCM_ACCESS_TOKEN",
                "an OAuth 2.0 access token for FCM (required when FCM_PROJECT_ID is set)",
            );
        }
        Some(Self {
            project_id: project_id?,
            access_token: access_token?,
            base_url,
            timeout,
        })
    }
}

/// Push through FCM. One HTTP client (one connection pool) per sender.
pub struct FcmSender {
    config: FcmConfig,
    client: reqwest::Client,
}

impl fmt::Debug for FcmSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmSender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FcmSender {
    pub fn new(mut config: FcmConfig) -> Result<Self, SetupError> {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        let client = build_client(config.timeout)?;
        Ok(Self { config, client })
    }

    async fn send_to(&self, token: &DeviceToken, message: &Message) -> Result<Delivery, SendError> {
        let mut body = json!({
            "token": token.as_str(),
            "notification": { "title": message.subject, "body": message.text },
        });
        let data = string_map(&message.data)?;
        if !data.is_empty() {
            body["data"] = Value::Object(data);
        }
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.config.base_url, self.config.project_id
        );
        let request = self
            .client
            .post(url)
            // reqwest marks the Authorization header sensitive: it never shows in its Debug.
            .bearer_auth(self.config.access_token.expose_secret())
            .json(&json!({ "message": body }));
        let (status, body) = exchange(request).await?;
        if !status.is_success() {
            return Err(status_error(status, describe_error(status.as_u16(), &body)));
        }
        // Accepted: the push will go out. An answer we cannot read is no reason to fail (and
        // be retried, and notify twice).
        let name = serde_json::from_slice::<Sent>(&body)
            .ok()
            .and_then(|sent| sent.name);
        if name.is_none() {
            tracing::warn!("FCM accepted a message without a readable name");
        }
        Ok(Delivery {
            provider_message_id: name,
        })
    }
}

/// FCM's `data` takes strings only.
fn string_map(data: &Value) -> Result<Map<String, Value>, SendError> {
    let object = match data {
        Value::Null => return Ok(Map::new()),
        Value::Object(object) => object,
        _ => {
            return Err(SendError::Permanent(
                "push data must be a JSON object".to_owned(),
            ));
        }
    };
    Ok(object
        .iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::Null => return None,
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some((key.clone(), Value::String(text)))
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct Sent {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorEnvelope {
    error: Option<GoogleError>,
}

#[derive(Debug, Default, Deserialize)]
struct GoogleError {
    message: Option<String>,
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

/// `HTTP 404 NOT_FOUND/UNREGISTERED: Requested entity was not found.`
fn describe_error(status: u16, body: &[u8]) -> String {
    let error = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.error)
        .unwrap_or_default();
    let code = error
        .details
        .iter()
        .find_map(|detail| detail.get("errorCode").and_then(Value::as_str));
    format!(
        "FCM answered HTTP {status} {}/{}: {}",
        error.status.as_deref().unwrap_or("-"),
        code.unwrap_or("-"),
        error.message.as_deref().unwrap_or("no error message"),
    )
}

impl Sender for FcmSender {
    fn channel(&self) -> Channel {
        Channel::Push
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, SendError>> {
        Box::pin(async move {
            let Recipient::Push(token) = &message.recipient else {
                return Err(wrong_channel(Channel::Push, message));
            };
            let delivery = self.send_to(token, message).await?;
            tracing::debug!(message_id = %message.id, name = ?delivery.provider_message_id, "push accepted");
            Ok(delivery)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_flattened_to_strings() {
        let map = string_map(&json!({
            "order_id": "o-1", "count": 3, "paid": true, "gone": null, "nested": {"a": [1]}
        }))
        .unwrap();
        assert_eq!(
            Value::Object(map),
            json!({"order_id": "o-1", "count": "3", "paid": "true", "nested": "{\"a\":[1]}"})
        );
        assert!(string_map(&Value::Null).unwrap().is_empty());
        assert!(string_map(&json!([1, 2])).is_err());
    }

    #[test]
    fn errors_name_the_fcm_code() {
        let body = json!({"error": {
            "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                         "errorCode": "UNREGISTERED"}]
        }});
        let text = describe_error(404, body.to_string().as_bytes());
        assert_eq!(
            text,
            "FCM answered HTTP 404 NOT_FOUND/UNREGISTERED: Requested entity was not found."
        );
        assert_eq!(
            describe_error(502, b"<html>bad gateway</html>"),
            "FCM answered HTTP 502 -/-: no error message"
        );
    }
}
