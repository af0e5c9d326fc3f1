//! After checkout: shipping and delivery by administrators, cancellation with restock and
//! refund, refunds made elsewhere, and who may see or touch which order.

use std::time::Duration;

use platform_auth::Role;
use platform_http::audit::{Action, Actor};
use platform_testing::Backend;
use platform_testing::grpc::audited;
use serde_json::json;

use crate::helpers::{actor, eventually, json_of, order_body, problem, spawn_app};

async fn cancelling_a_confirmed_order_restocks_and_refunds(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 5).await;
    let order = app
        .place(&app.user, &order_body(&[(&mug, 3)], "tok_visa"))
        .await;
    assert_eq!(order["status"], "confirmed");
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.stock(&mug).await, (2, 0, 2));

    let cancelled = json_of(app.cancel(id).by(&app.user).await, 200).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["refunded"], 3750);
    assert!(cancelled["failure_reason"].is_null());
    assert_eq!(app.stock(&mug).await, (5, 0, 5), "the units are back");
    let payments = app.payments_for(id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "refunded");
    assert_eq!(payments[0]["refunded_amount"], 3750);

    // Twice is harmless; nothing moves again.
    let again = json_of(app.cancel(id).by(&app.user).await, 200).await;
    assert_eq!(again["status"], "cancelled");
    assert_eq!(app.stock(&mug).await, (5, 0, 5));
    assert_eq!(app.payments_for(id).await[0]["refunded_amount"], 3750);
    // A cancelled order goes nowhere.
    let refused = problem(app.set_status(id, "shipped").by(&app.admin).await, 409).await;
    assert!(refused["detail"].as_str().unwrap().contains("cancelled"));
}

async fn administrators_ship_and_deliver_along_the_allowed_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 5).await;
    let id = app
        .place(&app.user, &order_body(&[(&mug, 1)], "tok_visa"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    problem(app.set_status(&id, "shipped").by(&app.user).await, 403).await;
    let early = problem(app.set_status(&id, "delivered").by(&app.admin).await, 409).await;
    assert!(
        early["detail"].as_str().unwrap().contains("confirmed"),
        "names the current status: {early}"
    );
    for by_saga in ["pending", "confirmed", "failed", "cancelled"] {
        problem(app.set_status(&id, by_saga).by(&app.admin).await, 409).await;
    }
    problem(app.set_status(&id, "teleported").by(&app.admin).await, 422).await;

    let shipped = json_of(app.set_status(&id, "shipped").by(&app.admin).await, 200).await;
    assert_eq!(shipped["status"], "shipped");
    // Shipped orders can no longer be cancelled, by anyone.
    let late = problem(app.cancel(&id).by(&app.user).await, 409).await;
    assert!(late["detail"].as_str().unwrap().contains("shipped"));
    problem(app.cancel(&id).by(&app.admin).await, 409).await;
    let delivered = json_of(app.set_status(&id, "delivered").by(&app.admin).await, 200).await;
    assert_eq!(delivered["status"], "delivered");
    let back = problem(app.set_status(&id, "shipped").by(&app.admin).await, 409).await;
    assert!(back["detail"].as_str().unwrap().contains("delivered"));
    problem(
        app.set_status(&uuid::Uuid::now_v7().to_string(), "shipped")
            .by(&app.admin)
            .await,
        404,
    )
    .await;
    assert_eq!(app.order(&app.user, &id).await["status"], "delivered");
}

async fn other_users_orders_do_not_exist_for_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 5).await;
    let id = app
        .place(&app.user, &order_body(&[(&mug, 1)], "tok_visa"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stranger = actor(Role::User);
    problem(
        app.get(&format!("/api/v1/orders/{id}")).by(&stranger).await,
        404,
    )
    .await;
    problem(app.cancel(&id).by(&stranger).await, 404).await;
    assert_eq!(app.order(&app.user, &id).await["status"], "confirmed");
    // An administrator may cancel anyone's order.
    let cancelled = json_of(app.cancel(&id).by(&app.admin).await, 200).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["user_id"], app.user.id.to_string());
}

async fn refunds_made_at_the_provider_reach_the_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1000, 5).await;
    let order = app
        .place(&app.user, &order_body(&[(&mug, 2)], "tok_visa"))
        .await;
    let id = order["id"].as_str().unwrap().to_owned();
    let payment = app.payments_for(&id).await.remove(0);
    // Refunded at the provider's dashboard: its signed webhook reaches the payment service.
    let response = app
        .sandbox_webhook(json!({
            "type": "payment.refunded",
            "payment_id": payment["provider_payment_id"],
            "amount": {"amount": 500, "currency": "EUR"},
        }))
        .await;
    json_of(response, 200).await;
    eventually(
        "the refund to reach the order",
        Duration::from_secs(10),
        || async { app.order(&app.user, &id).await["refunded"] == 500 },
    )
    .await;
    assert_eq!(app.order(&app.user, &id).await["status"], "confirmed");
}

