//! A lean HTTP/1.1 forwarding engine: the gateway's fast path.
//!
//! Owns the wire format of plain HTTP/1.1 exchanges (heads parsed with `httparse`, rewritten
//! straight into an output buffer), the body framings a proxy must follow (RFC 9112 §6:
//! no body, `Content-Length`, `chunked` passed through verbatim, until close), and a per-thread
//! pool of keep-alive upstream connections that the request's own task drives — no connection
//! task, no channel, no `HeaderMap`. That is where hyper spends what this saves.
//!
//! Framing is decided once for the platform by `platform_http::framing` (the same checks guard
//! hyper): a request that could be framed two ways is refused before it gets here. Of the
//! rest, this engine handles only the plain cases, and says so: [`plain_request`] answers
//! `None` for anything else (HTTP/1.0, chunked request bodies, upgrades, `Expect`,
//! absolute-form targets), and the caller hands such a connection to hyper.
//!
//! Lengths are always the engine's own: a request's `Content-Length` is written from the body
//! it forwards, a response's from the framing it relays, and `Connection` can never name a
//! framing header or one the gateway sets ([`PROTECTED`]) away.

mod body;
mod exchange;
mod headers;
mod pool;
mod request;
mod response;

use bytes::BytesMut;
use tokio::net::TcpStream;

pub use body::{BodyReader, Framing, RelayError};
pub use exchange::ExchangeError;
pub use headers::{
    HOP_BY_HOP, MAX_HEADERS, PROTECTED, is_hop_by_hop, may_be_named_hop_by_hop, put_header,
    put_number,
};
pub use pool::Client;
pub use request::{PlainRequest, finish_request, plain_request, write_request_start};
pub use response::ResponseHead;

/// A connection to an upstream, checked out of this thread's pool or freshly made.
pub struct UpstreamConnection {
    stream: TcpStream,
    /// Bytes read past the response head.
    buf: BytesMut,
    /// Came from the pool: a failure before any response byte may be a stale connection.
    pub reused: bool,
    key: (u64, u64),
}
