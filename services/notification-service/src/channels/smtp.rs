//! Email over SMTP, through lettre's pooled async transport.
//!
//! `SMTP_URL` takes lettre's connection URL form, which decides the transport security:
//!
//! - `smtp://host:25` — plain text, no TLS at all (a local relay or a test server);
//! - `smtp://host:587?tls=opportunistic` — STARTTLS when the server offers it;
//! - `smtp://host:587?tls=required` — STARTTLS or fail;
//! - `smtps://host:465` — TLS from the first byte.
//!
//! Credentials go in the URL (`smtp://user:password@host…`, percent-encoded), which is why the
//! whole URL is treated as a secret: it is never echoed in configuration errors, and `Debug`
//! shows only scheme, host, port and TLS mode. `SMTP_FROM` is the sender, with an optional
//! display name (`Shop <no-reply@example.com>`).
//!
//! A message with HTML goes out as `multipart/alternative` (text, then HTML: clients show the
//! last part they understand); without, as `text/plain`. Its `Message-ID` is
//! `<{message id}@{sender's domain}>`, so a bounce or complaint leads back to our record.
//!
//! Replies map as RFC 5321 defines them: 4xx is transient, 5xx permanent. Connection, network,
//! TLS and timeout failures are transient; lettre's own "client" errors (no common AUTH
//! mechanism, STARTTLS required but not offered) are configuration problems, so permanent.
//!
//! No overall deadline is put around a send: cancelling lettre mid-conversation would put a
//! connection in an unknown state back into its pool. `NOTIFY_TIMEOUT` bounds each network
//! operation instead (connect, every command, the data transfer).

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use platform_config::{Env, ExposeSecret, SecretString};

use super::support::wrong_channel;
use super::{Channel, Delivery, Message, Recipient, SendError, Sender, SetupError};
use crate::address::EmailAddress;

pub const NAME: &str = "smtp";

const URL_EXPECTED: &str = "an SMTP URL: smtp://[user:password@]host[:port] (no TLS), \
     smtp://…?tls=required or ?tls=opportunistic (STARTTLS), or smtps://…:465 (TLS)";
const FROM_EXPECTED: &str =
    "a sender address with an optional display name, such as Shop <no-reply@example.com>";

/// How to reach the relay and who the mail is from. `Debug` leaves out the URL's
/// credentials.
#[derive(Clone)]
pub struct SmtpConfig {
    /// lettre's connection URL; a secret because it may carry the password.
    pub url: SecretString,
    pub from: EmailAddress,
    /// Shown by mail clients instead of the bare address.
    pub from_name: Option<String>,
    /// For each network operation (connect, each command, the message data).
    pub timeout: Duration,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("server", &self.server())
            .field("from", &self.from)
            .field("from_name", &self.from_name)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SmtpConfig {
    pub fn new(url: SecretString, from: EmailAddress) -> Self {
        Self {
            url,
            from,
            from_name: None,
            timeout: super::DEFAULT_TIMEOUT,
        }
    }

    /// Reads `SMTP_URL` and `SMTP_FROM`. `None` when neither is set (email goes to the log);
    /// one without the other, or either malformed, is reported on `env`.
    pub fn from_env(env: &mut Env, timeout: Duration) -> Option<Self> {
        let url = env.secret("SMTP_URL");
        let from = env.optional_with("SMTP_FROM", FROM_EXPECTED, parse_from);
        let Some(url) = url else {
            if env.is_set("SMTP_FROM") {
                env.report(
                    "SMTP_URL",
                    format!("{URL_EXPECTED} (required when SMTP_FROM is set)"),
                );
            }
            return None;
        };
        // Reported without the value (`report` never echoes it): it may hold the password.
        if let Err(why) = check_url(url.expose_secret()) {
            env.report("SMTP_URL", format!("{URL_EXPECTED}; {why}"));
            return None;
        }
        let Some((from_name, from)) = from else {
            if !env.is_set("SMTP_FROM") {
                env.report(
                    "SMTP_FROM",
                    format!("{FROM_EXPECTED} (required when SMTP_URL is set)"),
                );
            }
            return None;
        };
        Some(Self {
            url,
            from,
            from_name,
            timeout,
        })
    }

    /// Scheme, host, port and TLS mode, without credentials: safe to log.
    pub fn server(&self) -> String {
        describe_url(self.url.expose_secret())
    }
}

/// `Name <address>` or a bare address; the address must pass our own validation too, since
/// lettre's is laxer.
fn parse_from(raw: &str) -> Option<(Option<String>, EmailAddress)> {
    let mailbox: Mailbox = raw.parse().ok()?;
    let email = EmailAddress::parse(mailbox.email.as_ref()).ok()?;
    let name = mailbox.name.filter(|name| !name.trim().is_empty());
    Some((name, email))
}

/// The checks lettre would make when building the transport, with a reason that does not
/// quote the URL.
fn check_url(raw: &str) -> Result<(), &'static str> {
    let url = reqwest::Url::parse(raw).map_err(|_| "not a URL")?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host");
    }
    let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v);
    match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("required" | "opportunistic")) | ("smtps", _) => Ok(()),
        ("smtp", Some(_)) => Err("tls must be required or opportunistic (leave it out for none)"),
        _ => Err("the scheme must be smtp or smtps"),
    }
}

