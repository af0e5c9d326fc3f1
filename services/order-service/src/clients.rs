//! The saga's gRPC clients of the product and payment services: each call has a deadline,
//! passes its service's circuit breaker (a tower layer from `platform-resilience`), and is
//! retried with backoff within a retry budget when it failed transiently. Every call the
//! saga makes is idempotent (keyed by the order), so a retry can never do anything twice.
//!
//! Every call carries the order service's credential (`platform_auth::service_identity`):
//! its client certificate over mutual TLS, or a service token whose audience is the called
//! service. The product and payment services take these names as audiences and expect them in
//! their server certificates.
//!
//! Failures are classified by what they say about the call's effect, which is what the saga
//! needs to know: [`CallError::NotSent`] (it never reached the service), [`CallError::Refused`]
//! (the service answered with an error: nothing was done), [`CallError::Unknown`] (it may or
//! may not have taken effect: a timeout, a connection lost mid-call).

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use platform_auth::service_identity::ServiceIdentity;
use platform_metrics::Metrics;
use platform_proto::payment::v1 as payment;
use platform_proto::payment::v1::payment_service_client::PaymentServiceClient;
use platform_proto::product::v1 as product;
use platform_proto::product::v1::product_service_client::ProductServiceClient;

use platform_resilience::{
    Backoff, CircuitBreaker, CircuitBreakerLayer, Rejected, RetryBudget, observed_breaker,
};
use tonic::{Code, Status};
use tower::util::BoxCloneSyncService;

use crate::config::ClientsConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Outcome = Result<http::Response<tonic::body::Body>, BoxError>;
/// A channel behind its breaker, type-erased (which also keeps the breaker's classifier, a
/// function pointer, out of every future that holds a client).
type Guarded = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    TransportError,
>;

/// A call that failed below gRPC (refused by the breaker, no connection, timed out): a
/// concrete type rather than a boxed one, so the compiler can prove the clients' futures
/// `Send` (it cannot through a boxed error's lifetime). Its source is the failure itself,
/// where tonic and [`classify`] look.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(#[source] BoxError);

/// What became of a call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// It never reached the service: its breaker is open, or nothing listens there.
    #[error("{service} is unavailable: {reason}")]
    NotSent {
        service: &'static str,
        reason: String,
    },
    /// The service answered with an error; the call had no effect.
    #[error("{service} refused: {}", .status.message())]
    Refused {
        service: &'static str,
        status: Status,
    },
    /// The call may or may not have taken effect.
    #[error("{service} did not answer: {}", .status.message())]
    Unknown {
        service: &'static str,
        status: Status,
    },
}

