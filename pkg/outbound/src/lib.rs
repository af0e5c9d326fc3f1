//! Calling third-party HTTP APIs (payment providers, SMS and push gateways): one way to build
//! the client, to classify what went wrong, to read a provider's base URL and timeout from the
//! environment, and to sign and check webhooks ([`sign`]).
//!
//! Every failure is [`Failure::NotSent`] (no connection was made: the provider saw nothing),
//! [`Failure::Transient`] (no answer after the request may have left: a timeout, a broken
//! connection; it may have taken effect) or [`Failure::Permanent`] (the request itself is
//! wrong; repeating it cannot help). Each service maps these onto its own error type: a
//! notification can be sent again after either of the first two, money only after the first.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::{Duration, Instant};

use platform_config::Env;
use platform_metrics::{Metrics, histogram};
pub use reqwest::StatusCode;
use tracing::Instrument;

pub mod sign;

/// Why an exchange with a provider did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (refused, unreachable, DNS, the TLS handshake): not one
    /// byte of the request reached the provider.
    NotSent(String),
    /// Timed out or the connection broke after the request may have been sent: the provider
    /// may have acted on it.
    Transient(String),
    /// The request could not even be built: our bug, not the provider's state.
    Permanent(String),
}

/// A client for one provider: bounded in time, and never following redirects (a provider API
/// does not redirect; following one would send the credentials somewhere not configured).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// One call to a provider (`operation`, e.g. `charge`, on `provider`, e.g. `stripe`) made by
/// `metrics`' service: a client span named `{operation} {provider}` around it, and its time in
/// `provider_request_duration_seconds{provider, operation, outcome}`, where `outcome` names
/// how it ended (`ok`, or the caller's class of failure).
pub async fn observed<T, E: std::fmt::Display>(
    metrics: Option<&Metrics>,
    provider: &'static str,
    operation: &'static str,
    call: impl Future<Output = Result<T, E>>,
    outcome: impl FnOnce(&E) -> &'static str,
) -> Result<T, E> {
    let span = tracing::info_span!(
        "provider call",
        otel.name = %format_args!("{operation} {provider}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        service = metrics.map_or("", Metrics::service),
        provider,
        operation,
        outcome = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ended = match &result {
        Ok(_) => "ok",
        Err(error) => {
            let class = outcome(error);
            platform_telemetry::record_error(&span, class, &error.to_string());
            span.in_scope(|| tracing::debug!(%error, "provider call failed"));
            class
        }
    };
    span.record("outcome", ended);
    if let Some(metrics) = metrics {
        metrics.record(|| {
            histogram!(
                "provider_request_duration_seconds",
                "provider" => provider,
                "operation" => operation,
                "outcome" => ended,
            )
            .record(elapsed)
        });
    }
    result
}

/// Sends `request` and reads the whole answer, whatever its status.
pub async fn exchange(request: reqwest::RequestBuilder) -> Result<(StatusCode, Vec<u8>), Failure> {
    let response = request.send().await.map_err(transport_failure)?;
    let status = response.status();
    let body = response.bytes().await.map_err(transport_failure)?;
    Ok((status, body.to_vec()))
}

fn transport_failure(error: reqwest::Error) -> Failure {
    if error.is_builder() {
        return Failure::Permanent(format!("invalid request: {}", error.without_url()));
    }
    // A connect error (a connect timeout included) happens before the request is written.
    if error.is_connect() {
        return Failure::NotSent(format!("could not connect: {}", error.without_url()));
    }
    let what = if error.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    Failure::Transient(format!("{what}: {}", error.without_url()))
}

/// Statuses that say "not now" rather than "not this": outages, overload, rate limits.
pub fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// An API base URL without its trailing slash, so paths can be appended with `format!`.
/// Credentials, queries and fragments are refused: they belong in headers, not in the URL.
pub fn parse_base_url(raw: &str) -> Option<String> {
    let url = reqwest::Url::parse(raw).ok()?;
    let usable = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    usable.then(|| raw.trim_end_matches('/').to_owned())
}

/// The base URL in `name`, or `default`; a bad value is reported.
pub fn base_url(env: &mut Env, name: &str, default: &str) -> String {
    env.optional_with(
        name,
        "an http(s) URL such as https://api.example.com",
        parse_base_url,
    )
    .unwrap_or_else(|| default.to_owned())
}

/// A positive duration in `name`, or `default`; zero or a bad value is reported.
pub fn timeout(env: &mut Env, name: &str, default: Duration) -> Duration {
    env.optional_with(name, "a positive duration such as 500ms or 10s", |raw| {
        use platform_config::FromEnv;
        Duration::from_env(raw).filter(|d| !d.is_zero())
    })
    .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_lose_their_trailing_slash_and_refuse_credentials() {
        assert_eq!(
            parse_base_url("https://api.example.com/").as_deref(),
            Some("https://api.example.com")
        );
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://x/#f",
            "https://user:pw@x",
            "",
        ] {
            assert_eq!(parse_base_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        for status in [500, 502, 503, 429, 408] {
            assert!(is_transient_status(StatusCode::from_u16(status).unwrap()));
        }
        for status in [400, 401, 402, 403, 404, 409, 422] {
            assert!(!is_transient_status(StatusCode::from_u16(status).unwrap()));
        }
    }

    #[test]
    fn settings_are_read_and_bad_ones_reported() {
        let mut env = Env::from_pairs([("API_URL", "https://a.example/"), ("API_TIMEOUT", "0s")]);
        assert_eq!(
            base_url(&mut env, "API_URL", "https://d"),
            "https://a.example"
        );
        assert_eq!(
            timeout(&mut env, "API_TIMEOUT", Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(env.issues()[0].variable, "API_TIMEOUT");
    }

    #[tokio::test]
    async fn nothing_listening_is_not_sent() {
        let client = client(Duration::from_millis(500)).unwrap();
        let failure = exchange(client.get("http://127.0.0.1:1/"))
            .await
            .unwrap_err();
        assert!(matches!(failure, Failure::NotSent(_)), "{failure:?}");
    }

    #[tokio::test]
    async fn a_timeout_after_sending_is_transient_not_unsent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and reads, never answers: the request left, its outcome is unknown.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let client = client(Duration::from_millis(300)).unwrap();
        let failure = exchange(client.post(format!("http://{address}/")).body("x"))
            .await
            .unwrap_err();
        assert!(matches!(failure, Failure::Transient(_)), "{failure:?}");
        server.abort();
    }
}
