//! Who may charge and refund over gRPC: the order service only, proven by a service token or
//! by its certificate over mutual TLS; every refusal is audited, and so is every refund.

use platform_auth::service_identity::{InternalTlsFiles, ServiceAuthConfig};
use platform_http::audit::{Action, Actor, AuditRecord, Outcome};
use platform_proto::payment::v1 as proto;
use platform_proto::payment::v1::payment_service_client::PaymentServiceClient;
use platform_testing::Backend;
use platform_testing::grpc::{
    Caller, Pki, anonymous, as_service, audited, over_mutual_tls, serving,
};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, TestApp, new_key, spawn_app, spawn_with};

const PAYMENTS: &str = "payment-service";
const ORDERS: &str = "order-service";

fn charge() -> proto::ChargeRequest {
    proto::ChargeRequest {
        order_id: Uuid::now_v7().to_string(),
        user_id: Uuid::now_v7().to_string(),
        amount: Some(proto::Money {
            amount: 1500,
            currency: "EUR".to_owned(),
        }),
        token: "tok_visa".to_owned(),
        idempotency_key: new_key(),
        ..Default::default()
    }
}

fn refund(payment_id: &str) -> proto::RefundRequest {
    proto::RefundRequest {
        payment_id: payment_id.to_owned(),
        amount: None,
        reason: String::new(),
        idempotency_key: new_key(),
    }
}

/// Charge, then refund, as whoever `channel` calls as: the statuses of both (the refund of a
/// payment that exists, so a refusal can only be the caller's).
async fn charge_and_refund(
    channel: Caller,
    payment_id: &str,
) -> (Result<String, Code>, Result<String, Code>) {
    let mut client = PaymentServiceClient::new(channel);
    let charged = client
        .charge(charge())
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| s.code());
    let refunded = client
        .refund(refund(payment_id))
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| s.code());
    (charged, refunded)
}

/// A payment the order service made, to refund.
async fn captured(app: &TestApp) -> String {
    let payment = app.grpc_client().await.charge(charge()).await.unwrap();
    payment.into_inner().id
}

async fn refusal(app: &TestApp, action: Action, reason: &str, method: &str) -> AuditRecord {
    let target = format!("platform.payment.v1.PaymentService/{method}");
    platform_testing::grpc::refusal_audited(&app.events, action, reason, &target).await
}

async fn only_the_order_service_may_charge_or_refund(backend: Backend) {
    let app = spawn_app(backend).await;
    let payment = captured(&app).await;
    let unauthenticated = (Err(Code::Unauthenticated), Err(Code::Unauthenticated));
    assert_eq!(
        charge_and_refund(anonymous(app.grpc), &payment).await,
        unauthenticated,
        "no credential"
    );
    assert_eq!(
        charge_and_refund(
            as_service(app.grpc, ORDERS, "product-service", JWT_SECRET),
            &payment
        )
        .await,
        unauthenticated,
        "a token for another service"
    );
    assert_eq!(
        charge_and_refund(app.grpc_as("notification-service"), &payment).await,
        (Err(Code::PermissionDenied), Err(Code::PermissionDenied)),
        "a valid token of another service"
    );
    let nothing_yet = app.payment(&app.admin, &payment).await;
    assert_eq!(
        nothing_yet["refunded_amount"], 0,
        "the refused refunds did nothing"
    );
    assert_eq!(
        charge_and_refund(app.grpc_as(ORDERS), &payment).await,
        (Ok("captured".to_owned()), Ok("refunded".to_owned()))
    );

    for method in ["Charge", "Refund"] {
        assert_eq!(
            refusal(&app, Action::TokenRejected, "missing", method)
                .await
                .actor,
            None
        );
        assert_eq!(
            refusal(&app, Action::TokenRejected, "wrong_audience", method)
                .await
                .actor,
            Some(Actor::Service(ORDERS.into()))
        );
        assert_eq!(
            refusal(&app, Action::AccessDenied, "not_allowed", method)
                .await
                .actor,
            Some(Actor::Service("notification-service".into()))
        );
    }
    // The refund itself, by the order service.
    let target = format!("payment:{payment}");
    let refunded = audited(&app.events, "the refund", |record| {
        record.action == Action::PaymentRefund && record.target.as_deref() == Some(&target)
    })
    .await;
    assert_eq!(refunded.actor, Some(Actor::Service(ORDERS.into())));
    assert_eq!(refunded.outcome, Outcome::Success);
}

