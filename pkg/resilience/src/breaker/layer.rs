//! The breaker as a tower layer, for any client (the order service's gRPC channels): the
//! same state machine, its permits taken and reported around each call.

use super::*;

/// Wraps a tower service in a breaker: refused calls fail with [`Rejected`] (boxed), and
/// `is_failure` decides which outcomes count against the endpoint.
#[derive(Clone)]
pub struct CircuitBreakerLayer<F> {
    breaker: Arc<CircuitBreaker>,
    is_failure: F,
}

impl<F> CircuitBreakerLayer<F> {
    /// Guards calls with `breaker`; `is_failure(&result)` returns `true` for the results that
    /// count as failures (a refused call is never passed to it).
    pub fn new(breaker: Arc<CircuitBreaker>, is_failure: F) -> Self {
        Self {
            breaker,
            is_failure,
        }
    }
}

impl<S, F: Clone> tower::Layer<S> for CircuitBreakerLayer<F> {
    type Service = CircuitBreakerService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: Arc::clone(&self.breaker),
            is_failure: self.is_failure.clone(),
        }
    }
}

/// See [`CircuitBreakerLayer`].
#[derive(Clone)]
pub struct CircuitBreakerService<S, F> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
    is_failure: F,
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, F, Req> tower::Service<Req> for CircuitBreakerService<S, F>
where
    S: tower::Service<Req>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    F: Fn(&Result<S::Response, BoxError>) -> bool + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => return Box::pin(async move { Err(Box::new(rejected) as BoxError) }),
        };
        let future = self.inner.call(request);
        let breaker = Arc::clone(&self.breaker);
        let is_failure = self.is_failure.clone();
        Box::pin(async move {
            let result = future.await.map_err(Into::into);
            breaker.record(permit, !is_failure(&result));
            result
        })
    }
}
