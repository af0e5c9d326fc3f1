//! Who may call the gRPC API: the reservation methods only the order service, prices any
//! service of the platform, health probes anyone; every refusal is audited.

use std::time::Duration;

use platform_auth::service_identity::{ServiceAuthConfig, ServiceIdentity};
use platform_http::audit::{Action, Actor, AuditRecord};
use platform_proto::product::v1 as proto;
use platform_proto::product::v1::product_service_client::ProductServiceClient;
use platform_testing::Backend;
use platform_testing::grpc::{Caller, anonymous, as_service, serving, with_authorization};
use tonic::Code;

use crate::helpers::{JWT_SECRET, TestApp, spawn_app};

fn order() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Calls `method` (one of those only the saga may call) as `caller` for `order_id`.
async fn call(
    caller: Caller,
    method: &str,
    order_id: &str,
    product: &str,
) -> Result<proto::Reservation, tonic::Status> {
    let mut client = ProductServiceClient::new(caller);
    let reservation = proto::ReservationRef {
        order_id: order_id.to_owned(),
    };
    let response = match method {
        "Reserve" => {
            client
                .reserve(proto::ReserveRequest {
                    order_id: order_id.to_owned(),
                    lines: vec![proto::Line {
                        product_id: product.to_owned(),
                        quantity: 1,
                    }],
                })
                .await
        }
        "Release" => client.release(reservation).await,
        "Commit" => client.commit(reservation).await,
        "Restock" => client.restock(reservation).await,
        other => panic!("not a saga method: {other}"),
    };
    response.map(tonic::Response::into_inner)
}

/// A refusal of the kind given, for `method`, is on the service's bus.
async fn refusal_audited(app: &TestApp, action: Action, reason: &str, method: &str) -> AuditRecord {
    let target = format!("platform.product.v1.ProductService/{method}");
    platform_testing::grpc::refusal_audited(&app.events, action, reason, &target).await
}

async fn only_the_order_service_may_reserve_release_commit_or_restock(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.new_product("Guarded", "misc", 100, 10).await;
    let (sold, released) = (order(), order());
    // In an order in which the order service's calls succeed.
    let calls = [
        ("Reserve", &sold),
        ("Commit", &sold),
        ("Restock", &sold),
        ("Reserve", &released),
        ("Release", &released),
    ];
    for (method, order_id) in calls {
        let refusals = [
            (anonymous(app.grpc), Code::Unauthenticated),
            (
                as_service(app.grpc, "order-service", "payment-service", JWT_SECRET),
                Code::Unauthenticated,
            ),
            (app.grpc_as("notification-service"), Code::PermissionDenied),
        ];
        for (caller, code) in refusals {
            let refused = call(caller, method, order_id, &product).await.unwrap_err();
            assert_eq!(refused.code(), code, "{method}: {refused:?}");
        }
        let done = call(app.grpc_as("order-service"), method, order_id, &product).await;
        assert!(done.is_ok(), "{method} as the order service: {done:?}");
    }
    let stored = app.stored(&product).await;
    assert_eq!(
        (stored.stock, stored.reserved),
        (10, 0),
        "sold and restocked, reserved and released; the refused calls did nothing"
    );

    for method in ["Reserve", "Release", "Commit", "Restock"] {
        let missing = refusal_audited(&app, Action::TokenRejected, "missing", method).await;
        assert_eq!(missing.actor, None);
        let misdirected =
            refusal_audited(&app, Action::TokenRejected, "wrong_audience", method).await;
        assert_eq!(
            misdirected.actor,
            Some(Actor::Service("order-service".into())),
            "a good signature names its issuer"
        );
        let denied = refusal_audited(&app, Action::AccessDenied, "not_allowed", method).await;
        assert_eq!(
            denied.actor,
            Some(Actor::Service("notification-service".into()))
        );
        assert_eq!(denied.service, "product-service");
        assert!(denied.client_ip.is_some_and(|ip| ip.is_loopback()));
    }
}

async fn any_service_may_read_prices_but_nobody_anonymously(backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.new_product("Priced", "misc", 250, 3).await;
    let request = || proto::GetProductsRequest {
        ids: vec![product.clone()],
    };
    let found = ProductServiceClient::new(app.grpc_as("notification-service"))
        .get_products(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.products[0].id, product);
    let refused = ProductServiceClient::new(anonymous(app.grpc))
        .get_products(request())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

async fn expired_and_forged_tokens_are_refused_and_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let orders =
        ServiceIdentity::new("order-service", &ServiceAuthConfig::with_secret(JWT_SECRET)).unwrap();
    let expired = orders
        .mint_valid_for("product-service", Duration::ZERO)
        .unwrap();
    let forger = ServiceIdentity::new(
        "order-service",
        &ServiceAuthConfig::with_secret("not-the-platform-secret-0123456789ab"),
    )
    .unwrap();
    let forged = forger.mint("product-service").unwrap();
    for (token, reason) in [(expired, "expired"), (forged, "invalid")] {
        let caller = with_authorization(app.grpc, &format!("Bearer {token}"));
        let refused = call(caller, "Release", &order(), "").await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{reason}");
        let record = refusal_audited(&app, Action::TokenRejected, reason, "Release").await;
        let expected = (reason == "expired").then(|| Actor::Service("order-service".into()));
        assert_eq!(record.actor, expected, "{reason}");
    }
}

async fn health_probes_need_no_credential(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(serving(anonymous(app.grpc), "platform.product.v1.ProductService").await);
}

platform_testing::backend_tests!(
    only_the_order_service_may_reserve_release_commit_or_restock,
    any_service_may_read_prices_but_nobody_anonymously,
    expired_and_forged_tokens_are_refused_and_audited,
    health_probes_need_no_credential,
);
