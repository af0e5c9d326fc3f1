//! Money taken for an order after it ended is given back: a payment captured for a `failed`
//! or `cancelled` order is refunded automatically (and audited), once. The reconciler finds
//! what still disagrees between orders and payments (corrupted here on purpose), repairs what
//! it safely can and reports the rest.

use std::time::Duration;

use platform_proto::payment::v1::payment_service_client::PaymentServiceClient;
use platform_proto::payment::v1::{ChargeRequest, Money};
use platform_testing::Backend;
use serde_json::{Value, json};

use order_service::domain::OrderStatus;
use order_service::repo::entities::order;
use payment_service::repo::entities::payment;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};

use crate::helpers::{json_of, new_key, order_body, settle, spawn_app};

async fn a_capture_for_an_order_that_ended_is_refunded_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    // Out of stock: the checkout never charged it.
    let order = app
        .place(&app.user, &order_body(&[(&mug, 20)], "tok_visa"))
        .await;
    assert_eq!(order["status"], "failed", "{order}");
    let id = order["id"].as_str().unwrap();
    assert!(app.payments_for(id).await.is_empty());

    // A charge for it is captured anyway: a charge whose answer came after the order gave up
    // on it (a direct charge cannot name an order: the payment service checks).
    let paid = PaymentServiceClient::new(app.payment_grpc())
        .charge(ChargeRequest {
            order_id: id.to_owned(),
            user_id: app.user.id.to_string(),
            amount: Some(Money {
                amount: 25000,
                currency: "EUR".to_owned(),
            }),
            token: "tok_visa".to_owned(),
            idempotency_key: new_key(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.status, "captured");
    let paid_id = paid.id;

    let mut refunded = Value::Null;
    for _ in 0..100 {
        refunded = app
            .payments_for(id)
            .await
            .into_iter()
            .find(|p| p["id"] == paid_id)
            .unwrap();
        if refunded["status"] == "refunded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert_eq!(refunded["refunded_amount"], 25000);
    // Once: later deliveries of the capture do not refund again (nothing is left anyway),
    // and the order stays failed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.order(&app.user, id).await["status"], "failed");
}

async fn a_capture_for_a_live_order_is_left_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let order = app
        .place(&app.user, &order_body(&[(&mug, 1)], "tok_visa"))
        .await;
    assert_eq!(order["status"], "confirmed");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let payments = app.payments_for(order["id"].as_str().unwrap()).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "captured", "{payments:?}");
}

/// Writes `change` into order `id`'s row, behind the service's back (a lost write, a bug).
async fn corrupt_order(
    app: &crate::helpers::TestApp,
    id: &str,
    change: impl FnOnce(&mut order::ActiveModel),
) {
    let db = platform_db::connect(&app.db.config, "order-service")
        .await
        .unwrap();
    let mut row: order::ActiveModel = order::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .into();
    change(&mut row);
    row.update(&db).await.unwrap();
    db.close().await.unwrap();
}

/// Writes `change` into payment `id`'s row at the payment service.
async fn corrupt_payment(
    app: &crate::helpers::TestApp,
    id: &str,
    change: impl FnOnce(&mut payment::ActiveModel),
) {
    let db = platform_db::connect(&app.payment_db.config, "payment-service")
        .await
        .unwrap();
    let mut row: payment::ActiveModel =
        payment::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
            .one(&db)
            .await
            .unwrap()
            .unwrap()
            .into();
    change(&mut row);
    row.update(&db).await.unwrap();
    db.close().await.unwrap();
}

async fn reconcile(app: &crate::helpers::TestApp) -> Value {
    let response = app
        .post("/api/v1/admin/orders/reconciliation")
        .by(&app.admin)
        .await;
    json_of(response, 200).await
}

fn kinds(report: &Value) -> Vec<(String, bool)> {
    let mut kinds: Vec<(String, bool)> = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().to_owned(),
                m["repaired"].as_bool().unwrap(),
            )
        })
        .collect();
    kinds.sort();
    kinds
}

async fn the_reconciler_repairs_what_it_can_and_reports_the_rest(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let place = |token: &'static str| {
        let app = &app;
        let mug = mug.clone();
        async move {
            let order = app.place(&app.user, &order_body(&[(&mug, 1)], token)).await;
            assert_eq!(order["status"], "confirmed", "{order}");
            order
        }
    };
    // Clean state first: nothing to report.
    let fine = place("tok_visa").await;
    let clean = reconcile(&app).await;
    assert_eq!(clean["mismatches"], json!([]), "{clean}");
    assert!(clean["orders_checked"].as_u64().unwrap() >= 1);
    // Non-admins may not look.
    let response = app
        .get("/api/v1/admin/orders/reconciliation")
        .by(&app.user)
        .await;
    assert_eq!(response.status(), 403);

    let cancelled = place("tok_visa").await;
    let cancelled_id = cancelled["id"].as_str().unwrap();
    let failed = place("tok_visa").await;
    let failed_id = failed["id"].as_str().unwrap();
    let unpaid = place("tok_visa").await;
    assert!(
        [200, 202].contains(
            &app.cancel(cancelled_id)
                .by(&app.user)
                .await
                .status()
                .as_u16()
        )
    );
    assert_eq!(settle(&app, cancelled_id).await["refunded"], 1250);
    // The payment events of these orders are consumed before the state is corrupted (a
    // capture for an order that has ended is refunded by the consumer, not the reconciler).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 1. A cancelled order that forgot its refund: the payment says 1250 came back.
    corrupt_order(&app, cancelled_id, |row| row.refunded = Set(0)).await;
    // 2. A failed order whose compensation never refunded: captured, nothing given back.
    corrupt_order(&app, failed_id, |row| row.status = Set(OrderStatus::Failed)).await;
    // 3. A confirmed order whose payment is not captured: nothing safe to do but report.
    corrupt_payment(&app, unpaid["payment_id"].as_str().unwrap(), |row| {
        row.status = Set(payment_service::domain::PaymentStatus::Failed);
    })
    .await;

    let report = reconcile(&app).await;
    assert_eq!(
        kinds(&report),
        [
            ("confirmed_not_paid".to_owned(), false),
            ("refund_missing".to_owned(), true),
            ("refund_not_recorded".to_owned(), true),
            ("refund_not_recorded".to_owned(), true),
        ],
        "{report}"
    );
    assert_eq!(app.order(&app.user, cancelled_id).await["refunded"], 1250);
    let repaired = app.order(&app.user, failed_id).await;
    assert_eq!(repaired["refunded"], 1250, "{repaired}");
    let payment = app.payments_for(failed_id).await.remove(0);
    assert_eq!(payment["status"], "refunded", "{payment}");
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sum(
            "reconciliation_mismatches",
            &[("service", "order-service"), ("kind", "confirmed_not_paid")]
        ),
        1.0,
        "{}",
        metrics.text()
    );

    // The next pass finds only what could not be repaired; the report is kept.
    let again = reconcile(&app).await;
    assert_eq!(
        kinds(&again),
        [("confirmed_not_paid".to_owned(), false)],
        "{again}"
    );
    let kept = app
        .get("/api/v1/admin/orders/reconciliation")
        .by(&app.admin)
        .await;
    assert_eq!(json_of(kept, 200).await, again);
    assert_eq!(
        app.order(&app.user, fine["id"].as_str().unwrap()).await["refunded"],
        0
    );
}

platform_testing::backend_tests!(
    a_capture_for_an_order_that_ended_is_refunded_once,
    a_capture_for_a_live_order_is_left_alone,
    the_reconciler_repairs_what_it_can_and_reports_the_rest,
);
