//! Payments belong to orders: a direct charge (`POST /api/v1/payments`) that names an order is
//! checked with the order service over gRPC. An order is paid by its checkout, so such a
//! charge never goes through: 422 when it does not match the order (or the order is somebody
//! else's), 409 when it does. An id the order service does not know is only the charge's
//! reference.

use std::sync::atomic::Ordering;

use platform_testing::Backend;

use crate::helpers::{charge_body, json_of, new_key, problem, spawn_app, spawn_with};

async fn a_charge_that_does_not_match_its_order_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let order = app.orders.place(app.user.id, 2500, "EUR");
    for (amount, currency) in [(100, "EUR"), (2500, "USD"), (2501, "EUR")] {
        let response = app
            .charge_order(order, amount, currency)
            .by(&app.user)
            .await;
        let refused = problem(response, 422).await;
        let detail = refused.to_string();
        assert!(
            detail.contains("does not match") && detail.contains("2500 EUR"),
            "{amount} {currency}: {refused}"
        );
    }
    assert_eq!(
        app.list(&app.admin, &[]).await["total"],
        0,
        "nothing was charged"
    );
}

async fn a_charge_matching_its_order_is_left_to_the_checkout(backend: Backend) {
    let app = spawn_app(backend).await;
    let order = app.orders.place(app.user.id, 2500, "EUR");
    let response = app.charge_order(order, 2500, "EUR").by(&app.user).await;
    let refused = problem(response, 409).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("paid by its checkout"),
        "{refused}"
    );
    assert_eq!(app.list(&app.admin, &[]).await["total"], 0);
}

async fn somebody_elses_order_is_refused_without_telling_its_total(backend: Backend) {
    let app = spawn_app(backend).await;
    let theirs = app.orders.place(app.admin.id, 2500, "EUR");
    // The right amount and a wrong one get the same answer: trying amounts tells nothing.
    for amount in [2500, 100] {
        let response = app.charge_order(theirs, amount, "EUR").by(&app.user).await;
        let refused = problem(response, 422).await;
        let text = refused.to_string();
        assert!(text.contains("order_id"), "{refused}");
        assert!(!text.contains("2500"), "the total leaked: {refused}");
    }
    assert_eq!(app.list(&app.admin, &[]).await["total"], 0);
}

async fn an_id_that_is_no_order_is_a_direct_charge(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = charge_body("tok_visa", 700, "EUR");
    let response = app.post_charge(&new_key()).by(&app.user).json(&body).await;
    let paid = json_of(response, 201).await;
    assert_eq!(paid["status"], "captured", "{paid}");
    assert_eq!(paid["order_id"], body["order_id"]);
    assert_eq!(
        app.orders.asked.load(Ordering::Relaxed),
        1,
        "the order service was asked"
    );
}

async fn no_order_service_means_no_direct_charge(backend: Backend) {
    // Nothing listens on the discard port.
    let app = spawn_with(backend, |config| {
        config.order_url = "http://127.0.0.1:9".to_owned();
    })
    .await;
    let response = app
        .post_charge(&new_key())
        .by(&app.user)
        .json(&charge_body("tok_visa", 700, "EUR"))
        .await;
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let refused = problem(response, 503).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was charged"),
        "{refused}"
    );
    assert_eq!(app.list(&app.admin, &[]).await["total"], 0);
}

platform_testing::backend_tests!(
    a_charge_that_does_not_match_its_order_is_refused,
    a_charge_matching_its_order_is_left_to_the_checkout,
    somebody_elses_order_is_refused_without_telling_its_total,
    an_id_that_is_no_order_is_a_direct_charge,
    no_order_service_means_no_direct_charge,
);
