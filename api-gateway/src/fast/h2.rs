//! The fast path for HTTP/2: hyper keeps the framing (streams, flow control, HPACK), and each
//! `/api` request goes through the same admission, policy and HTTP/1 upstream client as the
//! HTTP/1 fast path, without the router, its middleware or hyper's client.
//!
//! The router still answers what this path gives back: paths outside the route table,
//! browser requests when CORS is on, bodies without a declared length (or larger than the
//! fast path buffers).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body as AxumBody;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use platform_http::Problem;
use platform_http::front::{H2Request, ResponseFuture};
use platform_http::middleware::{REQUEST_ID, served};
use platform_proxy::h1::{self, BodyReader, UpstreamConnection};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::{Answer, Body, FastPath, READ_LIMIT, Request, RequestHead};

/// Response fields a rewritten HTTP/1 head may hold that HTTP/2 forbids (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// An HTTP/2 request head: hyper's parts.
struct Http2Head<'p>(&'p axum::http::request::Parts);

impl RequestHead for Http2Head<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        match self.0.headers.get(name) {
            Some(value) => Some(value.as_bytes()),
            None if name.eq_ignore_ascii_case("host") => {
                self.0.uri.authority().map(|a| a.as_str().as_bytes())
            }
            None => None,
        }
    }

    fn fields(&self) -> Vec<(&str, &[u8])> {
        self.0
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect()
    }

    fn write_start(&self, out: &mut Vec<u8>, skip: impl Fn(&str) -> bool) {
        let parts = self.0;
        out.extend_from_slice(parts.method.as_str().as_bytes());
        out.push(b' ');
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &parts.headers {
            let name = name.as_str();
            // HTTP/2 carries no connection-specific fields (hyper refuses them), so the
            // fixed hop-by-hop list is the whole rule.
            if name == "host"
                || name == "content-length"
                || h1::HOP_BY_HOP.contains(&name)
                || skip(name)
            {
                continue;
            }
            if name == "cookie" {
                continue;
            }
            h1::put_header(out, name, value.as_bytes());
        }
        if let Some(cookies) = platform_proxy::joined_cookies(&parts.headers) {
            h1::put_header(out, "cookie", &cookies);
        }
    }
}

impl FastPath {
    /// Takes `request` when the fast path can serve it, or gives it back for the router.
    pub(super) fn h2(
        self: Arc<Self>,
        request: H2Request,
        peer: SocketAddr,
        secure: bool,
    ) -> Result<ResponseFuture, H2Request> {
        let gateway = &self.gateway;
        if gateway
            .routes
            .find(request.method(), request.uri().path())
            .is_none()
            || (self.cors && request.headers().contains_key(header::ORIGIN))
        {
            return Err(request);
        }
        // hyper checks the data against a declared length; without one, the body streams
        // through the router.
        let declared = if http_body::Body::is_end_stream(request.body()) {
            Some(0)
        } else {
            request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
        };
        let Some(body_len) = declared.filter(|&n| n <= gateway.max_body_bytes && n <= READ_LIMIT)
        else {
            return Err(request);
        };
        Ok(Box::pin(async move {
            self.h2_exchange(request, body_len, peer, secure).await
        }))
    }

