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
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use platform_auth::AuthUser;
use platform_http::audit::AuditContext;
use platform_http::framing::{self, Head, Refusal};
use platform_http::front::{
    ClientStream, Connection, ConnectionFuture, Front, H2Request, ResponseFuture, Stopping,
};
use platform_http::guard::GuardConfig;
use platform_http::middleware::{
    HSTS, REQUEST_ID, join_trace, new_request_id, request_span, served,
};
use platform_middleware::Decision;
use platform_proxy::h1::{self, ExchangeError, Framing, ResponseHead, UpstreamConnection};
use platform_proxy::{ProxyError, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use crate::forward::{Answered, Gateway, RetryPolicy, timed_out};
use crate::routes::Route;

mod h2;

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

struct Http1Head<'h, 'b>(&'h httparse::Request<'h, 'b>);

impl RequestHead for Http1Head<'_, '_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    fn fields(&self) -> Vec<(&str, &[u8])> {
        self.0.headers.iter().map(|h| (h.name, h.value)).collect()
    }

    fn write_start(&self, out: &mut Vec<u8>, skip: impl Fn(&str) -> bool) {
        h1::write_request_start(out, self.0, skip);
    }
}

enum Next<'g> {
    Ready(Box<Prepared<'g>>),
    /// More bytes needed: the head is incomplete (`false`) or its body is (`true`).
    Read {
        body: bool,
    },
    Fallback,
    /// Refused before anything acted on it; the connection closes after the answer.
    Refuse(Refusal),
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

impl FastPath {
    async fn connection(self: Arc<Self>, connection: Connection) {
        let Connection {
            mut stream,
            peer,
            fallback,
            shutdown,
            stopping,
            limits,
        } = connection;
        let mut buf = BytesMut::with_capacity(2 * 1024);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let connected = Instant::now();
        // One idle deadline per connection, moved on at most once a second: a timer per
        // request would cost more than the whole rest of the wait. The first request has the
        // head's deadline from the start: a connection that sends nothing is not kept.
        let idle_timeout = limits.idle_timeout.unwrap_or(Duration::from_secs(60));
        let mut idle_from = connected;
        let idle = tokio::time::sleep(limits.header_read_timeout);
        tokio::pin!(idle);
        let mut first = true;
        loop {
            // When the request that has started arriving must be complete: its head within
            // the header-read timeout of its first byte (of the connection's start, for the
            // first), so a client trickling bytes is cut off; its body within the idle
            // timeout of the head.
            let mut deadline: Option<Instant> =
                first.then(|| connected + limits.header_read_timeout);
            let mut reading_body = false;
            let prepared = loop {
                match self.prepare(&buf, peer.ip(), &limits, stream.is_tls()) {
                    Next::Ready(prepared) => break prepared,
                    Next::Fallback => return fallback.serve(stream, peer, buf.freeze()).await,
                    Next::Refuse(refusal) => return refuse(&mut stream, refusal).await,
                    Next::Read { body } => {
                        if body && !reading_body {
                            reading_body = true;
                            deadline = Some(Instant::now() + idle_timeout);
                        }
                    }
                }
                if buf.len() >= READ_LIMIT {
                    return fallback.serve(stream, peer, buf.freeze()).await;
                }
                let read = if buf.is_empty() {
                    // Between requests: idle, so a stop closes the connection now.
                    tokio::select! {
                        biased;
                        _ = &mut cancelled => return,
                        () = &mut idle => return,
                        read = stream.read_buf(&mut buf) => Ok(read),
                    }
                } else {
                    let until = *deadline
                        .get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
                    match tokio::time::timeout_at(until.into(), stream.read_buf(&mut buf)).await {
                        Err(_) if !reading_body => {
                            return refuse(
                                &mut stream,
                                Refusal {
                                    status: 408,
                                    reason: "The request head did not arrive in time.",
                                },
                            )
                            .await;
                        }
                        read => read,
                    }
                };
                match read {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            };
            let started = Instant::now();
            let consumed = prepared.head_len + prepared.body_len;
            let body = &buf[prepared.head_len..consumed];
            let keep = self
                .exchange(*prepared, body, &mut stream, started, &stopping)
                .await;
            buf.advance(consumed);
            if !keep || stopping.is_set() {
                return;
            }
            let now = Instant::now();
            if first || now.saturating_duration_since(idle_from) > Duration::from_secs(1) {
                // Idleness starts after the answer (a long download or an event stream is
                // not idle time).
                first = false;
                idle_from = now;
                idle.as_mut().reset((now + idle_timeout).into());
            }
        }
    }

    /// Parses the request at the start of `buf` and decides whether the fast path takes it.
    fn prepare(&self, buf: &[u8], peer: IpAddr, limits: &GuardConfig, secure: bool) -> Next<'_> {
        let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
        let (head_len, request, framing) = match framing::parse_head(buf, &mut headers, limits.head)
        {
            Ok(Head::Complete {
                len,
                request,
                framing,
            }) => (len, request, framing),
            Ok(Head::Incomplete) => return Next::Read { body: false },
            // More fields than the fast path keeps: the guard in front of hyper checks them.
            Ok(Head::TooManyHeaders) => return Next::Fallback,
            Err(refusal) => return Next::Refuse(refusal),
        };
        let Some(plain) = h1::plain_request(&request, framing) else {
            return Next::Fallback;
        };
        let body_len = usize::try_from(plain.body_len).unwrap_or(usize::MAX);
        if body_len > self.gateway.max_body_bytes || body_len.saturating_add(head_len) > READ_LIMIT
        {
            return Next::Fallback;
        }
        let Ok(method) = Method::from_bytes(request.method.unwrap_or("").as_bytes()) else {
            return Next::Fallback;
        };
        let target = request.path.unwrap_or("/");
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let Some(route) = self.gateway.routes.find(&method, path) else {
            return Next::Fallback;
        };
        let head = Http1Head(&request);
        if self.cors && head.header("origin").is_some() {
            return Next::Fallback;
        }
        if buf.len() < head_len + body_len {
            return Next::Read { body: true };
        }
        Next::Ready(Box::new(self.admit_head(
            route,
            method,
            &head,
            Body {
                head_len,
                len: body_len,
                close: plain.close,
            },
            peer,
            secure,
        )))
    }

    /// What both protocols do with an admitted head: the request id, the trace context, the
    /// client's address, the edge's verdict on the caller, and the upstream request's start.
    fn admit_head<'g>(
        &'g self,
        route: &'g Route,
        method: Method,
        request: &impl RequestHead,
        body: Body,
        peer: IpAddr,
        secure: bool,
    ) -> Prepared<'g> {
        let gateway = &self.gateway;
        let header = |name: &str| request.header(name);
        let request_id = match header("x-request-id") {
            Some(id) if platform_http::middleware::sane_request_id(id) => {
                HeaderValue::from_bytes(id).unwrap_or_else(|_| new_request_id())
            }
            _ => new_request_id(),
        };
        let span = request_span(&self.service, &method, &request_id, "http", header("host"));
        // With spans on, the trace context is re-issued for the next hop (a child of the
        // caller's); with spans off, the caller's own passes through untouched.
        let mut trace = HeaderMap::new();
        if !span.is_disabled() {
            for name in ["traceparent", "tracestate"] {
                if let Some(value) = header(name).and_then(|v| HeaderValue::from_bytes(v).ok()) {
                    trace.insert(HeaderName::from_static(name), value);
                }
            }
            join_trace(&span, &trace);
            trace.clear();
            platform_telemetry::inject_span(&span, &mut trace);
        }
        let spans_on = !span.is_disabled();

        // Forwarding headers are believed only from a trusted proxy.
        let trusted_peer = gateway.trusted_proxies.contains(peer);
        let client = if trusted_peer {
            gateway
                .trusted_proxies
                .client_ip_raw(peer, request.fields().into_iter())
        } else {
            peer
        };
        let caller = gateway.admit_in(route, header("authorization"), || AuditContext {
            client_ip: Some(client),
            request_id: request_id.to_str().ok().map(Arc::from),
        });
        let mut start = Vec::with_capacity(512);
        request.write_start(&mut start, |name| {
            [
                "x-user-id",
                "x-user-role",
                "x-request-id",
                "x-forwarded-for",
                "forwarded",
            ]
            .iter()
            .any(|own| name.eq_ignore_ascii_case(own))
                || (!trusted_peer
                    && (name.eq_ignore_ascii_case("x-forwarded-proto")
                        || name.eq_ignore_ascii_case("x-forwarded-host")))
                || (spans_on
                    && (name.eq_ignore_ascii_case("traceparent")
                        || name.eq_ignore_ascii_case("tracestate")))
        });
        h1::put_header(&mut start, "x-request-id", request_id.as_bytes());
        for (name, value) in &trace {
            h1::put_header(&mut start, name.as_str(), value.as_bytes());
        }
        // X-Forwarded-*: the resolved client; proto and host kept only from a trusted proxy.
        let mut forwarded = Vec::with_capacity(48);
        let _ = std::io::Write::write_fmt(&mut forwarded, format_args!("{client}"));
        h1::put_header(&mut start, "x-forwarded-for", &forwarded);
        if !trusted_peer || header("x-forwarded-proto").is_none() {
            let proto: &[u8] = if secure { b"https" } else { b"http" };
            h1::put_header(&mut start, "x-forwarded-proto", proto);
        }
        if (!trusted_peer || header("x-forwarded-host").is_none())
            && let Some(host) = header("host")
        {
            h1::put_header(&mut start, "x-forwarded-host", host);
        }

        let policy = RetryPolicy::of(
            &method,
            route,
            header("idempotency-key").is_some(),
            body.len > 0,
        );
        let declare_length = body.len > 0 || header("content-length").is_some();
        Prepared {
            route,
            method,
            request_id,
            span,
            caller,
            start,
            head_len: body.head_len,
            body_len: body.len,
            declare_length,
            close: body.close,
            policy,
            client,
        }
    }

    /// Admits and forwards one request and writes its response. Returns whether the client
    /// connection can carry another request.
    async fn exchange(
        &self,
        prepared: Prepared<'_>,
        body: &[u8],
        stream: &mut ClientStream,
        started: Instant,
        stopping: &Stopping,
    ) -> bool {
        let Prepared {
            route,
            method,
            request_id,
            span,
            caller,
            mut start,
            declare_length,
            close,
            policy,
            client,
            ..
        } = prepared;
        let head_only = method == Method::HEAD;
        // The answer says so when the connection closes after it: the client asked, or the
        // server is stopping.
        let close = close || stopping.is_set();
        let outcome = self
            .admit_and_send(
                route,
                caller,
                &mut start,
                Request {
                    client,
                    body,
                    declare_length,
                    policy,
                    head_only,
                    close,
                    secure: stream.is_tls(),
                },
                &request_id,
            )
            .instrument(span.clone())
            .await;
        // Counted when the head is ready, as the pipeline does: a body may stream for long.
        let record = |status: StatusCode| {
            let elapsed = started.elapsed();
            served(
                &self.gateway.metrics,
                &span,
                &method,
                &route.label,
                status,
                elapsed,
            );
        };
        match outcome {
            Ok(mut answer) => {
                record(answer.status());
                let until_close = answer.head.framing == Framing::UntilClose;
                let reusable = answer.head.reusable;
                let relayed = answer
                    .connection
                    .relay(answer.head.framing, &mut answer.out, stream)
                    .await;
                match relayed {
                    Ok(()) => {
                        if reusable {
                            self.client.release(answer.connection);
                        }
                        !until_close && !close
                    }
                    Err(broken) => {
                        tracing::warn!(service = %route.service, error = %broken.error, "relaying an answer failed");
                        if !broken.sent {
                            // The upstream's body broke before any of it went out: the client
                            // can still be told, and the connection closes after.
                            let failed = ProxyError::Broken {
                                service: route.service.clone(),
                                reason: broken.error.to_string(),
                            };
                            let response = failed.to_problem().into_response();
                            let _ = write_generated(stream, response, &request_id, head_only, true)
                                .await;
                        }
                        false
                    }
                }
            }
            Err(response) => {
                record(response.status());
                let written =
                    write_generated(stream, response, &request_id, head_only, close).await;
                written.is_ok() && !close
            }
        }
    }

    /// The hyper path's policy, in its order: load shedding, edge authentication, rate
    /// limits, then budgeted, balanced attempts under the route's deadline.
    async fn admit_and_send(
        &self,
        route: &Route,
        caller: Result<Option<AuthUser>, Response>,
        start: &mut Vec<u8>,
        request: Request<'_>,
        request_id: &HeaderValue,
    ) -> Result<Answer, Response> {
        let gateway = &self.gateway;
        let slot = gateway
            .shed
            .try_enter()
            .map_err(axum::response::IntoResponse::into_response)?;
        let caller = caller?;
        if let Some(caller) = &caller {
            let mut id = uuid::Uuid::encode_buffer();
            let id = caller.id.as_uuid().hyphenated().encode_lower(&mut id);
            h1::put_header(start, "x-user-id", id.as_bytes());
            h1::put_header(start, "x-user-role", caller.role.as_str().as_bytes());
        }
        let decision = gateway
            .limit(route, request.client, caller.as_ref())
            .await?;
        let pool = gateway.pool(route)?;
        gateway.budget.deposit();
        let replayable = request.body.len() <= gateway.retry.max_body_bytes;
        let start = &*start;
        let client = self.client;
        let request = &request;
        let extra = |out: &mut Vec<u8>| {
            h1::put_header(out, "x-request-id", request_id.as_bytes());
            h1::put_header(out, "x-content-type-options", b"nosniff");
            if request.secure {
                h1::put_header(out, "strict-transport-security", HSTS.as_bytes());
            }
            if let Some(decision) = &decision {
                write_decision(out, decision);
            }
        };
        let attempts =
            gateway.attempts(
                route,
                pool,
                replayable,
                request.policy,
                |endpoint, limit| {
                    let sent = h1::finish_request(
                        start,
                        &endpoint.upstream,
                        request.body,
                        request.declare_length,
                    );
                    async move {
                        let upstream = &endpoint.upstream;
                        let attempt = send(client, upstream, &sent, request, extra);
                        match limit {
                            None => attempt.await,
                            Some(limit) => tokio::time::timeout(limit, attempt)
                                .await
                                .unwrap_or_else(|_| {
                                    Err(ProxyError::Timeout {
                                        service: upstream.service.clone(),
                                        timeout: limit,
                                    })
                                }),
                        }
                    }
                },
            );
        let result = match tokio::time::timeout(route.timeout, attempts).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(response)) => Err(response),
            Err(_) => Err(timed_out(route)),
        };
        result
            .map(|(connection, head, out)| Answer {
                connection,
                head,
                out,
                _slot: slot,
            })
            .map_err(|mut response| {
                if let Some(decision) = &decision {
                    decision.write_headers(response.headers_mut());
                }
                response
            })
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

