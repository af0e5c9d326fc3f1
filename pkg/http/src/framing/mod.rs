//! HTTP/1.1 message framing, strictly (RFC 9112 §2–7): where a request head ends, how long
//! its body is, and which heads are refused outright.
//!
//! Request smuggling lives in the gap between two parsers that frame the same bytes
//! differently. This module is the one framing decision of the platform: the gateway's fast
//! path calls it on every request it parses, and [`crate::guard`] calls it on every request
//! hyper is about to see (on every HTTP/1 server of the platform), so a message that two
//! reasonable parsers could frame differently never reaches either. Refused, with the status
//! and a reason:
//! - `Content-Length` together with `Transfer-Encoding`; a `Content-Length` that is not one
//!   plain number (signs, hex, lists), or repeated with another value;
//! - `Transfer-Encoding` other than exactly `chunked` (one coding: the platform decodes no
//!   other), or on HTTP/1.0;
//! - obs-fold, a bare CR or LF anywhere in the head, whitespace before a header's colon,
//!   control characters (httparse's strict grammar);
//! - no `Host` on HTTP/1.1, several `Host`s, or an invalid one;
//! - a request line over [`MAX_REQUEST_LINE`] (414) or a head over the limit (431);
//! - `CONNECT` (405: nothing here tunnels);
//! - in chunked bodies: sizes that are not 1–16 hex digits, bad extensions, a missing CRLF
//!   after data, bare LFs, oversized extensions or trailers ([`ChunkedScanner`]).

mod chunked;
mod fields;
mod head;
mod refusal;

pub use chunked::{ChunkedScanner, InvalidChunk};
pub use fields::{BodyFraming, Framing, check_request, parse_length, tokens};
pub use head::{
    Head, HeadLimits, MAX_HEADERS, MAX_REQUEST_LINE, check_head, find_head_end, parse_error,
    parse_head,
};
pub use refusal::Refusal;
