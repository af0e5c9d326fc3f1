//! Admission of a request head, the same for both protocols: the request id, the trace
//! context, the client's address, the edge's verdict on the caller, and the start of the
//! upstream request with every header the gateway owns taken out and set again.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use platform_http::audit::AuditContext;
use platform_http::middleware::{join_trace, new_request_id, request_span};
use platform_proxy::h1;

use super::{Body, FastPath, Prepared, RequestHead};
use crate::forward::RetryPolicy;
use crate::routes::Route;

impl FastPath {
    /// What both protocols do with an admitted head: the request id, the trace context, the
    /// client's address, the edge's verdict on the caller, and the upstream request's start.
    pub(super) fn admit_head<'g>(
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
}
