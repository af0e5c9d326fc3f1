//! [`TestApp`]: the one HTTP client every integration test calls a service with.
//!
//! ```ignore
//! let app = TestApp::new(&spawned.base);
//! let created = app.post("/api/v1/products").by(&admin).json(&body).await;
//! let mine = app.get("/api/v1/orders").by(&user).query(&[("limit", "5")]).await;
//! let anonymous = app.delete("/api/v1/products/x").await;
//! assert_eq!(app.metrics().await.sum("orders_total", &[("status", "created")]), 1.0);
//! ```
//!
//! Awaiting a call sends the request and returns the response, after checking that the service
//! documented the status it answered with (see [`assert_documented`]). A call is
//! `IntoFuture`, not a `Future`: where a future is needed (`join_all`), use `.send()`.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use reqwest::Method;
use serde::Serialize;

/// Fails when the service marked `response` as answered with a status its OpenAPI operation
/// does not list (`x-undocumented-status`, set by the kit's pipeline in debug builds).
pub fn assert_documented(response: &reqwest::Response) {
    let marked = response.headers().get("x-undocumented-status");
    assert!(
        marked.is_none(),
        "{} {} answered {}, a status its OpenAPI operation does not list: add it to the \
         handler's `responses(...)` annotation (or fix the handler)",
        response.url().path(),
        response.url().query().unwrap_or_default(),
        response.status(),
    );
}

/// A client bound to one service's HTTP API.
#[derive(Debug, Clone)]
pub struct TestApp {
    base: String,
    client: reqwest::Client,
}

impl TestApp {
    /// A client for the service at `base` (`http://host:port`).
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            client: reqwest::Client::new(),
        }
    }

    /// `http://host:port` of the service.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The underlying client, for what a [`Call`] does not cover (streams, raw sockets).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Call {
        self.request(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> Call {
        self.request(Method::POST, path)
    }

    /// `PUT path`.
    pub fn put(&self, path: &str) -> Call {
        self.request(Method::PUT, path)
    }

    /// `PATCH path`.
    pub fn patch(&self, path: &str) -> Call {
        self.request(Method::PATCH, path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Call {
        self.request(Method::DELETE, path)
    }

    /// Any other method.
    pub fn request(&self, method: Method, path: &str) -> Call {
        Call {
            builder: self.client.request(method, self.url(path)),
        }
    }

    /// The service's `/metrics`, parsed.
    ///
    /// # Panics
    /// When `/metrics` does not answer 200.
    pub async fn metrics(&self) -> Metrics {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200, "GET /metrics");
        Metrics(response.text().await.expect("a metrics body"))
    }
}

/// Who a request is made by: a bare token, an `Actor` of `platform-testing`, or nobody (`None`).
pub trait Credential {
    /// The bearer token to send, if any.
    fn bearer(&self) -> Option<&str>;
}

impl Credential for str {
    fn bearer(&self) -> Option<&str> {
        Some(self)
    }
}

impl Credential for String {
    fn bearer(&self) -> Option<&str> {
        Some(self)
    }
}

impl<C: Credential + ?Sized> Credential for &C {
    fn bearer(&self) -> Option<&str> {
        (**self).bearer()
    }
}

impl<C: Credential> Credential for Option<C> {
    fn bearer(&self) -> Option<&str> {
        self.as_ref().and_then(Credential::bearer)
    }
}

/// One request being built; await it to send it.
#[derive(Debug)]
#[must_use = "a call does nothing until it is awaited"]
pub struct Call {
    builder: reqwest::RequestBuilder,
}

impl Call {
    /// Made by `caller`: `Authorization: Bearer <token>`, or no header for `None`.
    pub fn by(self, caller: impl Credential) -> Self {
        match caller.bearer() {
            Some(token) => self.map(|b| b.bearer_auth(token)),
            None => self,
        }
    }

    /// A JSON body.
    pub fn json(self, body: &(impl Serialize + ?Sized)) -> Self {
        self.map(|b| b.json(body))
    }

    /// A raw body.
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        self.map(|b| b.body(body))
    }

    /// Query parameters, added to those in the path.
    pub fn query(self, query: &(impl Serialize + ?Sized)) -> Self {
        self.map(|b| b.query(query))
    }

    /// A header.
    pub fn header(self, name: &str, value: impl AsRef<str>) -> Self {
        self.map(|b| b.header(name, value.as_ref()))
    }

    /// Sends it. Panics when the request cannot be sent (the service is down) or when the
    /// service answered with a status its OpenAPI operation does not list.
    pub async fn send(self) -> reqwest::Response {
        let response = self.builder.send().await.expect("the request is sent");
        assert_documented(&response);
        response
    }

    fn map(self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        Self {
            builder: f(self.builder),
        }
    }
}

