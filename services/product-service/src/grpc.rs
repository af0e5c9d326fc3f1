//! The gRPC API (`proto/product.proto`) the order saga calls: reservations and price lookup.
//! Internal: it listens on its own port, never exposed through the gateway.

use platform_auth::service_identity::ServiceIdentity;
use platform_http::{GrpcAccess, GrpcApi};
use platform_proto::product::v1 as proto;
use platform_proto::product::v1::product_service_server::{ProductService, ProductServiceServer};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{Line, OrderId, Product, ProductId, Quantity, Reservation, ReservationState};
use crate::service::{Catalog, CatalogError};

/// At most this many ids per `GetProducts` call, and lines per reservation.
const MAX_ITEMS: usize = 500;

/// The `ProductService` gRPC server.
pub struct ProductGrpc {
    catalog: Catalog,
}

impl From<CatalogError> for Status {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::NotFound | CatalogError::UnknownProduct(_) => {
                Status::not_found(error.to_string())
            }
            CatalogError::NoReservation(_) => Status::not_found(error.to_string()),
            CatalogError::InsufficientStock(_) => Status::failed_precondition(error.to_string()),
            // Commit after Release (or expiry), Release after Commit. (Reserve answers
            // ABORTED instead: see `reserve`.)
            CatalogError::AlreadySettled(..) => Status::failed_precondition(error.to_string()),
            CatalogError::EmptyReservation => Status::invalid_argument(error.to_string()),
            CatalogError::SkuTaken
            | CatalogError::BelowReserved { .. }
            | CatalogError::AboveMaximum(_) => Status::failed_precondition(error.to_string()),
            // A database out of reach is "not now", which the order saga retries until its
            // deadline; anything else is a bug.
            CatalogError::Database(ref database) if platform_db::is_unavailable(database) => {
                tracing::warn!(%error, "gRPC request failed; the database is unreachable");
                Status::unavailable("the catalog database is unreachable; retry")
            }
            error @ (CatalogError::Database(_) | CatalogError::Event(_)) => {
                tracing::error!(%error, "gRPC request failed");
                Status::internal("internal error")
            }
        }
    }
}

fn uuid(field: &str, raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw).map_err(|_| Status::invalid_argument(format!("{field} must be a UUID")))
}

fn proto_line(line: &Line) -> proto::Line {
    proto::Line {
        product_id: line.product_id.to_string(),
        quantity: line.quantity.get(),
    }
}

impl From<Reservation> for proto::Reservation {
    fn from(reservation: Reservation) -> Self {
        proto::Reservation {
            order_id: reservation.order_id.to_string(),
            state: match reservation.state {
                ReservationState::Reserved => proto::ReservationState::Reserved,
                ReservationState::Committed => proto::ReservationState::Committed,
                ReservationState::Released => proto::ReservationState::Released,
                ReservationState::Returned => proto::ReservationState::Returned,
            } as i32,
            lines: reservation.lines.iter().map(proto_line).collect(),
            expires_at: reservation.expires_at.timestamp(),
        }
    }
}

impl From<Product> for proto::Product {
    fn from(product: Product) -> Self {
        proto::Product {
            id: product.id.to_string(),
            sku: product.sku.to_string(),
            name: product.name.to_string(),
            price: Some(proto::Money {
                amount: product.price.amount(),
                currency: product.price.currency().to_string(),
            }),
            stock: product.stock,
            reserved: product.reserved,
            available: product.available(),
            archived: product.archived,
        }
    }
}

#[tonic::async_trait]
impl ProductService for ProductGrpc {
    async fn reserve(
        &self,
        request: Request<proto::ReserveRequest>,
    ) -> Result<Response<proto::Reservation>, Status> {
        let request = request.into_inner();
        let order_id = OrderId::from_uuid(uuid("order_id", &request.order_id)?);
        if request.lines.len() > MAX_ITEMS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_ITEMS} lines"
            )));
        }
        let lines = request
            .lines
            .iter()
            .map(|line| {
                Ok(Line {
                    product_id: ProductId::from_uuid(uuid("product_id", &line.product_id)?),
                    quantity: Quantity::new(line.quantity)
                        .map_err(|_| Status::invalid_argument("quantity must be at least 1"))?,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        match self.catalog.reserve(order_id, &lines).await {
            Ok(reservation) => Ok(Response::new(reservation.into())),
            // Reserving an order already released or committed: the saga moved on; it must
            // not retry.
            Err(error @ CatalogError::AlreadySettled(..)) => {
                Err(Status::aborted(error.to_string()))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn release(
        &self,
        request: Request<proto::ReservationRef>,
    ) -> Result<Response<proto::Reservation>, Status> {
        let order_id = OrderId::from_uuid(uuid("order_id", &request.get_ref().order_id)?);
        Ok(Response::new(self.catalog.release(order_id).await?.into()))
    }

    async fn commit(
        &self,
        request: Request<proto::ReservationRef>,
    ) -> Result<Response<proto::Reservation>, Status> {
        let order_id = OrderId::from_uuid(uuid("order_id", &request.get_ref().order_id)?);
        Ok(Response::new(self.catalog.commit(order_id).await?.into()))
    }

    async fn restock(
        &self,
        request: Request<proto::ReservationRef>,
    ) -> Result<Response<proto::Reservation>, Status> {
        let order_id = OrderId::from_uuid(uuid("order_id", &request.get_ref().order_id)?);
        Ok(Response::new(self.catalog.restock(order_id).await?.into()))
    }

    async fn get_products(
        &self,
        request: Request<proto::GetProductsRequest>,
    ) -> Result<Response<proto::GetProductsResponse>, Status> {
        let request = request.into_inner();
        if request.ids.len() > MAX_ITEMS {
            return Err(Status::invalid_argument(format!("at most {MAX_ITEMS} ids")));
        }
        let ids = request
            .ids
            .iter()
            .map(|id| uuid("ids", id).map(ProductId::from_uuid))
            .collect::<Result<Vec<_>, Status>>()?;
        let products = self.catalog.products(&ids).await?;
        Ok(Response::new(proto::GetProductsResponse {
            products: products.into_iter().map(Into::into).collect(),
        }))
    }
}

/// Who may call what: moving stock is the checkout saga's alone; prices and stock levels
/// (public through the REST API anyway) are for any service of the platform.
pub fn access() -> GrpcAccess {
    const SERVICE: &str = <ProductServiceServer<ProductGrpc> as tonic::server::NamedService>::NAME;
    const SAGA: &[&str] = &["order-service"];
    GrpcAccess::new()
        .allow(SERVICE, "Reserve", SAGA)
        .allow(SERVICE, "Release", SAGA)
        .allow(SERVICE, "Commit", SAGA)
        .allow(SERVICE, "Restock", SAGA)
        .allow_any_service(SERVICE, "GetProducts")
}

/// The gRPC side of the service, for the kit to serve with health and reflection behind its
/// guard.
pub fn api(catalog: Catalog, identity: ServiceIdentity) -> GrpcApi {
    GrpcApi {
        routes: tonic::service::Routes::new(ProductServiceServer::new(ProductGrpc { catalog })),
        file_descriptor_set: platform_proto::FILE_DESCRIPTOR_SET,
        services: vec![<ProductServiceServer<ProductGrpc> as tonic::server::NamedService>::NAME],
        authenticator: std::sync::Arc::new(identity),
        access: access(),
    }
}
