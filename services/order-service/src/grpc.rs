//! The gRPC API (`proto/order.proto`) the payment service calls to check that a charge naming
//! an order matches it. Internal: its own port, never exposed through the gateway.

use platform_auth::service_identity::ServiceIdentity;
use platform_http::{GrpcAccess, GrpcApi};
use platform_proto::order::v1 as proto;
use platform_proto::order::v1::order_service_server::{OrderService, OrderServiceServer};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{OrderId, OrderStatus};
use crate::repo;

/// The `OrderService` gRPC server: reads only.
pub struct OrderGrpc {
    db: DatabaseConnection,
}

#[tonic::async_trait]
impl OrderService for OrderGrpc {
    // `status` (text) is deprecated on the wire but still sent, for peers that read only it.
    #[allow(deprecated)]
    async fn get_order(
        &self,
        request: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let id = Uuid::parse_str(&request.get_ref().order_id)
            .map_err(|_| Status::invalid_argument("order_id must be a UUID"))?;
        let row = repo::find(&self.db, OrderId::from_uuid(id))
            .await
            .map_err(|error| {
                tracing::error!(%error, "gRPC GetOrder failed");
                Status::unavailable("orders cannot be read right now")
            })?
            .ok_or_else(|| Status::not_found(format!("no order {id}")))?;
        Ok(Response::new(proto::Order {
            order_id: row.id.to_string(),
            user_id: row.user_id.to_string(),
            total: Some(proto::Money {
                amount: row.total,
                currency: row.currency,
            }),
            status: row.status.as_str().to_owned(),
            state: wire_status(row.status).into(),
        }))
    }
}

/// Who may call what: only the payment service reads orders, to check the charges that name
/// them.
pub fn access() -> GrpcAccess {
    const SERVICE: &str = <OrderServiceServer<OrderGrpc> as tonic::server::NamedService>::NAME;
    GrpcAccess::new().allow(SERVICE, "GetOrder", &["payment-service"])
}

/// The gRPC side of the service, for the kit to serve with health and reflection behind its
/// guard.
pub fn api(db: DatabaseConnection, identity: ServiceIdentity) -> GrpcApi {
    GrpcApi {
        authenticator: std::sync::Arc::new(identity),
        access: access(),
        routes: tonic::service::Routes::new(OrderServiceServer::new(OrderGrpc { db })),
        file_descriptor_set: platform_proto::FILE_DESCRIPTOR_SET,
        services: vec![<OrderServiceServer<OrderGrpc> as tonic::server::NamedService>::NAME],
    }
}

/// An order's status on the wire.
fn wire_status(status: OrderStatus) -> proto::OrderStatus {
    match status {
        OrderStatus::Pending => proto::OrderStatus::Pending,
        OrderStatus::StockReserved => proto::OrderStatus::StockReserved,
        OrderStatus::PaymentReview => proto::OrderStatus::PaymentReview,
        OrderStatus::PaymentAuthorized => proto::OrderStatus::PaymentAuthorized,
        OrderStatus::Confirmed => proto::OrderStatus::Confirmed,
        OrderStatus::Shipped => proto::OrderStatus::Shipped,
        OrderStatus::Delivered => proto::OrderStatus::Delivered,
        OrderStatus::Cancelled => proto::OrderStatus::Cancelled,
        OrderStatus::Failed => proto::OrderStatus::Failed,
    }
}
