//! The reverse proxy: forwards one HTTP request to an upstream and streams the answer back.
//!
//! Owns [`Proxy`] (a pooled keep-alive hyper client) and [`ProxyError`], which knows whether
//! the failure happened before the upstream saw the request (so a retry is safe) and which
//! status the client gets: 503 when the upstream cannot be reached, 504 when it is too slow,
//! 502 when it broke mid-exchange. Bodies stream both ways: nothing is buffered whole.
//!
//! [`balance`] chooses among a service's endpoints (round-robin, weighted, power of two
//! choices) and keeps them honest with active health checks and per-endpoint circuit breakers.
//!
//! [`h1`] is the same job without hyper, for the plain HTTP/1.1 requests the gateway's fast
//! path takes: heads rewritten from the parsed bytes, per-thread upstream connection pools.
//!
//! Architecture invariant: no routing or auth here — the gateway decides *what* goes *where*;
//! this crate knows *how* to pick an endpoint and forward.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod balance;
pub mod h1;

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use platform_http::Problem;

/// An upstream service address: scheme and authority, e.g. `http://127.0.0.1:8081`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The service's name, for logs and errors.
    pub service: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The authority's hash: names this upstream's idle connections in [`h1`]'s pools
    /// without a string per lookup.
    pool_key: u64,
}

/// The upstream address is not an `http://host:port` URL.
#[derive(Debug, thiserror::Error)]
#[error("invalid upstream URL {0:?}: expected http://host:port")]
pub struct InvalidUpstream(pub String);

impl Upstream {
    /// The upstream of `service` at `url`: `http://` with a host (and port); any path is
    /// dropped.
    pub fn parse(service: &str, url: &str) -> Result<Self, InvalidUpstream> {
        let uri: Uri = url.parse().map_err(|_| InvalidUpstream(url.to_owned()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(InvalidUpstream(url.to_owned()));
        };
        if scheme != http::uri::Scheme::HTTP {
            return Err(InvalidUpstream(url.to_owned()));
        }
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        authority.as_str().hash(&mut hasher);
        Ok(Self {
            service: service.to_owned(),
            scheme,
            authority,
            pool_key: hasher.finish(),
        })
    }

    /// The upstream URI for `path_and_query`.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// `http://host:port`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No connection could be made: the request never left; retrying elsewhere is safe.
    #[error("{service} is unreachable: {reason}")]
    Unreachable {
        /// The upstream's service name.
        service: String,
        /// Why connecting failed (logs only: never shown to the client).
        reason: String,
    },
    /// No response headers within the deadline; the upstream may have acted on the request.
    #[error("{service} did not answer within {timeout:?}")]
    Timeout {
        /// The upstream's service name.
        service: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The exchange broke after the request was sent.
    #[error("{service} failed: {reason}")]
    Broken {
        /// The upstream's service name.
        service: String,
        /// What broke (logs only: never shown to the client).
        reason: String,
    },
    /// The request could not be turned into an upstream request (a bug, not the client's fault).
    #[error("cannot build the upstream request: {0}")]
    Request(String),
}

impl ProxyError {
    /// Whether the upstream certainly did not see the request, so any method may be retried.
    pub fn retry_safe(&self) -> bool {
        matches!(self, ProxyError::Unreachable { .. })
    }

    /// The problem the client gets. Never names hosts, ports or internal errors.
    pub fn to_problem(&self) -> Problem {
        match self {
            ProxyError::Unreachable { service, .. } => {
                Problem::unavailable(format!("The {service} is not available right now."))
                    .with_retry_after(1)
            }
            ProxyError::Timeout { service, .. } => Problem::new(StatusCode::GATEWAY_TIMEOUT)
                .with_type("upstream-timeout")
                .with_detail(format!("The {service} did not answer in time.")),
            ProxyError::Broken { service, .. } => Problem::new(StatusCode::BAD_GATEWAY)
                .with_type("bad-gateway")
                .with_detail(format!("The {service} failed to answer.")),
            ProxyError::Request(_) => Problem::internal(),
        }
    }
}

/// Proxy settings.
#[derive(Debug, Clone, Copy)]
pub struct ProxyConfig {
    /// Deadline for the upstream's response headers (the body then streams without one).
    pub timeout: Duration,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per upstream (per thread on the fast path). It must
    /// be at least the requests a thread has in flight: completions come in bursts, and every
    /// connection released past the cap is closed, to be opened again for the next request.
    /// At 64 that made 256 clients churn about 1,900 upstream connections a second.
    pub max_idle_per_host: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            max_idle_per_host: 1024,
        }
    }
}

