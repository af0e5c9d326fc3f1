//! The gateway's HTTP/1 fast path: plain HTTP/1.1 requests on `/api` routes are parsed,
//! admitted and forwarded here, on `platform_proxy::h1`, without hyper, axum or `HeaderMap`s.
//!
//! The policy is the same code as the hyper path's ([`crate::forward`]): edge authentication,
//! rate limits, load shedding, balancing, breakers, budgeted retries, route timeouts, metrics,
//! request ids, trace context, access log. What differs is only the I/O: the head is rewritten
//! straight from the parsed bytes, the upstream connection is driven by this task, and a small
//! response goes out in one write.
//!
//! Anything else goes to hyper with the bytes already read (see `platform_http::front`):
//! HTTP/1.0 and HTTP/2, upgrades, `Expect`, chunked or large (> 64 KiB) request bodies,
//! browser requests when CORS is on, oversized heads, paths outside the route table, and
//! anything that does not parse (hyper answers it properly).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use platform_auth::AuthUser;
use platform_http::front::{Connection, ConnectionFuture, Front};
use platform_http::middleware::{REQUEST_ID, join_trace, new_request_id, request_span, served};
use platform_middleware::Decision;
use platform_proxy::h1::{self, ExchangeError, Framing, ResponseHead, UpstreamConnection};
use platform_proxy::{ProxyError, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::forward::{Answered, Gateway, retryable, timed_out};
use crate::routes::Route;

/// Head and body are buffered whole on the fast path up to this size; bigger requests stream
/// through hyper.
const READ_LIMIT: usize = 64 * 1024;
/// A keep-alive connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request head (and its body) must arrive within this once it has started.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
    close: bool,
    retryable: bool,
}

enum Next<'g> {
    Ready(Box<Prepared<'g>>),
    /// More bytes needed.
    Read,
    Fallback,
}

