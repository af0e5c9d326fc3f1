//! The policy between admission and an upstream's answer, shared by both protocols: load
//! shedding, edge authentication, rate limits, then budgeted, balanced attempts on the
//! thread's pooled HTTP/1 connections, with the gateway's own response headers written in.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use platform_auth::AuthUser;
use platform_http::middleware::HSTS;
use platform_middleware::Decision;
use platform_proxy::h1::{self, ExchangeError, ResponseHead, UpstreamConnection};
use platform_proxy::{ProxyError, Upstream};

use super::{Answer, FastPath, Request};
use crate::forward::{Answered, timed_out};
use crate::routes::Route;

impl FastPath {
    /// The hyper path's policy, in its order: load shedding, edge authentication, rate
    /// limits, then budgeted, balanced attempts under the route's deadline.
    pub(super) async fn admit_and_send(
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