type HttpClient = Client<HttpConnector, Body>;

/// A pooled HTTP/1.1 client that forwards requests. Cheap to clone.
///
/// Each thread gets its own connection pool: with thread-per-core serving, a request and its
/// upstream connection then stay on one thread (no cross-thread wake-ups), as in nginx.
#[derive(Clone, Debug)]
pub struct Proxy {
    /// Tells this proxy's pools apart in the per-thread registry.
    id: u64,
    config: ProxyConfig,
}

thread_local! {
    /// This thread's pool of each proxy.
    static CLIENTS: std::cell::RefCell<std::collections::HashMap<u64, HttpClient>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

fn build_client(config: &ProxyConfig) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(config.max_idle_per_host)
        .build(connector)
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the `Connection` header names are hop-by-hop too, except those that frame the
    // message or that the gateway sets or checks (see `h1::PROTECTED`).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| h1::may_be_named_hop_by_hop(name))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in h1::HOP_BY_HOP {
        headers.remove(name);
    }
    for name in &named {
        headers.remove(name);
    }
}

/// The `Cookie` fields of `headers` as the one field an HTTP/1.1 upstream expects: HTTP/2
/// may split cookies over several (RFC 9113 §8.2.3). `None` without cookies.
pub fn joined_cookies(headers: &HeaderMap) -> Option<Vec<u8>> {
    let mut values = headers.get_all(header::COOKIE).iter();
    let mut joined = values.next()?.as_bytes().to_vec();
    for value in values {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    Some(joined)
}

fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    if let Some(joined) = joined_cookies(headers)
        && let Ok(value) = HeaderValue::from_bytes(&joined)
    {
        headers.insert(header::COOKIE, value);
    }
}