    async fn h2_exchange(
        &self,
        request: H2Request,
        body_len: usize,
        peer: SocketAddr,
        secure: bool,
    ) -> Response {
        let started = Instant::now();
        let (parts, incoming) = request.into_parts();
        let Some(route) = self.gateway.routes.find(&parts.method, parts.uri.path()) else {
            // The table does not change while the gateway runs: checked before this.
            return Problem::not_found("No route for this path.").into_response();
        };
        let prepared = self.admit_head(
            route,
            parts.method.clone(),
            &Http2Head(&parts),
            Body {
                head_len: 0,
                len: body_len,
                close: false,
            },
            peer.ip(),
            secure,
        );
        let span = prepared.span.clone();
        let method = prepared.method.clone();
        let request_id = prepared.request_id.clone();
        let record = |status: StatusCode| {
            served(
                &self.gateway.metrics,
                &span,
                &method,
                &route.label,
                status,
                started.elapsed(),
            );
        };
        // The declared length bounds what is read; the route's deadline bounds how long.
        let body = match tokio::time::timeout(route.timeout, incoming.collect()).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(_)) | Err(_) => {
                let response =
                    Problem::bad_request("The request body did not arrive whole.").into_response();
                record(response.status());
                return generated(response, &request_id, secure);
            }
        };
        let super::Prepared {
            caller,
            mut start,
            declare_length,
            policy,
            client,
            ..
        } = prepared;
        let outcome = self
            .admit_and_send(
                route,
                caller,
                &mut start,
                Request {
                    client,
                    body: &body,
                    declare_length,
                    policy,
                    head_only: method == Method::HEAD,
                    close: false,
                    secure,
                },
                &request_id,
            )
            .instrument(span.clone())
            .await;
        let response = match outcome {
            Ok(answer) => self.relayed(answer).unwrap_or_else(|| {
                tracing::warn!(service = %route.service, "an upstream answer could not be re-framed for HTTP/2");
                let broken = platform_proxy::ProxyError::Broken {
                    service: route.service.clone(),
                    reason: "invalid response head".to_owned(),
                };
                generated(broken.to_problem().into_response(), &request_id, secure)
            }),
            Err(response) => generated(response, &request_id, secure),
        };
        record(response.status());
        response
    }

    /// The upstream's answer as an HTTP/2 response: the head the HTTP/1 exchange rewrote
    /// (the gateway's own fields in it), and a body read from the upstream connection as
    /// hyper asks for it, which goes back to the pool at its end.
    fn relayed(&self, answer: Answer) -> Option<Response> {
        let Answer {
            connection,
            head,
            out,
            _slot: slot,
        } = answer;
        let mut headers = HeaderMap::with_capacity(16);
        let mut rest = &out[..];
        // Interim (1xx) heads come first in the rewritten bytes: HTTP/2 clients get the
        // final one.
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 2 * h1::MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut fields);
            let len = match parsed.parse(rest) {
                Ok(httparse::Status::Complete(len)) => len,
                _ => return None,
            };
            if parsed.code.is_some_and(|code| (100..200).contains(&code)) {
                rest = &rest[len..];
                continue;
            }
            for field in parsed.headers.iter() {
                let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
                if CONNECTION_SPECIFIC.contains(&name.as_str()) {
                    continue;
                }
                headers.append(name, HeaderValue::from_bytes(field.value).ok()?);
            }
            break;
        }
        let body = UpstreamBody {
            connection: Some(connection),
            reader: BodyReader::new(head.framing),
            client: self.client,
            reusable: head.reusable,
            slot: Some(slot),
        }
        .settled();
        let mut response = Response::new(AxumBody::new(body));
        *response.status_mut() = StatusCode::from_u16(head.status).ok()?;
        *response.headers_mut() = headers;
        Some(response)
    }
}

/// A response body read from its upstream connection as hyper asks for it. It says when it
/// has ended (hyper then ends the stream with the last data, not with an empty frame after
/// it), and at that moment the connection goes back to the pool and the load-shedding slot is
/// freed. Dropped before its end (the client reset the stream), neither connection is reused.
struct UpstreamBody {
    connection: Option<UpstreamConnection>,
    reader: BodyReader,
    client: h1::Client,
    reusable: bool,
    slot: Option<OwnedSemaphorePermit>,
}

impl UpstreamBody {
    /// Releases what an ended body holds.
    fn settled(mut self) -> Self {
        if self.reader.is_done() {
            if let Some(connection) = self.connection.take()
                && self.reusable
            {
                self.client.release(connection);
            }
            self.slot = None;
        }
        self
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let Some(connection) = this.connection.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = connection.poll_data(cx, &mut this.reader);
        let frame = match polled {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Some(data))) => Some(Ok(Frame::data(data))),
            Poll::Ready(Ok(None)) => None,
            Poll::Ready(Err(error)) => {
                // Neither the connection nor the rest of the body is usable.
                this.connection = None;
                this.reader = BodyReader::Done;
                this.slot = None;
                return Poll::Ready(Some(Err(error)));
            }
        };
        if this.reader.is_done()
            && let Some(connection) = this.connection.take()
        {
            if this.reusable {
                this.client.release(connection);
            }
            this.slot = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.reader.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A response the gateway made itself, with the fields its pipeline adds to every answer.
fn generated(mut response: Response, request_id: &HeaderValue, secure: bool) -> Response {
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID.clone(), request_id.clone());
    platform_http::middleware::security_headers(headers, secure);
    response
}