/// The payment service over mutual TLS with certificates from `pki` (tokens still accepted,
/// for the test's own setup calls).
async fn spawn_over_mutual_tls(backend: Backend, pki: &Pki) -> TestApp {
    let files = pki.service(PAYMENTS);
    spawn_with(backend, move |config| {
        config.internal = Some(ServiceAuthConfig {
            tls: Some(files),
            ..ServiceAuthConfig::with_secret(JWT_SECRET)
        });
    })
    .await
}

async fn over_mutual_tls_the_certificate_names_the_caller(backend: Backend) {
    let pki = Pki::new();
    let app = spawn_over_mutual_tls(backend, &pki).await;
    let payment = PaymentServiceClient::new(over_mutual_tls(
        app.grpc,
        ORDERS,
        pki.service(ORDERS),
        PAYMENTS,
    ))
    .charge(charge())
    .await
    .unwrap()
    .into_inner()
    .id;

    // The order service's certificate: no token needed.
    let orders = over_mutual_tls(app.grpc, ORDERS, pki.service(ORDERS), PAYMENTS);
    let (charged, refunded) = charge_and_refund(orders, &payment).await;
    assert_eq!(charged, Ok("captured".to_owned()));
    assert_eq!(refunded, Ok("refunded".to_owned()));

    // TLS without a client certificate: the call has no credential.
    let (charged, refunded) =
        charge_and_refund(pki.without_certificate(app.grpc, PAYMENTS), &payment).await;
    assert_eq!(
        (charged, refunded),
        (Err(Code::Unauthenticated), Err(Code::Unauthenticated))
    );
    refusal(&app, Action::TokenRejected, "missing", "Charge").await;

    // Another service's certificate from the same CA: known, but not allowed.
    let notifications = over_mutual_tls(
        app.grpc,
        "notification-service",
        pki.service("notification-service"),
        PAYMENTS,
    );
    let (charged, _) = charge_and_refund(notifications, &payment).await;
    assert_eq!(charged, Err(Code::PermissionDenied));
    let denied = refusal(&app, Action::AccessDenied, "not_allowed", "Charge").await;
    assert_eq!(
        denied.actor,
        Some(Actor::Service("notification-service".into()))
    );

    // A certificate for the order service from another CA: the handshake is refused.
    let rogue_ca = Pki::new();
    let rogue = rogue_ca.service(ORDERS);
    let impostor = InternalTlsFiles {
        // Trusts the real CA, so it is the server that refuses.
        ca: pki.ca(),
        ..rogue
    };
    let (charged, _) = charge_and_refund(
        over_mutual_tls(app.grpc, ORDERS, impostor, PAYMENTS),
        &payment,
    )
    .await;
    assert!(
        matches!(charged, Err(code) if code != Code::PermissionDenied),
        "{charged:?}"
    );
    let handshake = audited(&app.events, "the refused handshake", |record| {
        record.action == Action::TokenRejected
            && record.target.as_deref() == Some("grpc:tls-handshake")
    })
    .await;
    assert_eq!(handshake.reason.as_deref(), Some("invalid"));

    // Health probes over TLS need no certificate.
    assert!(serving(pki.without_certificate(app.grpc, PAYMENTS), "").await);
}

platform_testing::backend_tests!(
    only_the_order_service_may_charge_or_refund,
    over_mutual_tls_the_certificate_names_the_caller,
);
