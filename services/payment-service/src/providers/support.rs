//! Plumbing the providers share: the webhook tolerance window, header reading, and how one
//! HTTP exchange with a provider maps onto [`ProviderError`]. Clients, base URLs, HMAC and hex
//! come from `platform-outbound`, shared with the other services that call third-party APIs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use platform_config::Env;
use platform_outbound::Failure;

pub(super) use platform_outbound::sign::{from_hex, hmac_sha256, same, to_hex};
pub(super) use platform_outbound::{base_url, client as build_client};

use super::ProviderError;

/// Used when `PROVIDER_TIMEOUT` is unset: long enough for a 3-D Secure-free card
/// authorisation, short enough that failover to the next provider still fits in a checkout.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

pub(super) fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Whether a signature made at `signed_at` (unix seconds) is too far from `now`, in either
/// direction: a timestamp from the future is as suspicious as an old one.
pub(super) fn outside_tolerance(signed_at: i64, now: SystemTime, tolerance: Duration) -> bool {
    unix_seconds(now).abs_diff(signed_at) > tolerance.as_secs()
}

/// One exchange. No connection: not sent (the next provider may be tried). No answer after
/// sending: unknown (this provider may have acted on it).
pub(super) async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, Vec<u8>), ProviderError> {
    platform_outbound::exchange(request)
        .await
        .map_err(|failure| match failure {
            Failure::NotSent(reason) => ProviderError::NotSent(reason),
            Failure::Transient(reason) => ProviderError::Unknown(reason),
            Failure::Permanent(reason) => ProviderError::Rejected(reason),
        })
}

/// A failed answer's class. Stripe and Adyen both document a 429 as "rate limited, not
/// processed": only it may go to another provider. Any 5xx (or a 408) may come after the
/// provider acted: unknown. Other 4xx: our request was wrong.
pub(super) fn status_error(status: StatusCode, what: String) -> ProviderError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        ProviderError::NotSent(what)
    } else if platform_outbound::is_transient_status(status) {
        ProviderError::Unknown(what)
    } else {
        ProviderError::Rejected(what)
    }
}

pub(super) fn timeout(env: &mut Env) -> Duration {
    platform_outbound::timeout(env, "PROVIDER_TIMEOUT", DEFAULT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_applies_both_ways() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let window = Duration::from_secs(300);
        assert!(!outside_tolerance(10_000 - 300, now, window));
        assert!(outside_tolerance(10_000 - 301, now, window));
        assert!(outside_tolerance(10_000 + 301, now, window));
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }
}
