//! The header rules both heads follow: which fields are hop-by-hop and may never cross the
//! proxy, which ones `Connection` cannot name away, and the two writers every head is built
//! with (no formatting machinery on the hot path).

use httparse::Header;

use platform_http::framing::tokens;

/// Most headers a head may carry on the fast path (more → hyper's path).
pub const MAX_HEADERS: usize = 64;

/// Headers meaningful for one connection only (RFC 9110 §7.6.1), never forwarded (by either
/// path: [`crate::Proxy`] strips the same list).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers a `Connection` header may not name away: the framing ones (whose removal would
/// leave a body without its length: request smuggling), and those the gateway sets or checks.
pub const PROTECTED: [&str; 14] = [
    "content-length",
    "transfer-encoding",
    "host",
    "authorization",
    "x-user-id",
    "x-user-role",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "traceparent",
    "tracestate",
    "idempotency-key",
];

/// Whether `Connection` may name `name` as hop-by-hop (see [`PROTECTED`]).
pub fn may_be_named_hop_by_hop(name: &str) -> bool {
    !PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p))
}

/// Whether `name` is hop-by-hop, or named as such by the message's `Connection` header (a
/// name in [`PROTECTED`] stays end-to-end whatever `Connection` says).
pub fn is_hop_by_hop(name: &str, connection: &[Header<'_>]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || (may_be_named_hop_by_hop(name)
            && connection.iter().any(|header| {
                tokens(header.value).any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
            }))
}

pub(super) fn has_token(headers: &[Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
}

/// Appends `name: value\r\n`.
pub fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number.
pub fn put_number(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_includes_what_connection_names_except_protected_headers() {
        let connection = [Header {
            name: "Connection",
            value: b"keep-alive, X-Secret-Hop, Content-Length, Host, Authorization, x-user-id",
        }];
        assert!(is_hop_by_hop("Keep-Alive", &connection));
        assert!(is_hop_by_hop("x-secret-hop", &connection));
        assert!(is_hop_by_hop("Transfer-Encoding", &[]));
        assert!(!is_hop_by_hop("x-request-id", &connection));
        for protected in ["content-length", "Host", "authorization", "X-User-Id"] {
            assert!(!is_hop_by_hop(protected, &connection), "{protected}");
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut out = Vec::new();
        for n in [0, 7, 42, 1_000_000, u64::MAX] {
            out.clear();
            put_number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
