//! Placing orders: the happy path, declines, a payment service that is down, and bad input.

use std::time::Duration;

use platform_auth::Role;
use platform_testing::Backend;
use serde_json::json;

use platform_testing::grpc::Pki;

use crate::helpers::{
    actor, error_fields, new_key, order_body, problem, spawn_app, spawn_over_mutual_tls, spawn_with,
};

async fn an_order_is_priced_reserved_charged_and_confirmed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mug = app.new_product("Mug", 1250, 5).await;
    let tea = app.new_product("Tea", 499, 10).await;

    // The client's idea of a price is not asked for, and would be refused.
    let mut forged = order_body(&[(&mug, 1)], "tok_visa");
    forged["items"][0]["unit_price"] = json!(1);
    let refused = problem(
        app.place_raw(&app.user, Some(&new_key()), &forged).await,
        422,
    )
    .await;
    assert!(refused["detail"].as_str().is_some() || refused["errors"].is_object());

    let order = app
        .place(
            &app.user,
            &order_body(&[(&mug, 2), (&tea, 1), (&mug, 1)], "tok_visa"),
        )
        .await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["user_id"], app.user.id.to_string());
    assert_eq!(
        order["total"],
        json!({"amount": 3 * 1250 + 499, "currency": "EUR"})
    );
    let items = order["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "repeated products are one line: {order}");
    let mug_line = items
        .iter()
        .find(|i| i["product_id"] == mug.as_str())
        .unwrap();
    assert_eq!(mug_line["name"], "Mug");
    assert_eq!(mug_line["quantity"], 3);
    assert_eq!(mug_line["unit_price"]["amount"], 1250);
    assert_eq!(mug_line["line_total"]["amount"], 3750);
    assert!(order["failure_reason"].is_null());
    assert_eq!(order["shipping_address"]["country"], "GB");

    // Stock was sold, not just held.
    assert_eq!(app.stock(&mug).await, (2, 0, 2));
    assert_eq!(app.stock(&tea).await, (9, 0, 9));
    let id = order["id"].as_str().unwrap();
    let payments = app.payments_for(id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "captured");
    assert_eq!(payments[0]["amount"]["amount"], 3 * 1250 + 499);
    assert_eq!(order["payment_id"], payments[0]["id"]);

    // Readable by its owner and administrators only; listed for its owner.
    assert_eq!(app.order(&app.user, id).await["status"], "confirmed");
    assert_eq!(app.order(&app.admin, id).await["id"], id);
    let stranger = actor(Role::User);
    problem(
        app.get(&stranger, &format!("/api/v1/orders/{id}")).await,
        404,
    )
    .await;
    let mine = crate::helpers::json_of(app.get(&app.user, "/api/v1/orders").await, 200).await;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["id"], id);
    let theirs = crate::helpers::json_of(app.get(&stranger, "/api/v1/orders").await, 200).await;
    assert_eq!(theirs["total"], 0);
    let confirmed = crate::helpers::json_of(
        app.get(&app.admin, "/api/v1/orders?status=confirmed").await,
        200,
    )
    .await;
    assert_eq!(confirmed["total"], 1);
    let failed = crate::helpers::json_of(
        app.get(&app.admin, "/api/v1/orders?status=failed").await,
        200,
    )
    .await;
    assert_eq!(failed["total"], 0);
    problem(app.get(&app.admin, "/api/v1/orders?status=lost").await, 422).await;
}

async fn a_declined_card_fails_the_order_and_releases_the_stock(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mug = app.new_product("Mug", 1250, 5).await;
    let order = app
        .place(&app.user, &order_body(&[(&mug, 4)], "tok_decline"))
        .await;
    assert_eq!(order["status"], "failed", "{order}");
    let reason = order["failure_reason"].as_str().unwrap();
    assert!(reason.contains("declined"), "{reason}");
    assert_eq!(
        app.stock(&mug).await,
        (5, 0, 5),
        "the reservation was released"
    );
    let payments = app.payments_for(order["id"].as_str().unwrap()).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "failed", "nothing was taken");
    assert_eq!(order["refunded"], 0);

    // Out of stock fails the order too, holding nothing and charging nothing.
    let greedy = app
        .place(&app.user, &order_body(&[(&mug, 6)], "tok_visa"))
        .await;
    assert_eq!(greedy["status"], "failed");
    assert!(
        greedy["failure_reason"]
            .as_str()
            .unwrap()
            .contains("out of stock"),
        "{greedy}"
    );
    assert_eq!(app.stock(&mug).await, (5, 0, 5));
    assert!(
        app.payments_for(greedy["id"].as_str().unwrap())
            .await
            .is_empty()
    );
}