impl Proxy {
    /// A proxy with pools of its own; each thread opens its pool at its first request.
    pub fn new(config: ProxyConfig) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            config,
        }
    }

    fn client(&self) -> HttpClient {
        CLIENTS.with(|clients| {
            clients
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(|| build_client(&self.config))
                .clone()
        })
    }

    /// Forwards `request` to `upstream`, keeping method, path, query, headers and body, and
    /// adding `X-Forwarded-*` and the current trace context; gives up after the configured
    /// upstream timeout. `client` (the caller's address, as the gateway resolved it) becomes
    /// the whole `X-Forwarded-For`: what a client claims there itself is not passed on.
    pub async fn forward(
        &self,
        upstream: &Upstream,
        request: Request<Body>,
        client: Option<IpAddr>,
    ) -> Result<Response<Body>, ProxyError> {
        self.forward_within(upstream, request, client, Some(self.config.timeout))
            .await
    }

    /// The fast path's client: same pools' settings, connections driven by the request's task.
    pub fn h1(&self) -> h1::Client {
        h1::Client {
            id: self.id,
            connect_timeout: self.config.connect_timeout,
            max_idle: self.config.max_idle_per_host,
        }
    }

    /// The configured cap on one attempt.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// [`Proxy::forward`] with the caller's deadline, or none when the caller enforces one
    /// itself (one timer per request is cheaper than nested ones).
    pub async fn forward_within(
        &self,
        upstream: &Upstream,
        request: Request<Body>,
        client: Option<IpAddr>,
        timeout: Option<Duration>,
    ) -> Result<Response<Body>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        parts.uri = upstream
            .uri(path_and_query)
            .map_err(|e| ProxyError::Request(e.to_string()))?;

        let original_host = parts.headers.remove(header::HOST);
        strip_hop_by_hop(&mut parts.headers);
        if parts.version == http::Version::HTTP_2 {
            join_cookies(&mut parts.headers);
        }
        // The length is hyper's to write, from the body actually sent.
        parts.headers.remove(header::CONTENT_LENGTH);
        if let Some(addr) = client
            && let Ok(value) = HeaderValue::from_str(&addr.to_string())
        {
            parts.headers.insert(X_FORWARDED_FOR.clone(), value);
        }
        parts
            .headers
            .entry(X_FORWARDED_PROTO.clone())
            .or_insert(HeaderValue::from_static("http"));
        if let Some(host) = original_host {
            parts
                .headers
                .entry(X_FORWARDED_HOST.clone())
                .or_insert(host);
        }
        platform_telemetry::inject_span(&tracing::Span::current(), &mut parts.headers);
        // HTTP/1.1 to the upstream whatever the client spoke.
        parts.version = http::Version::HTTP_11;
        let head = parts.method == http::Method::HEAD;

        let request = Request::from_parts(parts, body);
        let sent = self.client().request(request);
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, sent).await,
            None => Ok(sent.await),
        };
        let response = match result {
            Err(_) => {
                return Err(ProxyError::Timeout {
                    service: upstream.service.clone(),
                    timeout: timeout.unwrap_or_default(),
                });
            }
            Ok(Err(error)) if error.is_connect() => {
                return Err(ProxyError::Unreachable {
                    service: upstream.service.clone(),
                    reason: error.to_string(),
                });
            }
            Ok(Err(error)) => {
                return Err(ProxyError::Broken {
                    service: upstream.service.clone(),
                    reason: error.to_string(),
                });
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        if parts.headers.contains_key(header::TRANSFER_ENCODING)
            && parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            return Err(ProxyError::Broken {
                service: upstream.service.clone(),
                reason: "a response framed two ways".to_owned(),
            });
        }
        strip_hop_by_hop(&mut parts.headers);
        // The length the client gets is hyper's, from the body actually relayed; only a HEAD
        // or 304 answer keeps the upstream's (it describes a body not sent).
        if !head && parts.status != StatusCode::NOT_MODIFIED {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// A small GET to an upstream, read whole (health probes, OpenAPI documents).
    pub async fn fetch(
        &self,
        upstream: &Upstream,
        path: &str,
    ) -> Result<(StatusCode, Bytes), ProxyError> {
        let request = Request::get(path)
            .body(Body::empty())
            .map_err(|e| ProxyError::Request(e.to_string()))?;
        let response = self.forward(upstream, request, None).await?;
        let status = response.status();
        let body = tokio::time::timeout(self.config.timeout, response.into_body().collect())
            .await
            .map_err(|_| ProxyError::Timeout {
                service: upstream.service.clone(),
                timeout: self.config.timeout,
            })?
            .map_err(|e| ProxyError::Broken {
                service: upstream.service.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_must_be_http_urls_with_a_host() {
        assert!(Upstream::parse("user-service", "http://127.0.0.1:8081").is_ok());
        assert!(Upstream::parse("user-service", "127.0.0.1:8081").is_err());
        assert!(Upstream::parse("user-service", "ftp://h:1").is_err());
        let upstream = Upstream::parse("user-service", "http://h:1/").unwrap();
        assert_eq!(
            upstream.uri("/a?b=c").unwrap().to_string(),
            "http://h:1/a?b=c"
        );
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("content-length, authorization"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-request-id", HeaderValue::from_static("r"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 3, "{headers:?}");
        assert!(headers.contains_key("x-request-id"));
        assert!(
            headers.contains_key(header::CONTENT_LENGTH),
            "framing is never hop-by-hop"
        );
        assert!(headers.contains_key(header::AUTHORIZATION));
    }

    #[test]
    fn errors_map_to_statuses_without_leaking_internals() {
        let unreachable = ProxyError::Unreachable {
            service: "user-service".into(),
            reason: "tcp connect error 127.0.0.1:9".into(),
        };
        assert!(unreachable.retry_safe());
        let problem = unreachable.to_problem();
        assert_eq!(problem.status, 503);
        assert!(!problem.to_string().contains("127.0.0.1"));
        let timeout = ProxyError::Timeout {
            service: "user-service".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(!timeout.retry_safe());
        assert_eq!(timeout.to_problem().status, 504);
    }
}