impl IntoFuture for Call {
    type Output = reqwest::Response;
    type IntoFuture = Pin<Box<dyn Future<Output = reqwest::Response> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A Prometheus text exposition, as `/metrics` serves it.
#[derive(Debug, Clone)]
pub struct Metrics(String);

impl Metrics {
    /// Parses `text` (for exposition text read some other way).
    pub fn from_text(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text itself.
    pub fn text(&self) -> &str {
        &self.0
    }

    /// The sum of the samples of `name` whose labels include every `(label, value)` of
    /// `labels`; 0 when there are none. `name` is matched whole: `x` does not match
    /// `x_bucket`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(sample)
            .filter(|(series, _, _)| *series == name)
            .filter(|(_, set, _)| {
                labels
                    .iter()
                    .all(|(label, value)| set.iter().any(|(l, v)| l == label && v == value))
            })
            .map(|(_, _, value)| value)
            .sum()
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One sample line: its name, its labels and its value.
type Sample<'l> = (&'l str, Vec<(String, String)>, f64);

/// `name{a="b",c="d"} 1.5` → (name, [(a, b), (c, d)], 1.5). Values may hold escaped quotes.
fn sample(line: &str) -> Option<Sample<'_>> {
    let (name, rest) = match line.find('{') {
        Some(open) => (&line[..open], &line[open + 1..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some((name, Vec::new(), value.split(' ').next()?.parse().ok()?));
        }
    };
    let mut labels = Vec::new();
    let mut chars = rest.char_indices().peekable();
    loop {
        let start = chars.peek()?.0;
        let (eq, _) = chars.find(|(_, c)| *c == '=')?;
        let label = rest[start..eq].trim_start_matches(',').trim().to_owned();
        chars.next().filter(|(_, c)| *c == '"')?;
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.push((label, value));
        match chars.peek()?.1 {
            '}' => {
                let (close, _) = chars.next()?;
                let value = rest[close + 1..].trim().split(' ').next()?;
                return Some((name, labels, value.parse().ok()?));
            }
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",status=\"200\"} 3
http_requests_total{method=\"POST\",status=\"200\"} 2
http_requests_total{method=\"POST\",status=\"500\"} 1
http_requests_total_created{method=\"GET\"} 9
latency_bucket{le=\"0.1\"} 4
uptime 12.5
odd{path=\"/a,b=\\\"c\\\"\",x=\"y\"} 7 1700000000
";

    #[test]
    fn sums_the_series_matching_every_label() {
        let metrics = Metrics::from_text(TEXT);
        assert_eq!(metrics.sum("http_requests_total", &[]), 6.0);
        assert_eq!(
            metrics.sum("http_requests_total", &[("method", "POST")]),
            3.0
        );
        assert_eq!(
            metrics.sum(
                "http_requests_total",
                &[("method", "POST"), ("status", "500")]
            ),
            1.0
        );
        assert_eq!(
            metrics.sum("http_requests_total", &[("method", "PUT")]),
            0.0
        );
    }

    #[test]
    fn names_match_whole_and_unlabelled_samples_count() {
        let metrics = Metrics::from_text(TEXT);
        assert_eq!(metrics.sum("latency", &[]), 0.0);
        assert_eq!(metrics.sum("latency_bucket", &[("le", "0.1")]), 4.0);
        assert_eq!(metrics.sum("uptime", &[]), 12.5);
        assert_eq!(metrics.sum("missing", &[]), 0.0);
    }

    #[test]
    fn quoted_values_may_hold_commas_equals_and_escaped_quotes() {
        let metrics = Metrics::from_text(TEXT);
        assert_eq!(
            metrics.sum("odd", &[("path", "/a,b=\"c\""), ("x", "y")]),
            7.0
        );
        assert_eq!(metrics.sum("odd", &[("path", "/a")]), 0.0);
    }

    #[test]
    fn a_caller_is_a_token_or_nobody() {
        assert_eq!("t2".bearer(), Some("t2"));
        assert_eq!(String::from("t3").bearer(), Some("t3"));
        assert_eq!(Some("t4").bearer(), Some("t4"));
        assert_eq!(None::<&str>.bearer(), None);
    }

    #[tokio::test]
    async fn a_call_sends_its_method_path_token_query_and_body() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&request).contains("{\"a\":1}") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let app = TestApp::new(format!("http://{addr}"));
        let response = app
            .put("/x/1")
            .by("tok")
            .query(&[("q", "v")])
            .json(&serde_json::json!({"a": 1}))
            .await;
        assert_eq!(response.status(), 201);
        let request = server.await.unwrap().to_lowercase();
        assert!(request.starts_with("put /x/1?q=v http/1.1"), "{request}");
        assert!(request.contains("authorization: bearer tok"), "{request}");
    }
}