fn describe_url(raw: &str) -> String {
    let Ok(url) = reqwest::Url::parse(raw) else {
        return "[invalid URL]".to_owned();
    };
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    // lettre's defaults for each mode.
    let (default_port, mode) = match (url.scheme(), tls.as_deref()) {
        ("smtps", _) => (465, "tls"),
        (_, Some(mode)) => (
            587,
            if mode == "required" {
                "starttls"
            } else {
                "opportunistic starttls"
            },
        ),
        _ => (25, "no tls"),
    };
    let credentials = if url.password().is_some() {
        ", with credentials"
    } else {
        ""
    };
    format!(
        "{}://{}:{} ({mode}{credentials})",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().unwrap_or(default_port),
    )
}

/// Email through an SMTP relay. One connection pool per sender.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// For `Debug` and logs: the relay without its credentials.
    server: String,
}

impl fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSender")
            .field("server", &self.server)
            .field("from", &self.from.email)
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// Must be called inside a Tokio runtime: lettre's pool starts its clean-up task here.
    pub fn new(config: &SmtpConfig) -> Result<Self, SetupError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SetupError::NoRuntime);
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.url.expose_secret())
            .map_err(|e| SetupError::SmtpUrl(e.to_string()))?
            .timeout(Some(config.timeout))
            .build();
        let address = config
            .from
            .as_str()
            .parse()
            .map_err(|e: lettre::address::AddressError| SetupError::SmtpFrom(e.to_string()))?;
        Ok(Self {
            transport,
            from: Mailbox::new(config.from_name.clone(), address),
            server: config.server(),
        })
    }

    fn compose(&self, message: &Message, to: &EmailAddress) -> Result<lettre::Message, SendError> {
        let to = to
            .as_str()
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                SendError::Permanent(format!("the recipient is not a usable address: {e}"))
            })?;
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(message.subject.as_str())
            .message_id(Some(format!(
                "<{}@{}>",
                message.id,
                self.from.email.domain()
            )));
        let built = match &message.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(SinglePart::plain(message.text.clone())),
        };
        built.map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))
    }
}

impl Sender for SmtpSender {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<Delivery, SendError>> {
        Box::pin(async move {
            let Recipient::Email(to) = &message.recipient else {
                return Err(wrong_channel(Channel::Email, message));
            };
            let email = self.compose(message, to)?;
            let response = self.transport.send(email).await.map_err(send_error)?;
            // The relay's answer to the data usually names its queue id ("Ok: queued as …"):
            // what to search its logs for.
            let reply = response.message().collect::<Vec<_>>().join(" ");
            tracing::debug!(message_id = %message.id, server = %self.server, %reply, "email accepted");
            Ok(Delivery {
                provider_message_id: (!reply.trim().is_empty()).then_some(reply),
            })
        })
    }
}

fn send_error(error: lettre::transport::smtp::Error) -> SendError {
    if error.is_permanent() {
        SendError::Permanent(format!("the SMTP server refused: {error}"))
    } else if error.is_transient() || error.is_timeout() {
        SendError::Transient(format!("the SMTP server deferred: {error}"))
    } else if error.is_client() {
        SendError::Permanent(format!("SMTP client error: {error}"))
    } else {
        SendError::Transient(format!("SMTP connection failed: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_quoting_them() {
        for ok in [
            "smtp://localhost",
            "smtp://user:pa%40ss@mail.example.com:2525",
            "smtp://mail.example.com:587?tls=required",
            "smtp://mail.example.com?tls=opportunistic",
            "smtps://mail.example.com",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "mail.example.com",
            "http://mail.example.com",
            "smtp://mail.example.com?tls=none",
            "smtp://",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_description_has_no_credentials() {
        let text = describe_url("smtp://user:hunter2@mail.example.com?tls=required");
        assert_eq!(
            text,
            "smtp://mail.example.com:587 (starttls, with credentials)"
        );
        assert_eq!(
            describe_url("smtps://mail.example.com"),
            "smtps://mail.example.com:465 (tls)"
        );
        assert_eq!(
            describe_url("smtp://127.0.0.1:2525"),
            "smtp://127.0.0.1:2525 (no tls)"
        );
    }

    #[test]
    fn from_takes_a_display_name() {
        let (name, email) = parse_from("Shop <No-Reply@Example.com>").unwrap();
        assert_eq!(name.as_deref(), Some("Shop"));
        assert_eq!(email.as_str(), "No-Reply@example.com");
        let (name, email) = parse_from("no-reply@example.com").unwrap();
        assert_eq!(name, None);
        assert_eq!(email.as_str(), "no-reply@example.com");
        assert!(parse_from("Shop").is_none());
        assert!(parse_from("Shop <no-reply@localhost>").is_none());
    }
}
