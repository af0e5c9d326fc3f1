//! The order service, asked (over gRPC, `proto/order.proto`) about the order a direct charge
//! names, so that nobody pays for an order beside its checkout, or pays the wrong amount.
//!
//! The address can be changed after start-up ([`OrderBook::point_at`]): under `platform up`
//! the payment service starts before the order service, whose port it learns afterwards.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use platform_auth::service_identity::{IdentityError, ServiceIdentity, ServiceToken};
use platform_proto::order::v1 as proto;
use platform_proto::order::v1::order_service_client::OrderServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

const ORDER_SERVICE: &str = "order-service";
/// A lookup is one indexed read there; a slower answer means trouble, and the shopper waits.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

type Client = OrderServiceClient<InterceptedService<Channel, ServiceToken>>;

/// What a charge is checked against: who placed the order and what it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    pub user_id: Uuid,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
}

/// The order service could not say.
#[derive(Debug, thiserror::Error)]
#[error("the order service could not be asked about order {order}: {reason}")]
pub struct LookupFailed {
    pub order: Uuid,
    pub reason: String,
}

/// A client of the order service. Cheap to clone.
#[derive(Clone)]
pub struct OrderBook {
    identity: ServiceIdentity,
    client: Arc<RwLock<Client>>,
}

impl std::fmt::Debug for OrderBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderBook").finish_non_exhaustive()
    }
}

impl OrderBook {
    /// A client of the order service at `url` (connected on first use), calling as
    /// `identity`.
    pub fn new(url: &str, identity: &ServiceIdentity) -> Result<Self, IdentityError> {
        Ok(Self {
            client: Arc::new(RwLock::new(connect(url, identity)?)),
            identity: identity.clone(),
        })
    }

    /// Asks the order service at `url` from now on.
    pub fn point_at(&self, url: &str) -> Result<(), IdentityError> {
        let client = connect(url, &self.identity)?;
        *self.client.write().unwrap_or_else(PoisonError::into_inner) = client;
        Ok(())
    }

    /// The order `id`, or `None` when the order service has no such order.
    pub async fn get(&self, id: Uuid) -> Result<Option<OrderFacts>, LookupFailed> {
        let failed = |reason: String| LookupFailed { order: id, reason };
        let mut client = self
            .client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut request = tonic::Request::new(proto::GetOrderRequest {
            order_id: id.to_string(),
        });
        request.set_timeout(CALL_TIMEOUT);
        let order = match client.get_order(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => {
                return Err(failed(format!("{:?}: {}", status.code(), status.message())));
            }
        };
        let total = order
            .total
            .ok_or_else(|| failed("the answer has no total".to_owned()))?;
        let user_id = Uuid::parse_str(&order.user_id)
            .map_err(|_| failed("the answer's user_id is not a UUID".to_owned()))?;
        Ok(Some(OrderFacts {
            user_id,
            amount: total.amount,
            currency: total.currency,
        }))
    }
}

fn connect(url: &str, identity: &ServiceIdentity) -> Result<Client, IdentityError> {
    let channel = identity
        .endpoint(url, ORDER_SERVICE)?
        .connect_timeout(Duration::from_secs(1))
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(OrderServiceClient::with_interceptor(
        channel,
        identity.token_for(ORDER_SERVICE),
    ))
}
