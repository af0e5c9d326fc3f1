//! The hyper path's handler: one `/api` request taken through edge policy and forwarded by
//! `platform_proxy`, its body buffered when it may be sent again and streamed (and watched,
//! so a failure of the client's own body is answered as the client's error) when not.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use platform_http::{Auditor, Problem, RouteLabel};
use platform_proxy::ProxyError;

use super::{Gateway, RetryPolicy, USER_ID, USER_ROLE, timed_out};
use crate::routes::Route;

/// The handler behind every `/api/…` path.
pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    // Checked here rather than as layers: every layer costs every request a boxed future.
    let slot = match gateway.shed.try_enter() {
        Ok(slot) => slot,
        Err(problem) => return problem.into_response(),
    };
    if let Err(problem) = gateway.max_header_bytes.check(&request) {
        return problem.into_response();
    }
    let Some(route) = gateway.routes.find(request.method(), request.uri().path()) else {
        return Problem::not_found(format!(
            "No route for {} {}.",
            request.method(),
            request.uri().path()
        ))
        .into_response();
    };
    let label = RouteLabel(Arc::clone(&route.label));
    let mut response = serve(&gateway, route, request).await;
    response.extensions_mut().insert(label);
    // The slot is held until the body has been relayed: an event stream is a request in
    // flight for as long as it lasts.
    response.map(|body| {
        Body::new(Holding {
            inner: body,
            _slot: slot,
        })
    })
}

