//! The gateway's request path: route → edge authentication → rate limits → balanced,
//! breaker-guarded, retried forwarding.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use platform_auth::{AuthError, AuthUser, Jwt, Role};
use platform_http::audit::{Audit, AuditContext};
use platform_http::client_ip;
use platform_http::{Auditor, Metrics, Problem, RouteLabel, TrustedProxies};
use platform_metrics::{Counter, counter};
use platform_middleware::{Decision, LimitKey, LoadShed, MaxHeaderBytes, RateLimiter};
use platform_proxy::balance::{Endpoint, Pool};
use platform_proxy::{Proxy, ProxyError};
use platform_resilience::{Backoff, RetryBudget};

use crate::config::RetryConfig;
use crate::routes::{Auth, Route, RouteTable};

/// The identity headers the gateway sets from a verified token; a client's own are removed.
pub static USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub static USER_ROLE: HeaderName = HeaderName::from_static("x-user-role");

/// Everything the request path needs.
pub struct Gateway {
    pub routes: RouteTable,
    pub pools: HashMap<String, Arc<Pool>>,
    pub proxy: Proxy,
    /// Verifies tokens at the edge, revocations included (its store is shared with every
    /// service through Redis, or the process's own).
    pub jwt: Jwt,
    /// Where edge refusals (401, 403) are recorded: the fast path has no request `Auditor`.
    pub audit: Audit,
    pub limiter: RateLimiter,
    pub default_limit: Option<std::num::NonZeroU32>,
    pub budget: RetryBudget,
    pub retry: RetryConfig,
    pub max_body_bytes: usize,
    pub max_header_bytes: MaxHeaderBytes,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-For`/`Forwarded` names the client.
    pub trusted_proxies: TrustedProxies,
    pub shed: LoadShed,
    pub metrics: Metrics,
    /// `upstream_requests_total` per endpoint (by address) and outcome, registered once.
    pub upstream_counters: HashMap<usize, Vec<Counter>>,
}

/// The outcomes `upstream_requests_total` distinguishes, in counter order.
pub const OUTCOMES: [&str; 9] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "unreachable",
    "timeout",
    "broken",
    "invalid",
];

impl Gateway {
    fn count_upstream(&self, endpoint: &Arc<Endpoint>, outcome: &str) {
        let counters = self
            .upstream_counters
            .get(&(Arc::as_ptr(endpoint) as usize));
        let index = OUTCOMES.iter().position(|o| *o == outcome);
        if let (Some(counters), Some(index)) = (counters, index)
            && let Some(counter) = counters.get(index)
        {
            counter.increment(1);
        }
    }
}

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

/// The verified caller, if the request carries a token: signature, expiry, issuer, audience,
/// and revocation (checked by `verify_cached` after its cache, which cannot know them).
fn authenticate(jwt: &Jwt, authorization: Option<&[u8]>) -> Result<Option<AuthUser>, AuthError> {
    if authorization.is_none() {
        return Ok(None);
    }
    let token = platform_auth::bearer(authorization)?;
    jwt.verify_cached(token).map(Some)
}

impl Gateway {
    /// Edge authentication: the verified caller (if any), or the response that refuses the
    /// request. Every refusal is audited with `context` (where the request came from), which
    /// is only called then: an admitted request pays nothing for the audit trail.
    pub(crate) fn admit_in(
        &self,
        route: &Route,
        authorization: Option<&[u8]>,
        context: impl FnOnce() -> AuditContext,
    ) -> Result<Option<AuthUser>, Response> {
        let claims = match authenticate(&self.jwt, authorization) {
            Ok(claims) => claims,
            // On a public route a bad token is the service's business, not the gateway's.
            Err(_) if route.auth == Auth::Public => None,
            Err(error) => return Err(self.refuse(route, &error, context)),
        };
        match (&claims, route.auth) {
            (None, Auth::User | Auth::Admin) => {
                Err(self.refuse(route, &AuthError::Missing, context))
            }
            (Some(caller), Auth::Admin) if caller.role != Role::Admin => {
                self.audit.record(
                    &context(),
                    platform_auth::access_denied(caller.id, route.label.as_ref()),
                );
                Err(Problem::forbidden("This route is for administrators.").into_response())
            }
            _ => Ok(claims),
        }
    }

    /// Records a 401 at the edge and builds it.
    fn refuse(
        &self,
        route: &Route,
        error: &AuthError,
        context: impl FnOnce() -> AuditContext,
    ) -> Response {
        self.audit
            .record(&context(), error.audit_event(route.label.as_ref()));
        error.to_problem().into_response()
    }

    /// Rate limits per client IP, and per user when authenticated: the tighter decision to
    /// report, or the 429 response.
    pub(crate) async fn limit(
        &self,
        route: &Route,
        ip: IpAddr,
        caller: Option<&AuthUser>,
    ) -> Result<Option<Decision>, Response> {
        let Some(limit) = route.rate_limit.unwrap_or(self.default_limit) else {
            return Ok(None);
        };
        let mut reported: Option<Decision> = None;
        let user = caller.map(|caller| ("user", LimitKey::User(caller.id.as_uuid())));
        let by_address = LimitKey::Ip(client_ip::bucket(ip));
        for (scope, key) in std::iter::once(("ip", by_address)).chain(user) {
            let decision = self.limiter.check(&key, limit).await;
            if !decision.allowed {
                self.metrics
                    .record(|| counter!("rate_limited_total", "scope" => scope).increment(1));
                let retry_after = decision.retry_after_secs;
                let mut response = Problem::too_many_requests(retry_after).into_response();
                decision.write_headers(response.headers_mut());
                return Err(response);
            }
            if reported.is_none_or(|r| decision.remaining < r.remaining) {
                reported = Some(decision);
            }
        }
        Ok(reported)
    }

    /// The upstream pool of `route`'s service.
    pub(crate) fn pool(&self, route: &Route) -> Result<&Arc<Pool>, Response> {
        self.pools.get(&route.service).ok_or_else(|| {
            tracing::error!(service = %route.service, "route to a service without upstreams");
            Problem::internal().into_response()
        })
    }
}

/// When a failed attempt may be sent again (RFC 9110 §9.2.2: only a request that is
/// idempotent may be repeated after it may have reached the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryPolicy {
    /// After any retryable failure: safe methods, PUT and DELETE on a route declared
    /// `idempotent`, and anything carrying an `Idempotency-Key` (the service deduplicates).
    Always,
    /// Only when the upstream certainly did not see the request (the connection was
    /// refused): a POST or PATCH without a key, a PUT or DELETE on other routes, and any
    /// request with a body but no key.
    BeforeSend,
}

impl RetryPolicy {
    pub(crate) fn of(
        method: &Method,
        route: &Route,
        has_idempotency_key: bool,
        has_body: bool,
    ) -> Self {
        if has_idempotency_key {
            return RetryPolicy::Always;
        }
        let repeatable = match *method {
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE => true,
            Method::PUT | Method::DELETE => route.idempotent,
            _ => false,
        };
        if repeatable && !has_body {
            RetryPolicy::Always
        } else {
            RetryPolicy::BeforeSend
        }
    }

    /// Whether a stale pooled connection that failed before any answer may be replaced and
    /// the request written again (the upstream may have read it before closing).
    pub(crate) fn after_send(self) -> bool {
        self == RetryPolicy::Always
    }
}

/// The 504 for a route whose upstream did not answer in time.
pub(crate) fn timed_out(route: &Route) -> Response {
    Problem::new(StatusCode::GATEWAY_TIMEOUT)
        .with_type("upstream-timeout")
        .with_detail(format!("The {} did not answer in time.", route.service))
        .into_response()
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

/// What an attempt got back: enough to judge it.
pub(crate) trait Answered {
    fn status(&self) -> StatusCode;
}

impl Answered for Response {
    fn status(&self) -> StatusCode {
        Response::status(self)
    }
}

/// Whether an attempt's outcome counts against the endpoint, and whether it may be retried.
fn classify<R: Answered>(result: &Result<R, ProxyError>) -> (bool, bool, &'static str) {
    match result {
        Ok(answer) => {
            let status = answer.status();
            let retry = matches!(status.as_u16(), 502..=504);
            (status.is_server_error(), retry, status_class(status))
        }
        Err(ProxyError::Unreachable { .. }) => (true, true, "unreachable"),
        Err(ProxyError::Timeout { .. }) => (true, true, "timeout"),
        Err(ProxyError::Broken { .. }) => (true, true, "broken"),
        Err(ProxyError::Request(_)) => (false, false, "invalid"),
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Gateway {
    /// Sends a request to `pool` until an answer is final: each attempt on an endpoint the
    /// pool picks (another one after a failure), through its breaker, counted in
    /// `upstream_requests_total`. Retried — when `replayable` — on connect errors, timeouts
    /// and 502/503/504 as `policy` allows, with backoff, within the route's retry count and
    /// the retry budget.
    /// `send` makes one attempt with an optional per-try deadline. `Err` carries the
    /// gateway's own problem response.
    pub(crate) async fn attempts<R, F, Fut>(
        &self,
        route: &Route,
        pool: &Arc<Pool>,
        replayable: bool,
        policy: RetryPolicy,
        mut send: F,
    ) -> Result<R, Response>
    where
        R: Answered,
        F: FnMut(Arc<Endpoint>, Option<Duration>) -> Fut,
        Fut: std::future::Future<Output = Result<R, ProxyError>>,
    {
        let backoff = Backoff {
            base: self.retry.backoff_base,
            max: self.retry.backoff_max,
        };
        let unavailable = |wait: u64| {
            Problem::unavailable(format!("The {} is not available right now.", route.service))
                .with_retry_after(wait.max(1))
                .into_response()
        };
        let mut failed: Option<Arc<Endpoint>> = None;
        let mut retry = 0u32;
        loop {
            let Some(endpoint) = pool.pick(failed.as_ref()) else {
                return Err(unavailable(pool.retry_after().as_secs()));
            };
            let Ok(permit) = endpoint.breaker.try_acquire() else {
                // Lost a race for a half-open probe slot: treat like a failed pick.
                failed = Some(endpoint);
                if retry >= route.retries {
                    return Err(unavailable(1));
                }
                retry += 1;
                continue;
            };
            let in_flight = endpoint.start();
            // One attempt's deadline; when it is the whole route's, the total deadline around
            // all attempts already enforces it (one timer fewer per request).
            let attempt_limit = route.try_timeout.min(self.proxy.timeout());
            let attempt_timer = (attempt_limit < route.timeout).then_some(attempt_limit);
            let result = send(Arc::clone(&endpoint), attempt_timer).await;
            drop(in_flight);
            let (failure, retry_worthy, outcome) = classify(&result);
            endpoint.breaker.record(permit, !failure);
            self.count_upstream(&endpoint, outcome);
            let unseen = matches!(&result, Err(error) if error.retry_safe());
            let allowed = match policy {
                RetryPolicy::Always => true,
                RetryPolicy::BeforeSend => unseen,
            };
            let may_retry = retry_worthy && allowed && replayable && retry < route.retries;
            if !may_retry || !self.budget.withdraw() {
                return result.map_err(|error| {
                    tracing::warn!(service = %route.service, endpoint = %endpoint.url(), %error, "upstream request failed");
                    error.to_problem().into_response()
                });
            }
            retry += 1;
            let wait = backoff.delay(retry);
            tracing::info!(service = %route.service, endpoint = %endpoint.url(), outcome, retry, wait_ms = wait.as_millis() as u64, "retrying on another endpoint");
            failed = Some(endpoint);
            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
        }
    }
}
