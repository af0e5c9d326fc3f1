//! Placing orders: the happy path, declines, a payment service that is down, and bad input.

use std::time::Duration;

use platform_auth::Role;
use platform_testing::Backend;
use serde_json::json;

use platform_testing::grpc::Pki;

use crate::helpers::{
    actor, error_fields, new_key, order_body, place_running, problem, settle, spawn_app,
    spawn_over_mutual_tls, spawn_with,
};

async fn an_order_is_priced_reserved_charged_and_confirmed(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 5).await;
    let tea = app.new_product("Tea", 499, 10).await;

    // The client's idea of a price is not asked for, and would be refused.
    let mut forged = order_body(&[(&mug, 1)], "tok_visa");
    forged["items"][0]["unit_price"] = json!(1);
    let refused = problem(
        app.post_order(&new_key()).by(&app.user).json(&forged).await,
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

    // The checkout's answer is the order as stored (it is built from what the saga wrote,
    // not read back); readable by its owner and administrators only; listed for its owner.
    assert_eq!(app.order(&app.user, id).await, order);
    assert_eq!(app.order(&app.admin, id).await["id"], id);
    let stranger = actor(Role::User);
    problem(
        app.get(&format!("/api/v1/orders/{id}")).by(&stranger).await,
        404,
    )
    .await;
    let mine = crate::helpers::json_of(app.get("/api/v1/orders").by(&app.user).await, 200).await;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["id"], id);
    let theirs = crate::helpers::json_of(app.get("/api/v1/orders").by(&stranger).await, 200).await;
    assert_eq!(theirs["total"], 0);
    let confirmed = crate::helpers::json_of(
        app.get("/api/v1/orders?status=confirmed")
            .by(&app.admin)
            .await,
        200,
    )
    .await;
    assert_eq!(confirmed["total"], 1);
    let failed = crate::helpers::json_of(
        app.get("/api/v1/orders?status=failed").by(&app.admin).await,
        200,
    )
    .await;
    assert_eq!(failed["total"], 0);
    problem(
        app.get("/api/v1/orders?status=lost").by(&app.admin).await,
        422,
    )
    .await;
}

async fn a_declined_card_fails_the_order_and_releases_the_stock(backend: Backend) {
    let app = spawn_app(backend).await;
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

async fn a_payment_service_that_stays_down_fails_the_order_at_its_deadline_charging_nothing(
    backend: Backend,
) {
    // Nothing listens on the discard port. (A port bound and dropped here could be taken by
    // another test's listener before the saga calls it.)
    let dead_url = "http://127.0.0.1:9".to_owned();
    let deadline = Duration::from_secs(2);
    let app = spawn_with(backend, |config| {
        config.clients.payment_url = dead_url.clone();
        config.saga.deadline = deadline;
    })
    .await;
    let mug = app.new_product("Mug", 1250, 10).await;
    for round in 0..2 {
        let started = std::time::Instant::now();
        // Accepted (202) while it waits for the payment service.
        let id = place_running(&app, &mug, 2, "tok_visa").await;
        let order = settle(&app, &id).await;
        assert_eq!(order["status"], "failed", "{order}");
        let reason = order["failure_reason"].as_str().unwrap();
        assert!(
            reason.contains("did not complete in time") && reason.contains("nothing was charged"),
            "round {round}: {reason}"
        );
        assert_eq!(app.stock(&mug).await, (10, 0, 10), "stock released");
        // It waited for the service to come back, until the deadline and not much longer.
        let took = started.elapsed();
        assert!(took >= deadline, "round {round}: gave up after {took:?}");
        assert!(
            took < deadline + Duration::from_secs(5),
            "round {round}: {took:?}"
        );
    }
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.sum("circuit_breaker_state", &[("upstream", "payment-service")]),
        1.0,
        "the breaker is open: {}",
        metrics.text()
    );
    assert_eq!(app.payment_count().await, 0);
}

/// The payment's answer is lost after the money was taken (`tok_timeout`): the saga waits,
/// the payment service asks the same provider again, and the order is confirmed with one
/// capture.
async fn a_lost_payment_answer_is_waited_for_and_the_order_confirmed(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let id = &place_running(&app, &mug, 1, "tok_timeout").await;
    let order = settle(&app, id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let payments = app.payments_for(id).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["status"], "captured");
    assert_eq!(app.stock(&mug).await, (9, 0, 9));
}