async fn every_change_is_announced_through_the_outbox(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1000, 10).await;
    let delivered = app
        .place(&app.user, &order_body(&[(&mug, 1)], "tok_visa"))
        .await;
    let delivered_id = delivered["id"].as_str().unwrap();
    json_of(
        app.set_status(delivered_id, "shipped").by(&app.admin).await,
        200,
    )
    .await;
    json_of(
        app.set_status(delivered_id, "delivered")
            .by(&app.admin)
            .await,
        200,
    )
    .await;
    let failed = app
        .place(&app.user, &order_body(&[(&mug, 1)], "tok_decline"))
        .await;
    let cancelled = app
        .place(&app.user, &order_body(&[(&mug, 2)], "tok_visa"))
        .await;
    json_of(
        app.cancel(cancelled["id"].as_str().unwrap())
            .by(&app.user)
            .await,
        200,
    )
    .await;

    let outbox = app.outbox().await;
    let of = |order: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        outbox
            .iter()
            .filter(|(_, subject, _)| subject == order["id"].as_str().unwrap())
            .map(|(kind, _, data)| (kind.clone(), data.clone()))
            .collect()
    };
    let types = |order: &serde_json::Value| -> Vec<String> {
        of(order).into_iter().map(|(kind, _)| kind).collect()
    };
    assert_eq!(
        types(&delivered),
        [
            "order.created",
            "order.confirmed",
            "order.shipped",
            "order.delivered"
        ]
    );
    assert_eq!(types(&failed), ["order.created", "order.failed"]);
    assert_eq!(
        types(&cancelled),
        ["order.created", "order.confirmed", "order.cancelled"]
    );
    let created = &of(&delivered)[0].1;
    assert_eq!(created["user_id"], app.user.id.to_string());
    assert_eq!(created["total"], 1000);
    assert_eq!(created["currency"], "EUR");
    assert_eq!(created["items"][0]["name"], "Mug");
    assert_eq!(of(&delivered)[1].1["payment_id"], delivered["payment_id"]);
    assert!(
        of(&failed)[1].1["reason"]
            .as_str()
            .unwrap()
            .contains("declined")
    );
    assert_eq!(of(&cancelled)[2].1["refunded"], 2000);
}

async fn status_changes_by_administrators_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 5).await;
    let body = order_body(&[(&mug, 1)], "tok_visa");
    let place = || app.place(&app.user, &body);
    let shipped = place().await["id"].as_str().unwrap().to_owned();
    let cancelled = place().await["id"].as_str().unwrap().to_owned();
    let own = place().await["id"].as_str().unwrap().to_owned();
    json_of(
        app.set_status(&shipped, "shipped").by(&app.admin).await,
        200,
    )
    .await;
    json_of(
        app.set_status(&shipped, "delivered").by(&app.admin).await,
        200,
    )
    .await;
    json_of(app.cancel(&cancelled).by(&app.admin).await, 200).await;
    json_of(app.cancel(&own).by(&app.user).await, 200).await;

    for (order, to) in [
        (&shipped, "shipped"),
        (&shipped, "delivered"),
        (&cancelled, "cancelled"),
    ] {
        let target = format!("order:{order}");
        let record = audited(&app.config.events, to, |record| {
            record.action == Action::OrderStatusChange
                && record.target.as_deref() == Some(&target)
                && record.reason.as_deref() == Some(to)
        })
        .await;
        assert_eq!(record.actor, Some(Actor::User(app.admin.id)), "{to}");
        assert_eq!(record.service, "order-service");
        assert!(record.client_ip.is_some() && record.request_id.is_some());
    }
    // The owner cancelling their own order is no administrative act.
    let records = platform_testing::grpc::audit_records(&app.config.events).await;
    let own = format!("order:{own}");
    assert!(
        records
            .iter()
            .all(|r| r.target.as_deref() != Some(own.as_str())),
        "{records:?}"
    );
}

platform_testing::backend_tests!(
    status_changes_by_administrators_are_audited,
    every_change_is_announced_through_the_outbox,
    cancelling_a_confirmed_order_restocks_and_refunds,
    administrators_ship_and_deliver_along_the_allowed_path,
    other_users_orders_do_not_exist_for_them,
    refunds_made_at_the_provider_reach_the_order,
);
