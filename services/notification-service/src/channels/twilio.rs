//! SMS through Twilio's Programmable Messaging API.
//!
//! One form-encoded `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json` per message
//! with `To`, `Body` and either `From` (one of our numbers) or `MessagingServiceSid` (a
//! Messaging Service that picks the number), authenticated with HTTP basic auth
//! `AccountSid:AuthToken`. A 201 carries the message's `sid` (`SM…`).
//!
//! Errors come as `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`; the code
//! and message go into the [`SendError`]. 4xx is permanent (an invalid or unreachable number,
//! an opted-out recipient, a bad credential), except 429 (rate limit) and 408; those, 5xx,
//! connection failures and timeouts are transient.
//!
//! The body is sent as given: Twilio splits long texts into segments itself (up to 1600
//! characters; beyond that it refuses with a 400).

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use platform_config::{Env, ExposeSecret, SecretString};
use serde::Deserialize;

use super::support::{self, build_client, exchange, status_error, wrong_channel};
use super::{Channel, Delivery, Message, Recipient, SendError, Sender, SetupError};
use crate::address::PhoneNumber;

pub const NAME: &str = "twilio";
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

const FROM_EXPECTED: &str =
    "a sending number in E.164 form (+15551234567) or a Messaging Service SID (MG…)";

/// Where Twilio's messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioFrom {
    /// Sent as `From`.
    Number(PhoneNumber),
    /// Sent as `MessagingServiceSid`: Twilio chooses the number from the service's pool.
    MessagingService(String),
}

impl TwilioFrom {
    /// A Messaging Service SID (`MG` and 32 hex digits) or a phone number.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if let Some(hex) = raw.strip_prefix("MG") {
            return (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| TwilioFrom::MessagingService(raw.to_owned()));
        }
        PhoneNumber::parse(raw).ok().map(TwilioFrom::Number)
    }
}

/// How to reach Twilio. `Debug` shows the auth token as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// `AC…`: identifies the account, and is the basic-auth user.
    pub account_sid: String,
    pub auth_token: SecretString,
    pub from: TwilioFrom,
    /// Without a trailing slash; tests point it at a fake server.
    pub base_url: String,
    /// For a whole API call, connecting included.
    pub timeout: Duration,
}

impl TwilioConfig {
    pub fn new(account_sid: impl Into<String>, auth_token: SecretString, from: TwilioFrom) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token,
            from,
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: super::DEFAULT_TIMEOUT,
        }
    }

    /// Reads `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_FROM` and `TWILIO_BASE_URL`.
    /// `None` when none of the first three is set (SMS goes to the log); when only some are,
    /// the missing ones are reported on `env`.
    pub fn from_env(env: &mut Env, timeout: Duration) -> Option<Self> {
        let names = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"];
        if !names.iter().any(|name| env.is_set(name)) {
            return None;
        }
        let account_sid =
            env.optional_with("TWILIO_ACCOUNT_SID", "a Twilio Account SID (AC…)", |raw| {
                (raw.starts_with("AC") && support::is_path_safe(raw)).then(|| raw.to_owned())
            });
        let auth_token = env.secret("TWILIO_AUTH_TOKEN");
        let from = env.optional_with("TWILIO_FROM", FROM_EXPECTED, TwilioFrom::parse);
        let base_url = support::base_url(env, "TWILIO_BASE_URL", DEFAULT_BASE_URL);
        // Malformed values were reported by `optional_with`; only absent ones are left.
        let wanted = [
            ("TWILIO_ACCOUNT_SID", "a Twilio Account SID (AC…)"),
            ("TWILIO_AUTH_TOKEN", "the account's Auth Token"),
            ("TWILIO_FROM", FROM_EXPECTED),
        ];
        for (name, expected) in wanted {
            if !env.is_set(name) {
                env.report(
                    name,
                    format!("{expected} (required with the other TWILIO_ settings)"),
                );
            }
        }
        Some(Self {
            account_sid: account_sid?,
            auth_token: auth_token?,
            from: from?,
            base_url,
            timeout,
        })
    }
}

/// SMS through Twilio. One HTTP client (one connection pool) per sender.
pub struct TwilioSender {
    config: TwilioConfig,
    client: reqwest::Client,
}

impl fmt::Debug for TwilioSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TwilioSender {
    pub fn new(mut config: TwilioConfig) -> Result<Self, SetupError> {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        let client = build_client(config.timeout)?;
        Ok(Self { config, client })
    }

    async fn create_message(&self, to: &PhoneNumber, body: &str) -> Result<Delivery, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.config.base_url, self.config.account_sid
        );
        let from = match &self.config.from {
            TwilioFrom::Number(number) => ("From", number.as_str()),
            TwilioFrom::MessagingService(sid) => ("MessagingServiceSid", sid.as_str()),
        };
        let form = [("To", to.as_str()), from, ("Body", body)];
        let request = self
            .client
            .post(url)
            // reqwest marks the Authorization header sensitive: it never shows in its Debug.
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose_secret()),
            )
            .form(&form);
        let (status, body) = exchange(request).await?;
        if !status.is_success() {
            let error = serde_json::from_slice::<TwilioError>(&body).unwrap_or_default();
            return Err(status_error(
                status,
                format!(
                    "Twilio answered HTTP {} (code {}): {}",
                    status.as_u16(),
                    error.code.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    error.message.as_deref().unwrap_or("no error message"),
                ),
            ));
        }
        // Accepted: the SMS will go out. An answer we cannot read is no reason to fail (and
        // be retried, and send it twice).
        let sid = serde_json::from_slice::<Created>(&body)
            .ok()
            .and_then(|created| created.sid);
        if sid.is_none() {
            tracing::warn!("Twilio accepted a message without a readable sid");
        }
        Ok(Delivery {
            provider_message_id: sid,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct TwilioError {
    code: Option<u32>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Created {
    sid: Option<String>,
}

impl Sender for TwilioSender {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, SendError>> {
        Box::pin(async move {
            let Recipient::Sms(to) = &message.recipient else {
                return Err(wrong_channel(Channel::Sms, message));
            };
            let delivery = self.create_message(to, &message.text).await?;
            tracing::debug!(message_id = %message.id, sid = ?delivery.provider_message_id, "SMS accepted");
            Ok(delivery)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_a_number_or_a_messaging_service() {
        assert_eq!(
            TwilioFrom::parse("+1 555 123 4567"),
            Some(TwilioFrom::Number(
                PhoneNumber::parse("+15551234567").unwrap()
            ))
        );
        let service = "MG0123456789abcdef0123456789abcdef";
        assert_eq!(
            TwilioFrom::parse(service),
            Some(TwilioFrom::MessagingService(service.to_owned()))
        );
        for bad in ["", "Shop", "MG123", "15551234567"] {
            assert_eq!(TwilioFrom::parse(bad), None, "{bad}");
        }
    }
}