/// An upstream's answer before it is relayed: the connection, the head, the rewritten head.
type Exchanged = (UpstreamConnection, ResponseHead, Vec<u8>);

impl Answered for Exchanged {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.1.status).unwrap_or(StatusCode::BAD_GATEWAY)
    }
}

/// One attempt: a pooled connection (a fresh one when a pooled one turns out stale and the
/// request may be repeated), the request written, the response head read.
async fn send(
    client: h1::Client,
    upstream: &Upstream,
    sent: &[u8],
    request: &Request<'_>,
    extra: impl Fn(&mut Vec<u8>),
) -> Result<Exchanged, ProxyError> {
    let mut connection = client.connect(upstream).await?;
    let mut out = Vec::with_capacity(512);
    let (service, head_only, close) = (&upstream.service, request.head_only, request.close);
    let own = if request.secure { OWN_SECURE } else { OWN };
    let head = match connection
        .exchange(service, sent, head_only, close, &mut out, own, &extra)
        .await
    {
        Ok(head) => head,
        Err(ExchangeError::Stale(_)) if request.policy.after_send() => {
            out.clear();
            connection = client.connect_fresh(upstream).await?;
            connection
                .exchange(service, sent, head_only, close, &mut out, own, &extra)
                .await
                .map_err(|(ExchangeError::Stale(e) | ExchangeError::Failed(e))| e)?
        }
        Err(ExchangeError::Stale(error) | ExchangeError::Failed(error)) => return Err(error),
    };
    Ok((connection, head, out))
}