async fn a_payment_service_that_is_down_opens_the_breaker_and_charges_nothing(backend: Backend) {
    // Nothing listens on this port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let Some(app) = spawn_with(backend, |config| {
        config.clients.payment_url = dead_url.clone();
    })
    .await
    else {
        return;
    };
    let mug = app.new_product("Mug", 1250, 10).await;
    for round in 0..3 {
        let started = std::time::Instant::now();
        let order = app
            .place(&app.user, &order_body(&[(&mug, 2)], "tok_visa"))
            .await;
        assert_eq!(order["status"], "failed", "{order}");
        let reason = order["failure_reason"].as_str().unwrap();
        assert!(
            reason.contains("payment-service is unavailable")
                && reason.contains("nothing was charged"),
            "round {round}: {reason}"
        );
        assert_eq!(app.stock(&mug).await, (10, 0, 10), "stock released");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "failing is quick"
        );
    }
    let metrics = app.metrics().await;
    let state = metrics
        .lines()
        .find(|l| l.starts_with("circuit_breaker_state{") && l.contains("payment-service"))
        .unwrap_or_default();
    assert!(state.ends_with(" 1"), "the breaker is open: {state:?}");
    let open = app
        .place(&app.user, &order_body(&[(&mug, 1)], "tok_visa"))
        .await;
    assert!(
        open["failure_reason"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{open}"
    );
    assert_eq!(app.payment_count().await, 0);
}

async fn bad_orders_are_refused_with_the_field_named(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mug = app.new_product("Mug", 1250, 5).await;
    let cases = [
        (order_body(&[], "tok_visa"), vec!["items"]),
        (
            order_body(&[(&mug, 0)], "tok_visa"),
            vec!["items[0].quantity"],
        ),
        (
            order_body(&[(&mug, 1001)], "tok_visa"),
            vec!["items[0].quantity"],
        ),
        (
            order_body(&[(&mug, -1)], "tok_visa"),
            vec!["items[0].quantity"],
        ),
        (
            order_body(&[(&mug, 600), (&mug, 600)], "tok_visa"),
            vec!["items"],
        ),
        (
            order_body(&[(&mug, 1)], "4242424242424242"),
            vec!["payment.token"],
        ),
    ];
    for (body, fields) in cases {
        let refused = problem(app.place_raw(&app.user, Some(&new_key()), &body).await, 422).await;
        assert_eq!(error_fields(&refused), fields, "{body}");
    }
    let mut no_address = order_body(&[(&mug, 1)], "tok_visa");
    no_address["shipping_address"]["country"] = json!("Britain");
    no_address["shipping_address"]["line1"] = json!(" ");
    let refused = problem(
        app.place_raw(&app.user, Some(&new_key()), &no_address)
            .await,
        422,
    )
    .await;
    assert_eq!(
        error_fields(&refused),
        ["shipping_address.country", "shipping_address.line1"]
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    let refused = problem(
        app.place_raw(
            &app.user,
            Some(&new_key()),
            &order_body(&[(&unknown, 1)], "tok_visa"),
        )
        .await,
        422,
    )
    .await;
    assert!(
        refused["errors"]["items"][0]
            .as_str()
            .unwrap()
            .contains(&unknown)
    );

    // No key, no token, not JSON.
    problem(
        app.place_raw(&app.user, None, &order_body(&[(&mug, 1)], "tok_visa"))
            .await,
        400,
    )
    .await;
    let anonymous = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("Idempotency-Key", new_key())
        .json(&order_body(&[(&mug, 1)], "tok_visa"))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
    let garbage = app
        .client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&app.user.token)
        .header("Idempotency-Key", new_key())
        .header("content-type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    problem(garbage, 400).await;
    problem(app.get(&app.user, "/api/v1/orders/not-a-uuid").await, 400).await;

    assert_eq!(app.stock(&mug).await, (5, 0, 5));
    assert_eq!(app.payment_count().await, 0);
}

async fn checkout_works_over_mutual_tls_with_the_order_services_certificate(backend: Backend) {
    let pki = Pki::new();
    let Some(app) = spawn_over_mutual_tls(backend, &pki).await else {
        return;
    };
    let mug = app.new_product("Mug", 1250, 5).await;
    let order = app
        .place(&app.user, &order_body(&[(&mug, 2)], "tok_visa"))
        .await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(app.stock(&mug).await, (3, 0, 3));
    let id = order["id"].as_str().unwrap();
    let cancelled = crate::helpers::json_of(app.cancel(&app.user, id).await, 200).await;
    assert_eq!(cancelled["refunded"], 2500, "refunded over mutual TLS too");
    assert_eq!(app.stock(&mug).await, (5, 0, 5));
}

platform_testing::backend_tests!(
    checkout_works_over_mutual_tls_with_the_order_services_certificate,
    an_order_is_priced_reserved_charged_and_confirmed,
    a_declined_card_fails_the_order_and_releases_the_stock,
    a_payment_service_that_is_down_opens_the_breaker_and_charges_nothing,
    bad_orders_are_refused_with_the_field_named,
);
