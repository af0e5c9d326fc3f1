//! Plumbing the HTTP providers share: how one exchange maps onto [`SendError`], and checking
//! recipients and ids. Clients, base URLs and status classes come from `platform-outbound`,
//! shared with the other services that call third-party APIs.

use platform_outbound::{Failure, StatusCode};

pub(super) use platform_outbound::{base_url, client as build_client};

use super::{Channel, Message, SendError};

/// Sends `request` and reads the whole answer. Getting none (connect error, timeout, broken
/// connection) is transient; a request that cannot even be built is our bug, and permanent.
pub(super) async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, Vec<u8>), SendError> {
    platform_outbound::exchange(request)
        .await
        .map_err(|failure| match failure {
            Failure::NotSent(reason) | Failure::Transient(reason) => SendError::Transient(reason),
            Failure::Permanent(reason) => SendError::Permanent(reason),
        })
}

/// The error for a non-success answer, classified by its status.
pub(super) fn status_error(status: StatusCode, what: String) -> SendError {
    if platform_outbound::is_transient_status(status) {
        SendError::Transient(what)
    } else {
        SendError::Permanent(what)
    }
}

/// A sender handed a message for another channel was wired up wrongly; retrying cannot help.
pub(super) fn wrong_channel(expected: Channel, message: &Message) -> SendError {
    SendError::Permanent(format!(
        "a {expected} sender cannot deliver to a {} recipient",
        message.channel()
    ))
}

/// Whether a value can go into a URL path segment as it is: what provider ids look like.
pub(super) fn is_path_safe(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for status in [500, 502, 503, 429, 408] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                status_error(status, String::new()).is_transient(),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                !status_error(status, String::new()).is_transient(),
                "{status}"
            );
        }
    }

    #[test]
    fn path_safety() {
        assert!(is_path_safe("AC0123abc"));
        assert!(is_path_safe("my-project-123"));
        for bad in ["", "../x", "a/b", "a?b", "a b", "a%2F"] {
            assert!(!is_path_safe(bad), "{bad}");
        }
    }
}
