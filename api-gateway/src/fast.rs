//! The gateway's HTTP/1 fast path: plain HTTP/1.1 requests on `/api` routes are parsed,
//! admitted and forwarded here, on `platform_proxy::h1`, without hyper, axum or `HeaderMap`s.
//!
//! The policy is the same code as the hyper path's ([`crate::forward`]): edge authentication,
//! rate limits, load shedding, balancing, breakers, budgeted retries, route timeouts, metrics,
//! request ids, trace context, access log. What differs is only the I/O: the head is rewritten
//! straight from the parsed bytes, the upstream connection is driven by this task, and a small
//! response goes out in one write.
//!
//! Every head is checked by `platform_http::framing` first, exactly as hyper's guard checks
//! the heads it lets through: a request whose framing is ambiguous (both lengths, a repeated
//! or odd length, a coding other than `chunked`, bare CR/LF, obs-fold, …) is refused with a
//! problem and the connection closed. Nothing of it reaches an upstream.
//!
//! Anything else goes to hyper with the bytes already read (see `platform_http::front`):
//! HTTP/1.0 and HTTP/2, upgrades, `Expect`, chunked or large (> 64 KiB) request bodies,
//! browser requests when CORS is on, heads with many fields, and paths outside the route
//! table. HTTP/2 `/api` requests come back from hyper one by one, to the same policy and
//! upstream client ([`h2`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use platform_auth::AuthUser;
use platform_http::front::{Connection, ConnectionFuture, Front, H2Request, ResponseFuture};
use platform_proxy::h1::{self, ResponseHead, UpstreamConnection};
use tokio::sync::OwnedSemaphorePermit;

use crate::forward::{Answered, Gateway, RetryPolicy};
use crate::routes::Route;

mod admit;
mod connection;
mod exchange;
mod h2;
mod upstream;

/// Head and body are buffered whole on the fast path up to this size; bigger requests stream
/// through hyper.
const READ_LIMIT: usize = 64 * 1024;

/// The [`Front`] the gateway's server runs.
pub struct FastPath {
    gateway: Arc<Gateway>,
    client: h1::Client,
    service: Arc<str>,
    /// With CORS on, requests carrying `Origin` take the hyper path (where the CORS layer is).
    cors: bool,
}

impl FastPath {
    pub fn new(gateway: Arc<Gateway>, service: &str, cors: bool) -> Self {
        Self {
            client: gateway.proxy.h1(),
            gateway,
            service: Arc::from(service),
            cors,
        }
    }
}

impl Front for FastPath {
    fn serve(self: Arc<Self>, connection: Connection) -> ConnectionFuture {
        Box::pin(async move { self.connection(connection).await })
    }

    fn serve_h2(
        self: Arc<Self>,
        request: H2Request,
        peer: SocketAddr,
        secure: bool,
    ) -> Result<ResponseFuture, H2Request> {
        self.h2(request, peer, secure)
    }
}

/// A request admitted to the fast path, with what the rest of the exchange needs.
struct Prepared<'g> {
    route: &'g Route,
    method: Method,
    request_id: HeaderValue,
    span: tracing::Span,
    /// The edge's verdict on the caller: identity, or the refusal.
    caller: Result<Option<AuthUser>, Response>,
    /// Upstream request head up to (without) the identity headers, `Host` and blank line.
    start: Vec<u8>,
    head_len: usize,
    body_len: usize,
    /// Whether the request declares a body (its length is sent even when 0).
    declare_length: bool,
    close: bool,
    policy: RetryPolicy,
    /// The client, as `TRUSTED_PROXIES` resolves it.
    client: IpAddr,
}

/// Where a request's body lies, and whether its connection ends after it.
struct Body {
    /// Bytes of head before the body (0 for HTTP/2, whose head is not in the buffer).
    head_len: usize,
    len: usize,
    close: bool,
}

/// A request head as either protocol's parser leaves it.
trait RequestHead {
    /// The first field named `name` (`host` falls back to HTTP/2's `:authority`).
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Every field, in order (asked for only when the peer is a trusted proxy).
    fn fields(&self) -> Vec<(&str, &[u8])>;
    /// The upstream request line and the client's fields, as [`h1::write_request_start`]
    /// writes them.
    fn write_start(&self, out: &mut Vec<u8>, skip: impl Fn(&str) -> bool);
}

/// A response head from an upstream, with the connection to read its body from.
struct Answer {
    connection: UpstreamConnection,
    head: ResponseHead,
    /// The client's response head, rewritten.
    out: Vec<u8>,
    /// The load-shedding slot, held until the body has been relayed.
    _slot: OwnedSemaphorePermit,
}

impl Answered for Answer {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.head.status).unwrap_or(StatusCode::BAD_GATEWAY)
    }
}

/// What the exchange of one admitted request needs besides its head.
#[derive(Clone, Copy)]
struct Request<'b> {
    /// The client, as `TRUSTED_PROXIES` resolves it.
    client: IpAddr,
    body: &'b [u8],
    declare_length: bool,
    policy: RetryPolicy,
    head_only: bool,
    /// The client connection closes after this exchange.
    close: bool,
    /// The client connection is TLS: answers carry HSTS.
    secure: bool,
}
