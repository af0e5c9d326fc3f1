//! The order service's gRPC API (`proto/order.proto`): the payment service reads an order's
//! owner and total there, to check a direct charge that names it. Nobody else may.

use platform_proto::order::v1::GetOrderRequest;
use platform_proto::order::v1::order_service_client::OrderServiceClient;
use platform_testing::Backend;
use tonic::Code;

use crate::helpers::{order_body, spawn_app};

async fn the_payment_service_reads_an_orders_owner_and_total(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 5).await;
    let placed = app
        .place(&app.user, &order_body(&[(&mug, 2)], "tok_visa"))
        .await;
    let id = placed["id"].as_str().unwrap().to_owned();
    let ask = |id: &str| GetOrderRequest {
        order_id: id.to_owned(),
    };

    let mut payments = OrderServiceClient::new(app.order_grpc_as("payment-service"));
    let order = payments.get_order(ask(&id)).await.unwrap().into_inner();
    assert_eq!(order.order_id, id);
    assert_eq!(order.user_id, app.user.id.to_string());
    assert_eq!(
        order.state(),
        platform_proto::order::v1::OrderStatus::Confirmed
    );
    let total = order.total.unwrap();
    assert_eq!((total.amount, total.currency.as_str()), (2500, "EUR"));
    assert_eq!(order.status, "confirmed");

    let unknown = payments
        .get_order(ask(&uuid::Uuid::now_v7().to_string()))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let malformed = payments.get_order(ask("order-1")).await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");

    // Another service, or no credential at all, is refused.
    let mut products = OrderServiceClient::new(app.order_grpc_as("product-service"));
    let refused = products.get_order(ask(&id)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut nobody = OrderServiceClient::new(app.order_grpc_anonymous());
    let refused = nobody.get_order(ask(&id)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

platform_testing::backend_tests!(the_payment_service_reads_an_orders_owner_and_total);