/// A response body that holds a load-shedding slot until it is done.
struct Holding {
    inner: Body,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's peer.
fn peer_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

async fn serve(gateway: &Gateway, route: &Route, request: Request) -> Response {
    let peer = peer_ip(&request);
    let ip = gateway.trusted_proxies.client_ip(peer, request.headers());
    let (mut parts, body) = request.into_parts();
    // What a client says about the hops before us is believed only from a trusted proxy; the
    // gateway itself writes `X-Forwarded-For` (the resolved client) and never forwards
    // `Forwarded`.
    parts.headers.remove("forwarded");
    if !gateway.trusted_proxies.contains(peer) {
        parts.headers.remove("x-forwarded-proto");
        parts.headers.remove("x-forwarded-host");
    }
    // The scheme the client reached the gateway with (the proxy writes `http` when unset).
    if parts
        .extensions
        .get::<platform_http::front::Secure>()
        .is_some()
    {
        parts
            .headers
            .entry("x-forwarded-proto")
            .or_insert(HeaderValue::from_static("https"));
    }

    // Edge authentication; identity headers only ever come from a verified token.
    parts.headers.remove(&USER_ID);
    parts.headers.remove(&USER_ROLE);
    let authorization = parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let context = || Auditor::of(&parts).context;
    let claims = match gateway.admit_in(route, authorization, context) {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    if let Some(caller) = &claims {
        if let Ok(id) = HeaderValue::from_str(&caller.id.to_string()) {
            parts.headers.insert(USER_ID.clone(), id);
        }
        parts.headers.insert(
            USER_ROLE.clone(),
            HeaderValue::from_static(caller.role.as_str()),
        );
    }
    let reported = match gateway.limit(route, ip, claims.as_ref()).await {
        Ok(reported) => reported,
        Err(response) => return response,
    };

    // Bodies over the limit are refused before anything is sent.
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > gateway.max_body_bytes as u64) {
        return too_large(gateway.max_body_bytes);
    }

    let pool = match gateway.pool(route) {
        Ok(pool) => pool,
        Err(response) => return response,
    };
    let has_body = body.size_hint().exact() != Some(0);
    let policy = RetryPolicy::of(
        &parts.method,
        route,
        parts.headers.contains_key("idempotency-key"),
        has_body,
    );
    let replayable = route.retries > 0
        && declared.is_none_or(|n| n <= gateway.retry.max_body_bytes as u64)
        && (declared.is_some() || !may_have_body(&parts.method));
    let client_body = BodyOutcome::default();
    let mut body = if replayable && !has_body {
        // Most retryable requests (GET, HEAD, DELETE) carry no body: nothing to read.
        Payload::Buffered(Bytes::new())
    } else if replayable {
        match Limited::new(body, gateway.retry.max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => Payload::Buffered(collected.to_bytes()),
            Err(error) if error.is::<LengthLimitError>() => {
                return too_large(gateway.retry.max_body_bytes);
            }
            Err(_) => return malformed_body(),
        }
    } else {
        Payload::Streaming(Some(Body::new(Watched {
            inner: Limited::new(body, gateway.max_body_bytes),
            outcome: client_body.clone(),
        })))
    };
    gateway.budget.deposit();

    let replayable = body.replayable();
    let attempts = gateway.attempts(route, pool, replayable, policy, |endpoint, limit| {
        let request_body = body.take();
        // Only what the upstream needs: the request's extensions stay here.
        let request = request_body.map(|request_body| {
            let mut request = Request::new(request_body);
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = parts.uri.clone();
            *request.version_mut() = parts.version;
            *request.headers_mut() = parts.headers.clone();
            request
        });
        let proxy = gateway.proxy.clone();
        async move {
            let Some(request) = request else {
                return Err(ProxyError::Request("the body was already sent".to_owned()));
            };
            proxy
                .forward_within(&endpoint.upstream, request, Some(ip), limit)
                .await
        }
    });
    let mut response = match tokio::time::timeout(route.timeout, attempts).await {
        Ok(Ok(response)) | Ok(Err(response)) => response,
        Err(_) => timed_out(route),
    };
    // An upstream failure caused by the client's own body is the client's error.
    match client_body.get() {
        BodyFailure::None => {}
        BodyFailure::TooLarge => response = too_large(gateway.max_body_bytes),
        BodyFailure::Malformed => response = malformed_body(),
    }

    if let Some(decision) = reported {
        decision.write_headers(response.headers_mut());
    }
    response
}

fn too_large(limit: usize) -> Response {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .with_type("payload-too-large")
        .with_detail(format!("Request bodies are limited to {limit} bytes."))
        .into_response()
}

/// After a malformed body nothing else on the connection can be trusted: it closes.
fn malformed_body() -> Response {
    let mut response =
        Problem::bad_request("The request body was malformed or ended early.").into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

/// How a streamed request body ended, as far as the client's side goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFailure {
    None,
    TooLarge,
    Malformed,
}

/// Shared between a [`Watched`] body and the handler that reads the outcome.
#[derive(Clone, Default)]
struct BodyOutcome(Arc<std::sync::atomic::AtomicU8>);

impl BodyOutcome {
    fn set(&self, failure: BodyFailure) {
        self.0
            .store(failure as u8, std::sync::atomic::Ordering::Relaxed);
    }

    fn get(&self) -> BodyFailure {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            1 => BodyFailure::TooLarge,
            2 => BodyFailure::Malformed,
            _ => BodyFailure::None,
        }
    }
}

/// A request body streamed to the upstream that remembers whether the client's side of it
/// failed (a malformed chunked body, a connection dropped mid-body, too many bytes).
struct Watched<B> {
    inner: B,
    outcome: BodyOutcome,
}

impl<B> http_body::Body for Watched<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Err(error)) => {
                let error: axum::BoxError = error.into();
                this.outcome.set(if error.is::<LengthLimitError>() {
                    BodyFailure::TooLarge
                } else {
                    BodyFailure::Malformed
                });
                std::task::Poll::Ready(Some(Err(error)))
            }
            Some(Ok(frame)) => std::task::Poll::Ready(Some(Ok(frame))),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn may_have_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
    )
}

/// The request body: kept whole (so it can be sent again) or streamed once.
enum Payload {
    Buffered(Bytes),
    Streaming(Option<Body>),
}

impl Payload {
    fn take(&mut self) -> Option<Body> {
        match self {
            Payload::Buffered(bytes) => Some(Body::from(bytes.clone())),
            Payload::Streaming(body) => body.take(),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Payload::Buffered(_))
    }
}
