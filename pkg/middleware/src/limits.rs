//! Load shedding and header-size limits.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use platform_http::Problem;
use platform_metrics::{Counter, Metrics, counter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most this many requests in flight; beyond, 503 at once (with `Retry-After`), so that
/// overload sheds requests instead of letting latency climb for everyone.
#[derive(Clone, Debug)]
pub struct LoadShed {
    slots: Arc<Semaphore>,
    /// Counts the requests shed (`requests_shed_total`), when given.
    shed: Option<Counter>,
}

impl LoadShed {
    /// Admits at most `max_in_flight` requests at a time; counts nothing until
    /// [`LoadShed::counted`].
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            shed: None,
        }
    }

    /// Counts every request shed into `metrics` as `requests_shed_total`.
    pub fn counted(mut self, metrics: &Metrics) -> Self {
        self.shed = Some(metrics.record(|| counter!("requests_shed_total")));
        self
    }

    /// A slot for one request, held until the permit drops; the 503 to send when full.
    pub fn try_enter(&self) -> Result<OwnedSemaphorePermit, Problem> {
        Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            if let Some(shed) = &self.shed {
                shed.increment(1);
            }
            Problem::unavailable("The gateway is at capacity; retry shortly.")
                .with_type("overloaded")
                .with_retry_after(1)
        })
    }
}

/// Middleware for [`LoadShed`].
pub async fn shed_load(State(shed): State<LoadShed>, request: Request, next: Next) -> Response {
    match shed.try_enter() {
        Ok(_permit) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

/// The largest total size of a request's header names, values and target accepted.
#[derive(Clone, Copy, Debug)]
pub struct MaxHeaderBytes(pub usize);

impl MaxHeaderBytes {
    /// `Err(431)` when the request's target and headers together exceed the limit.
    pub fn check<B>(&self, request: &http::Request<B>) -> Result<(), Problem> {
        let uri = request.uri();
        let size: usize = uri.path().len()
            + uri.query().map_or(0, str::len)
            + request
                .headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>();
        if size > self.0 {
            return Err(Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                .with_type("headers-too-large")
                .with_detail(format!("Request headers must stay under {} bytes.", self.0)));
        }
        Ok(())
    }
}

/// Middleware for [`MaxHeaderBytes`]: 431 beyond it.
pub async fn limit_headers(
    State(max): State<MaxHeaderBytes>,
    request: Request,
    next: Next,
) -> Response {
    match max.check(&request) {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_beyond_the_concurrency_cap_are_shed_with_503() {
        let metrics = Metrics::new("shed-test");
        let shed = LoadShed::new(1).counted(&metrics);
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let entered = Arc::new(std::sync::Mutex::new(Some((entered_tx, release_rx))));
        let app = Router::new()
            .route(
                "/",
                get(move || {
                    let entered = entered.clone();
                    async move {
                        let taken = entered.lock().unwrap().take();
                        if let Some((entered, release)) = taken {
                            let _ = entered.send(());
                            let _ = release.await;
                        }
                        "ok"
                    }
                }),
            )
            .layer(from_fn_with_state(shed, shed_load));
        let slow = tokio::spawn(
            app.clone()
                .oneshot(Request::get("/").body(Body::empty()).unwrap()),
        );
        entered_rx.await.unwrap();
        let shed_response = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(shed_response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed_response.headers()["retry-after"], "1");
        release_tx.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
        let after = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(after.status(), StatusCode::OK, "capacity is back");
        assert!(
            metrics
                .render()
                .contains(r#"requests_shed_total{service="shed-test"} 1"#),
            "the shed request is counted, the others are not"
        );
    }

    #[tokio::test]
    async fn oversized_headers_are_431() {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(from_fn_with_state(MaxHeaderBytes(256), limit_headers));
        let small = Request::get("/")
            .header("x-a", "b")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(small).await.unwrap().status(),
            StatusCode::OK
        );
        let big = Request::get("/")
            .header("x-a", "b".repeat(300))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.oneshot(big).await.unwrap().status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