/// A response head from an upstream, with the connection to read its body from.
struct Answer {
    connection: UpstreamConnection,
    head: ResponseHead,
    /// The client's response head, rewritten.
    out: Vec<u8>,
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
        } = connection;
        let ip = peer.ip();
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        // One idle deadline per connection, moved on at most once a second: a timer per
        // request would cost more than the whole rest of the wait.
        let mut idle_from = Instant::now();
        let idle = tokio::time::sleep(IDLE_TIMEOUT);
        tokio::pin!(idle);
        loop {
            // Set when a request starts arriving: its head and body get this long in all, so
            // a client trickling bytes cannot hold the connection forever.
            let mut request_deadline: Option<Instant> = None;
            let prepared = loop {
                match self.prepare(&buf, ip) {
                    Next::Ready(prepared) => break prepared,
                    Next::Fallback => return fallback.serve(stream, peer, buf.freeze()).await,
                    Next::Read => {}
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
                    let deadline = *request_deadline
                        .get_or_insert_with(|| Instant::now() + REQUEST_READ_TIMEOUT);
                    tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)).await
                };
                match read {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            };
            let started = Instant::now();
            if started.saturating_duration_since(idle_from) > Duration::from_secs(1) {
                idle_from = started;
                idle.as_mut().reset((started + IDLE_TIMEOUT).into());
            }
            let consumed = prepared.head_len + prepared.body_len;
            let body = &buf[prepared.head_len..consumed];
            let keep = self
                .exchange(*prepared, ip, body, &mut stream, started)
                .await;
            buf.advance(consumed);
            if !keep || stopping.is_set() {
                return;
            }
            if idle.is_elapsed() {
                // The exchange outlasted the deadline (a long download, an event stream):
                // idleness starts now.
                idle_from = Instant::now();
                idle.as_mut().reset((idle_from + IDLE_TIMEOUT).into());
            }
        }
    }

    /// Parses the request at the start of `buf` and decides whether the fast path takes it.
    fn prepare(&self, buf: &[u8], ip: IpAddr) -> Next<'_> {
        let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let head_len = match request.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Next::Read,
            // Malformed, or more headers than the fast path keeps: hyper's answer.
            Err(_) => return Next::Fallback,
        };
        let Some(plain) = h1::plain_request(&request) else {
            return Next::Fallback;
        };
        let gateway = &self.gateway;
        let body_len = usize::try_from(plain.body_len).unwrap_or(usize::MAX);
        if head_len > gateway.max_header_bytes.0
            || body_len > gateway.max_body_bytes
            || body_len.saturating_add(head_len) > READ_LIMIT
        {
            return Next::Fallback;
        }
        let Ok(method) = Method::from_bytes(request.method.unwrap_or("").as_bytes()) else {
            return Next::Fallback;
        };
        let target = request.path.unwrap_or("/");
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let Some(route) = gateway.routes.find(&method, path) else {
            return Next::Fallback;
        };
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        if self.cors && header("origin").is_some() {
            return Next::Fallback;
        }
        if buf.len() < head_len + body_len {
            return Next::Read;
        }

        let request_id = match header("x-request-id") {
            Some(id) if platform_http::middleware::sane_request_id(id) => {
                HeaderValue::from_bytes(id).unwrap_or_else(|_| new_request_id())
            }
            _ => new_request_id(),
        };
        let span = request_span(&self.service, &method, &request_id);
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

        let caller = gateway.admit(route, header("authorization"));
        let mut start = Vec::with_capacity(head_len + 256);
        h1::write_request_start(&mut start, &request, |name| {
            [
                "x-user-id",
                "x-user-role",
                "x-request-id",
                "x-forwarded-for",
            ]
            .iter()
            .any(|own| name.eq_ignore_ascii_case(own))
                || (spans_on
                    && (name.eq_ignore_ascii_case("traceparent")
                        || name.eq_ignore_ascii_case("tracestate")))
        });
        h1::put_header(&mut start, "x-request-id", request_id.as_bytes());
        for (name, value) in &trace {
            h1::put_header(&mut start, name.as_str(), value.as_bytes());
        }
        // X-Forwarded-*: the client's address appended, proto and host kept when present.
        let mut forwarded = Vec::with_capacity(64);
        if let Some(previous) = header("x-forwarded-for") {
            forwarded.extend_from_slice(previous);
            forwarded.extend_from_slice(b", ");
        }
        let _ = std::io::Write::write_fmt(&mut forwarded, format_args!("{ip}"));
        h1::put_header(&mut start, "x-forwarded-for", &forwarded);
        if header("x-forwarded-proto").is_none() {
            h1::put_header(&mut start, "x-forwarded-proto", b"http");
        }
        if header("x-forwarded-host").is_none()
            && let Some(host) = header("host")
        {
            h1::put_header(&mut start, "x-forwarded-host", host);
        }

        let retryable = retryable(&method, header("idempotency-key").is_some());
        Next::Ready(Box::new(Prepared {
            route,
            method,
            request_id,
            span,
            caller,
            start,
            head_len,
            body_len,
            close: plain.close,
            retryable,
        }))
    }

    /// Admits and forwards one request and writes its response. Returns whether the client
    /// connection can carry another request.
    async fn exchange(
        &self,
        prepared: Prepared<'_>,
        ip: IpAddr,
        body: &[u8],
        stream: &mut TcpStream,
        started: Instant,
    ) -> bool {
        let Prepared {
            route,
            method,
            request_id,
            span,
            caller,
            mut start,
            close,
            retryable,
            ..
        } = prepared;
        let head_only = method == Method::HEAD;
        let outcome = self
            .admit_and_send(
                route,
                caller,
                &mut start,
                ip,
                body,
                retryable,
                head_only,
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
                if relayed.is_ok() && reusable {
                    self.client.release(answer.connection);
                }
                relayed.is_ok() && !until_close && !close
            }
            Err(response) => {
                record(response.status());
                let written = write_generated(stream, response, &request_id, head_only).await;
                written.is_ok() && !close
            }
        }
    }

    /// The hyper path's policy, in its order: load shedding, edge authentication, rate
    /// limits, then budgeted, balanced attempts under the route's deadline.
    #[allow(clippy::too_many_arguments)]
    async fn admit_and_send(
        &self,
        route: &Route,
        caller: Result<Option<AuthUser>, Response>,
        start: &mut Vec<u8>,
        ip: IpAddr,
        body: &[u8],
        retryable: bool,
        head_only: bool,
        request_id: &HeaderValue,
    ) -> Result<Answer, Response> {
        let gateway = &self.gateway;
        let _slot = gateway
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
        let decision = gateway.limit(route, ip, caller.as_ref()).await?;
        let pool = gateway.pool(route)?;
        gateway.budget.deposit();
        let replayable = retryable && body.len() <= gateway.retry.max_body_bytes;
        let start = &*start;
        let client = self.client;
        let extra = |out: &mut Vec<u8>| {
            h1::put_header(out, "x-request-id", request_id.as_bytes());
            if let Some(decision) = &decision {
                write_decision(out, decision);
            }
        };
        let attempts = gateway.attempts(route, pool, replayable, |endpoint, limit| {
            let request = h1::finish_request(start, &endpoint.upstream, body);
            async move {
                let upstream = &endpoint.upstream;
                let attempt = send(client, upstream, &request, retryable, head_only, extra);
                match limit {
                    None => attempt.await,
                    Some(limit) => {
                        tokio::time::timeout(limit, attempt)
                            .await
                            .unwrap_or_else(|_| {
                                Err(ProxyError::Timeout {
                                    service: upstream.service.clone(),
                                    timeout: limit,
                                })
                            })
                    }
                }
            }
        });
        match tokio::time::timeout(route.timeout, attempts).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(mut response)) => {
                if let Some(decision) = &decision {
                    decision.write_headers(response.headers_mut());
                }
                Err(response)
            }
            Err(_) => {
                let mut response = timed_out(route);
                if let Some(decision) = &decision {
                    decision.write_headers(response.headers_mut());
                }
                Err(response)
            }
        }
    }
}

/// One attempt: a pooled connection (a fresh one when a pooled one turns out stale and the
/// request may be repeated), the request written, the response head read.
async fn send(
    client: h1::Client,
    upstream: &Upstream,
    request: &[u8],
    retryable: bool,
    head_only: bool,
    extra: impl Fn(&mut Vec<u8>),
) -> Result<Answer, ProxyError> {
    let mut connection = client.connect(upstream).await?;
    let mut out = Vec::with_capacity(512);
    let head = match connection
        .exchange(&upstream.service, request, head_only, &mut out, OWN, &extra)
        .await
    {
        Ok(head) => head,
        Err(ExchangeError::Stale(_)) if retryable => {
            out.clear();
            connection = client.connect_fresh(upstream).await?;
            connection
                .exchange(&upstream.service, request, head_only, &mut out, OWN, &extra)
                .await
                .map_err(|(ExchangeError::Stale(e) | ExchangeError::Failed(e))| e)?
        }
        Err(ExchangeError::Stale(error) | ExchangeError::Failed(error)) => return Err(error),
    };
    Ok(Answer {
        connection,
        head,
        out,
    })
}

/// The response headers the gateway sets, replacing an upstream's (as the hyper path's
/// `insert`s do).
const OWN: &[&str] = &[
    "x-request-id",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
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
    stream: &mut TcpStream,
    response: Response,
    request_id: &HeaderValue,
    head_only: bool,
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
    out.extend_from_slice(b"content-length: ");
    h1::put_number(&mut out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    stream.write_all(&out).await
}