/// Answers a request refused before anything acted on it, and ends the connection. What the
/// client still sends is read briefly (and dropped), so that closing does not reset the
/// connection under the answer.
async fn refuse(stream: &mut ClientStream, refusal: Refusal) {
    tracing::debug!(%refusal, "request refused on the fast path");
    if stream.write_all(&refusal.response()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// The response headers the gateway sets, replacing an upstream's (as the hyper path's
/// `insert`s do).
const OWN: &[&str] = &[
    "x-request-id",
    "x-content-type-options",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
];

/// [`OWN`] over TLS, where the gateway's HSTS replaces any an upstream sent.
const OWN_SECURE: &[&str] = &[
    "x-request-id",
    "x-content-type-options",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "strict-transport-security",
];

/// `RateLimit-*` headers (as [`Decision::write_headers`] writes them).
fn write_decision(out: &mut Vec<u8>, decision: &Decision) {
    for (name, value) in decision.headers() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        h1::put_number(out, value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a response the gateway made itself (problems, mostly) in one write.
async fn write_generated(
    stream: &mut ClientStream,
    response: Response,
    request_id: &HeaderValue,
    head_only: bool,
    close: bool,
) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    // The gateway's own bodies are small and already in memory.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    h1::put_number(&mut out, u64::from(parts.status.as_u16()));
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == axum::http::header::CONTENT_LENGTH || name == REQUEST_ID {
            continue;
        }
        h1::put_header(&mut out, name.as_str(), value.as_bytes());
    }
    h1::put_header(&mut out, "x-request-id", request_id.as_bytes());
    // The pipeline's security headers, as hyper's path adds them.
    let mut security = HeaderMap::new();
    platform_http::middleware::security_headers(&mut security, stream.is_tls());
    for (name, value) in &security {
        if !parts.headers.contains_key(name) {
            h1::put_header(&mut out, name.as_str(), value.as_bytes());
        }
    }
    if close {
        h1::put_header(&mut out, "connection", b"close");
    }
    out.extend_from_slice(b"content-length: ");
    h1::put_number(&mut out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    stream.write_all(&out).await
}