/// The provider never answers (`tok_no_answer`) and captures after the checkout's deadline:
/// compensation waits for the answer, refunds the late capture, and the order fails saying so.
async fn a_capture_after_the_deadline_is_refunded_and_the_order_failed(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.saga.deadline = Duration::from_secs(2);
    })
    .await;
    let mug = app.new_product("Mug", 1250, 10).await;
    let id = place_running(&app, &mug, 2, "tok_no_answer").await;
    // Past the deadline compensation starts: the stock goes back, but the order cannot end
    // while the charge's outcome is not known.
    for _ in 0..150 {
        if app.stock(&mug).await == (10, 0, 10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = app.order(&app.user, &id).await;
    assert!(
        !["failed", "cancelled", "confirmed"].contains(&waiting["status"].as_str().unwrap()),
        "must not end before the charge is settled: {waiting}"
    );
    assert_eq!(
        app.stock(&mug).await,
        (10, 0, 10),
        "stock given back already"
    );

    // The provider's webhook: captured, naming our payment id.
    let payment = app.payments_for(&id).await.remove(0);
    assert_eq!(payment["status"], "unknown");
    let delivered = app
        .sandbox_webhook(json!({
            "type": "payment.captured",
            "payment_id": "sbx_captured_late",
            "reference": payment["id"],
        }))
        .await;
    assert_eq!(delivered.status(), 200);

    let order = settle(&app, &id).await;
    assert_eq!(order["status"], "failed", "{order}");
    assert_eq!(order["refunded"], 2500, "{order}");
    assert!(
        order["failure_reason"]
            .as_str()
            .unwrap()
            .contains("did not complete in time"),
        "{order}"
    );
    let payment = app.payments_for(&id).await.remove(0);
    assert_eq!(payment["status"], "refunded", "{payment}");
}

/// Forwards connections on `listener` to `target` once `open` is set; until then the port is
/// closed (connections refused), as while a service restarts.
async fn gate(port: u16, target: String, opens_after: Duration) {
    tokio::time::sleep(opens_after).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

async fn a_payment_service_restarted_within_the_deadline_confirms_the_order(backend: Backend) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut real = String::new();
    let app = spawn_with(backend, |config| {
        real = config
            .clients
            .payment_url
            .trim_start_matches("http://")
            .to_owned();
        config.clients.payment_url = format!("http://127.0.0.1:{port}");
    })
    .await;
    let mug = app.new_product("Mug", 1250, 10).await;
    // Down for 3 s: refused connections, then the breaker opens; the saga waits it out.
    let gate = tokio::spawn(gate(port, real, Duration::from_secs(3)));
    let id = &place_running(&app, &mug, 2, "tok_visa").await;
    let settled = settle(&app, id).await;
    assert_eq!(settled["status"], "confirmed", "{settled}");
    assert_eq!(app.stock(&mug).await, (8, 0, 8));
    assert_eq!(app.payment_count().await, 1, "charged once");
    gate.abort();
}

async fn bad_orders_are_refused_with_the_field_named(backend: Backend) {
    let app = spawn_app(backend).await;
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
        let refused = problem(
            app.post_order(&new_key()).by(&app.user).json(&body).await,
            422,
        )
        .await;
        assert_eq!(error_fields(&refused), fields, "{body}");
    }
    let mut no_address = order_body(&[(&mug, 1)], "tok_visa");
    no_address["shipping_address"]["country"] = json!("Britain");
    no_address["shipping_address"]["line1"] = json!(" ");
    let refused = problem(
        app.post_order(&new_key())
            .by(&app.user)
            .json(&no_address)
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
        app.post_order(&new_key())
            .by(&app.user)
            .json(&order_body(&[(&unknown, 1)], "tok_visa"))
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
        app.post("/api/v1/orders")
            .by(&app.user)
            .json(&order_body(&[(&mug, 1)], "tok_visa"))
            .await,
        400,
    )
    .await;
    let anonymous = app
        .post_order(&new_key())
        .json(&order_body(&[(&mug, 1)], "tok_visa"))
        .await;
    problem(anonymous, 401).await;
    let garbage = app
        .post_order(&new_key())
        .by(&app.user)
        .header("content-type", "application/json")
        .body("{\"items\": [")
        .await;
    problem(garbage, 400).await;
    problem(
        app.get("/api/v1/orders/not-a-uuid").by(&app.user).await,
        400,
    )
    .await;

    assert_eq!(app.stock(&mug).await, (5, 0, 5));
    assert_eq!(app.payment_count().await, 0);
}

async fn checkout_works_over_mutual_tls_with_the_order_services_certificate(backend: Backend) {
    let pki = Pki::new();
    let app = spawn_over_mutual_tls(backend, &pki).await;
    let mug = app.new_product("Mug", 1250, 5).await;
    let order = app
        .place(&app.user, &order_body(&[(&mug, 2)], "tok_visa"))
        .await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(app.stock(&mug).await, (3, 0, 3));
    let id = order["id"].as_str().unwrap();
    let cancelled = crate::helpers::json_of(app.cancel(id).by(&app.user).await, 200).await;
    assert_eq!(cancelled["refunded"], 2500, "refunded over mutual TLS too");
    assert_eq!(app.stock(&mug).await, (5, 0, 5));
}

platform_testing::backend_tests!(
    checkout_works_over_mutual_tls_with_the_order_services_certificate,
    an_order_is_priced_reserved_charged_and_confirmed,
    a_declined_card_fails_the_order_and_releases_the_stock,
    a_payment_service_that_stays_down_fails_the_order_at_its_deadline_charging_nothing,
    a_payment_service_restarted_within_the_deadline_confirms_the_order,
    a_lost_payment_answer_is_waited_for_and_the_order_confirmed,
    a_capture_after_the_deadline_is_refunded_and_the_order_failed,
    bad_orders_are_refused_with_the_field_named,
);