impl CallError {
    /// The service's own error code, when it answered.
    pub fn refused_code(&self) -> Option<Code> {
        match self {
            CallError::Refused { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Whether the service answered with a verdict on the request itself (invalid, refused,
    /// not found, …), so a charge it was asked for did not happen. "Try later" codes, and an
    /// internal error (a database that failed after a provider was called), are no verdict:
    /// the outcome is unknown until the same key is asked again.
    pub fn definite_refusal(&self) -> bool {
        match self {
            CallError::Refused { status, .. } => !matches!(
                status.code(),
                Code::Aborted
                    | Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Internal
                    | Code::Unknown
                    | Code::DataLoss
            ),
            CallError::NotSent { .. } | CallError::Unknown { .. } => false,
        }
    }

    fn transient(&self) -> bool {
        match self {
            // The breaker said when to come back; a retry now would be refused again.
            CallError::NotSent { reason, .. } => !reason.starts_with("circuit open"),
            CallError::Refused { status, .. } => matches!(
                status.code(),
                Code::Unavailable | Code::ResourceExhausted | Code::Aborted
            ),
            CallError::Unknown { .. } => true,
        }
    }
}

/// Whether a response counts against the breaker: transport failures, and the codes that
/// mean the service is in trouble (not the ones that mean the request was wrong).
fn is_failure(outcome: &Outcome) -> bool {
    match outcome {
        Err(_) => true,
        Ok(response) => matches!(
            response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok()),
            Some("4" | "13" | "14")
        ),
    }
}

/// Sorts a failed call by what it says about its effect.
fn classify(service: &'static str, status: Status) -> CallError {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(rejected) = error.downcast_ref::<Rejected>() {
            return CallError::NotSent {
                service,
                reason: rejected.to_string(),
            };
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return CallError::NotSent {
                service,
                reason: "connection refused".to_owned(),
            };
        }
        source = error.source();
    }
    if status.source().is_none() && status.code() != Code::Cancelled {
        // A status the service itself sent.
        CallError::Refused { service, status }
    } else {
        CallError::Unknown { service, status }
    }
}

/// One service's client: a lazily connected channel behind a breaker.
#[derive(Clone)]
struct Client {
    service: Guarded,
    breaker: Arc<CircuitBreaker>,
}

impl Client {
    /// A client of the service `name` at `url`, calling as `identity` (over mutual TLS, or
    /// with a service token on every call).
    fn new(
        name: &'static str,
        url: &str,
        identity: &ServiceIdentity,
        config: &ClientsConfig,
        metrics: &Metrics,
    ) -> Result<Self, BoxError> {
        let channel = identity
            .endpoint(url, name)?
            .connect_timeout(Duration::from_secs(1))
            .timeout(config.call_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        // Each attempt (retries included) is a client span whose context the call carries.
        let channel = platform_http::grpc_trace::ClientSpans::new(channel, SERVICE, name);
        // Under the breaker, so every attempt (retries included) carries a live token.
        let token = identity.token_for(name);
        let channel = tower::ServiceExt::map_request(
            channel,
            move |mut request: http::Request<tonic::body::Body>| {
                token.authorize(&mut request);
                request
            },
        );
        let breaker = Arc::new(observed_breaker(config.breaker, metrics, name, url));
        let layer =
            CircuitBreakerLayer::new(Arc::clone(&breaker), is_failure as fn(&Outcome) -> bool);
        Ok(Self {
            service: BoxCloneSyncService::new(tower::ServiceExt::map_err(
                tower::Layer::layer(&layer, channel),
                TransportError,
            )),
            breaker,
        })
    }
}

/// The clients, the retry policy and the budget they share.
#[derive(Clone)]
pub struct Clients {
    product: Client,
    payment: Client,
    attempts: u32,
    timeout: Duration,
    backoff: Backoff,
    budget: Arc<RetryBudget>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("product", &self.product.breaker.state())
            .field("payment", &self.payment.breaker.state())
            .finish_non_exhaustive()
    }
}

/// The caller every client span names.
const SERVICE: &str = crate::config::DEFAULTS.name;
const PRODUCT: &str = "product-service";
const PAYMENT: &str = "payment-service";

impl Clients {
    /// The product and payment clients, calling as `identity` (the order service).
    pub fn new(
        config: &ClientsConfig,
        identity: &ServiceIdentity,
        metrics: &Metrics,
    ) -> Result<Self, BoxError> {
        Ok(Self {
            product: Client::new(PRODUCT, &config.product_url, identity, config, metrics)?,
            payment: Client::new(PAYMENT, &config.payment_url, identity, config, metrics)?,
            attempts: config.attempts,
            timeout: config.call_timeout,
            backoff: Backoff {
                base: Duration::from_millis(50),
                max: Duration::from_secs(1),
            },
            budget: Arc::new(RetryBudget::default()),
        })
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of attempts or budget.
    async fn with_retries<T, F, Fut>(&self, service: &'static str, call: F) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.with_retries_response(service, call)
            .await
            .map(tonic::Response::into_inner)
    }

    /// [`Self::with_retries`], keeping the response's metadata.
    async fn with_retries_response<T, F, Fut>(
        &self,
        service: &'static str,
        call: F,
    ) -> Result<tonic::Response<T>, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.budget.deposit();
        let mut attempt = 1;
        loop {
            let error = match call().await {
                Ok(response) => return Ok(response),
                Err(status) => classify(service, status),
            };
            if attempt >= self.attempts || !error.transient() || !self.budget.withdraw() {
                return Err(error);
            }
            tracing::debug!(%error, attempt, "retrying");
            tokio::time::sleep(self.backoff.delay(attempt)).await;
            attempt += 1;
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        // The service learns the deadline too, and stops working on an abandoned call.
        request.set_timeout(self.timeout);
        request
    }

    fn products(&self) -> ProductServiceClient<Guarded> {
        ProductServiceClient::new(self.product.service.clone())
    }

    fn payments(&self) -> PaymentServiceClient<Guarded> {
        PaymentServiceClient::new(self.payment.service.clone())
    }

    pub async fn get_products(&self, ids: Vec<String>) -> Result<Vec<product::Product>, CallError> {
        let response = self
            .with_retries(PRODUCT, || {
                let mut client = self.products();
                let request = self.request(product::GetProductsRequest { ids: ids.clone() });
                async move { client.get_products(request).await }
            })
            .await?;
        Ok(response.products)
    }

    pub async fn reserve(
        &self,
        order_id: String,
        lines: Vec<product::Line>,
    ) -> Result<product::Reservation, CallError> {
        self.with_retries(PRODUCT, || {
            let mut client = self.products();
            let request = self.request(product::ReserveRequest {
                order_id: order_id.clone(),
                lines: lines.clone(),
            });
            async move { client.reserve(request).await }
        })
        .await
    }

    pub async fn commit(&self, order_id: String) -> Result<product::Reservation, CallError> {
        self.with_retries(PRODUCT, || {
            let mut client = self.products();
            let request = self.reservation(&order_id);
            async move { client.commit(request).await }
        })
        .await
    }

    pub async fn release(&self, order_id: String) -> Result<product::Reservation, CallError> {
        self.with_retries(PRODUCT, || {
            let mut client = self.products();
            let request = self.reservation(&order_id);
            async move { client.release(request).await }
        })
        .await
    }

    pub async fn restock(&self, order_id: String) -> Result<product::Reservation, CallError> {
        self.with_retries(PRODUCT, || {
            let mut client = self.products();
            let request = self.reservation(&order_id);
            async move { client.restock(request).await }
        })
        .await
    }

    fn reservation(&self, order_id: &str) -> tonic::Request<product::ReservationRef> {
        self.request(product::ReservationRef {
            order_id: order_id.to_owned(),
        })
    }

    pub async fn charge(
        &self,
        request: payment::ChargeRequest,
    ) -> Result<payment::Payment, CallError> {
        self.with_retries(PAYMENT, || {
            let mut client = self.payments();
            let request = self.request(request.clone());
            async move { client.charge(request).await }
        })
        .await
    }

    pub async fn refund(
        &self,
        request: payment::RefundRequest,
    ) -> Result<payment::Payment, CallError> {
        self.refund_reporting_replay(request)
            .await
            .map(|(payment, _)| payment)
    }

    /// [`Self::refund`], and whether the payment service answered a repeat of its key with the
    /// first answer (refunding nothing this time).
    pub async fn refund_reporting_replay(
        &self,
        request: payment::RefundRequest,
    ) -> Result<(payment::Payment, bool), CallError> {
        let response = self
            .with_retries_response(PAYMENT, || {
                let mut client = self.payments();
                let request = self.request(request.clone());
                async move { client.refund(request).await }
            })
            .await?;
        let replayed = response
            .metadata()
            .get(platform_proto::REPLAYED)
            .is_some_and(|v| v == "true");
        Ok((response.into_inner(), replayed))
    }

    pub async fn void(
        &self,
        payment_id: String,
        reason: String,
    ) -> Result<payment::Payment, CallError> {
        self.with_retries(PAYMENT, || {
            let mut client = self.payments();
            let request = self.request(payment::VoidRequest {
                payment_id: payment_id.clone(),
                reason: reason.clone(),
            });
            async move { client.void(request).await }
        })
        .await
    }

    pub async fn get_payment(&self, payment_id: String) -> Result<payment::Payment, CallError> {
        self.with_retries(PAYMENT, || {
            let mut client = self.payments();
            let request = self.request(payment::GetPaymentRequest {
                payment_id: payment_id.clone(),
            });
            async move { client.get_payment(request).await }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_the_service_sent_are_refusals() {
        let error = classify(PRODUCT, Status::failed_precondition("out of stock"));
        assert_eq!(error.refused_code(), Some(Code::FailedPrecondition));
        assert!(!error.transient());
        assert!(classify(PAYMENT, Status::unavailable("provider down")).transient());
    }

    #[test]
    fn only_a_verdict_on_the_request_is_a_definite_refusal() {
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::NotFound,
        ] {
            assert!(
                classify(PAYMENT, Status::new(code, "no")).definite_refusal(),
                "{code:?}"
            );
        }
        for code in [
            Code::Internal,
            Code::Unavailable,
            Code::Aborted,
            Code::Unknown,
        ] {
            assert!(
                !classify(PAYMENT, Status::new(code, "?")).definite_refusal(),
                "{code:?}"
            );
        }
    }

    #[test]
    fn an_open_breaker_means_the_call_was_never_sent() {
        let rejected = Rejected {
            retry_after: Duration::from_secs(3),
        };
        let status = Status::from_error(Box::new(rejected));
        let error = classify(PAYMENT, status);
        assert!(matches!(error, CallError::NotSent { .. }), "{error:?}");
        assert!(
            !error.transient(),
            "the breaker already said when to come back"
        );
    }

    #[test]
    fn timeouts_leave_the_outcome_unknown() {
        let status = Status::from_error(Box::new(std::io::Error::other("deadline has elapsed")));
        assert!(matches!(
            classify(PAYMENT, status),
            CallError::Unknown { .. }
        ));
        let cancelled = Status::cancelled("Timeout expired");
        assert!(matches!(
            classify(PAYMENT, cancelled),
            CallError::Unknown { .. }
        ));
    }
}
