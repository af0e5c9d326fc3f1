//! One HTTP/1 exchange end to end: the admitted request forwarded, the upstream's answer
//! relayed to the client (or the gateway's own answer written in one go), and whether the
//! client connection can carry another request.

use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use platform_http::front::{ClientStream, Stopping};
use platform_http::middleware::{REQUEST_ID, served};
use platform_proxy::ProxyError;
use platform_proxy::h1::{self, Framing};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use super::{FastPath, Prepared, Request};
use crate::forward::Answered;

impl FastPath {
    /// Admits and forwards one request and writes its response. Returns whether the client
    /// connection can carry another request.
    pub(super) async fn exchange(
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
