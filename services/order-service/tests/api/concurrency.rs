//! Many buyers at once: no oversell, and one order (one charge) per idempotency key.

use std::collections::HashSet;

use futures::future::join_all;
use platform_auth::Role;
use platform_testing::Backend;

use crate::helpers::{actor, json_of, new_key, order_body, problem, spawn_app};

async fn a_hundred_buyers_for_ten_units_never_oversell(backend: Backend) {
    let app = spawn_app(backend).await;
    let last = app.new_product("Last ones", 900, 10).await;
    let buyers: Vec<_> = (0..100).map(|_| actor(Role::User)).collect();
    let body = order_body(&[(&last, 1)], "tok_visa");
    let orders = join_all(buyers.iter().map(|buyer| {
        let app = &app;
        let body = &body;
        async move { json_of(app.post_order(&new_key()).by(buyer).json(body).await, 201).await }
    }))
    .await;

    let confirmed: Vec<_> = orders
        .iter()
        .filter(|o| o["status"] == "confirmed")
        .collect();
    let failed: Vec<_> = orders.iter().filter(|o| o["status"] == "failed").collect();
    assert_eq!(confirmed.len(), 10, "exactly the stock is sold");
    assert_eq!(failed.len(), 90);
    for order in &failed {
        let reason = order["failure_reason"].as_str().unwrap();
        assert!(reason.contains("out of stock"), "{reason}");
    }
    assert_eq!(app.stock(&last).await, (0, 0, 0));
    assert_eq!(
        app.payment_count().await,
        10,
        "only confirmed orders were charged"
    );
    for order in &confirmed {
        let payments = app.payments_for(order["id"].as_str().unwrap()).await;
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0]["status"], "captured");
    }
}

async fn concurrent_retries_of_one_request_place_one_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app.new_product("Mug", 1250, 50).await;
    let key = new_key();
    let body = order_body(&[(&mug, 2)], "tok_visa");
    let responses =
        join_all((0..8).map(|_| app.post_order(&key).by(&app.user).json(&body).send())).await;
    let mut ids = HashSet::new();
    let mut replays = 0;
    for response in responses {
        let status = response.status().as_u16();
        assert!(status == 201 || status == 202, "{status}");
        if response.headers().get("idempotent-replayed").is_some() {
            replays += 1;
        }
        let order = json_of(response, status).await;
        ids.insert(order["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one order: {ids:?}");
    assert_eq!(replays, 7, "every other answer is a replay");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(app.order(&app.user, &id).await["status"], "confirmed");
    assert_eq!(app.payments_for(&id).await.len(), 1, "one charge");
    assert_eq!(app.stock(&mug).await, (48, 0, 48));

    // A later repeat replays; the same key with another request is refused.
    let again = app.post_order(&key).by(&app.user).json(&body).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(again, 201).await["id"], id.as_str());
    let other = order_body(&[(&mug, 3)], "tok_visa");
    let refused = problem(app.post_order(&key).by(&app.user).json(&other).await, 422).await;
    assert!(refused["errors"]["Idempotency-Key"].is_array(), "{refused}");
    // Keys are per user: another user's identical key is another order.
    let stranger = actor(Role::User);
    let theirs = json_of(app.post_order(&key).by(&stranger).json(&body).await, 201).await;
    assert_ne!(theirs["id"], id.as_str());
}

platform_testing::backend_tests!(
    a_hundred_buyers_for_ten_units_never_oversell,
    concurrent_retries_of_one_request_place_one_order,
);
