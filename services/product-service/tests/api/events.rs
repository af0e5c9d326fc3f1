//! Every change is an event in the outbox, written in the same transaction; refused changes
//! write none.

use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{product_body, spawn_app, spawn_with};

async fn changes_are_published_through_the_outbox(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .create(&product_body("Lamp", "lighting", 3000, 10))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let response = app
        .update(
            &id,
            &json!({"price": {"amount": 2500, "currency": "EUR"}, "name": "Lamp 2"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.inventory(&id, &json!({"stock": 20})).await.status(),
        200
    );
    assert_eq!(
        app.inventory(&id, &json!({"delta": -16})).await.status(),
        200
    );
    let order = uuid::Uuid::now_v7().to_string();
    app.reserve(&order, &[(&id, 2)]).await.unwrap();
    app.grpc_client()
        .await
        .release(platform_proto::product::v1::ReservationRef {
            order_id: order.clone(),
        })
        .await
        .unwrap();
    assert_eq!(app.archive(&id).await.status(), 204);

    let outbox = app.outbox().await;
    let kinds: Vec<&str> = outbox.iter().map(|(kind, _, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "product.created",
            "product.updated",
            "inventory.changed", // set to 20
            "inventory.changed", // down to 4 …
            "inventory.low",     // … below the threshold of 5
            "inventory.changed", // 2 reserved
            "inventory.low",     // 2 available
            "inventory.changed", // released: back up, not low
            "product.archived",
        ]
    );
    for (kind, subject, envelope) in &outbox {
        assert_eq!(subject, &id, "{kind}");
        assert_eq!(envelope["type"], kind.as_str());
        assert_eq!(envelope["subject"], id.as_str());
        assert_eq!(envelope["source"], "product-service");
    }
    let data = |i: usize| -> &Value { &outbox[i].2["data"] };
    assert_eq!(data(0)["sku"], created["sku"]);
    assert_eq!(data(0)["price_amount"], 3000);
    assert_eq!(data(0)["stock"], 10);
    let mut changed: Vec<&str> = data(1)["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    changed.sort_unstable();
    assert_eq!(changed, ["name", "price"]);
    assert_eq!(data(1)["price_amount"], 2500);
    assert_eq!(data(2)["stock"], 20);
    assert_eq!(data(2)["reason"], "set");
    assert_eq!(data(3)["stock"], 4);
    assert_eq!(data(3)["reason"], "adjusted");
    assert_eq!(data(4)["available"], 4);
    assert_eq!(data(4)["threshold"], 5);
    assert_eq!(data(5)["reason"], "reserved");
    assert_eq!(data(5)["order_id"], order.as_str());
    assert_eq!(
        (data(5)["reserved"].clone(), data(5)["available"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(data(6)["available"], 2);
    assert_eq!(data(7)["reason"], "released");
    assert_eq!(data(7)["available"], 4);
}

async fn refused_changes_publish_nothing(backend: Backend) {
    let app = spawn_with(backend, |config| config.low_stock_threshold = 2).await;
    let body = product_body("Mug", "kitchen", 100, 3);
    let created = app.create(&body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let order = uuid::Uuid::now_v7().to_string();
    app.reserve(&order, &[(&id, 1)]).await.unwrap(); // 2 left: not below 2
    let before = app.outbox().await.len();
    assert_eq!(before, 2, "created, reserved; not low at the threshold");

    assert_eq!(
        app.post("/api/v1/admin/products")
            .by(&app.admin)
            .json(&body)
            .await
            .status(),
        409
    );
    assert_eq!(app.inventory(&id, &json!({"stock": 0})).await.status(), 409);
    assert_eq!(app.update(&id, &json!({"name": ""})).await.status(), 422);
    assert_eq!(app.update(&id, &json!({})).await.status(), 200, "no change");
    let other = uuid::Uuid::now_v7().to_string();
    assert!(app.reserve(&other, &[(&id, 3)]).await.is_err());
    assert!(app.reserve(&order, &[(&id, 1)]).await.is_ok(), "a repeat");
    assert_eq!(
        app.archive(&uuid::Uuid::now_v7().to_string())
            .await
            .status(),
        404
    );
    assert_eq!(app.outbox().await.len(), before);

    assert_eq!(app.archive(&id).await.status(), 204);
    assert_eq!(app.archive(&id).await.status(), 204);
    let outbox = app.outbox().await;
    assert_eq!(outbox.len(), before + 1, "archived once");
    assert_eq!(outbox[before].0, "product.archived");
}

/// `inventory.low` marks a drop below the threshold, not every change while below it.
async fn low_stock_fires_only_when_availability_drops(backend: Backend) {
    let app = spawn_with(backend, |config| config.low_stock_threshold = 5).await;
    let id = app.new_product("Rare", "misc", 100, 2).await;
    let low = |outbox: &[(String, String, Value)]| {
        outbox
            .iter()
            .filter(|(kind, _, _)| kind == "inventory.low")
            .count()
    };
    // Restocking, even to a level still below the threshold, is no alarm.
    assert_eq!(app.inventory(&id, &json!({"stock": 3})).await.status(), 200);
    assert_eq!(app.inventory(&id, &json!({"delta": 1})).await.status(), 200);
    let outbox = app.outbox().await;
    assert_eq!(low(&outbox), 0, "{outbox:?}");
    assert_eq!(outbox.len(), 3, "created, and two inventory.changed");
    // Setting the same stock again is no drop either.
    assert_eq!(app.inventory(&id, &json!({"stock": 4})).await.status(), 200);
    assert_eq!(low(&app.outbox().await), 0);
    // A drop below it is, however the stock is changed.
    assert_eq!(app.inventory(&id, &json!({"stock": 3})).await.status(), 200);
    assert_eq!(low(&app.outbox().await), 1);
    assert_eq!(
        app.inventory(&id, &json!({"delta": -1})).await.status(),
        200
    );
    assert_eq!(low(&app.outbox().await), 2);
    // Above the threshold: no alarm, even on a drop.
    assert_eq!(
        app.inventory(&id, &json!({"stock": 50})).await.status(),
        200
    );
    assert_eq!(
        app.inventory(&id, &json!({"delta": -40})).await.status(),
        200
    );
    assert_eq!(low(&app.outbox().await), 2);
    // A reservation that takes it below: an alarm; committing it changes nothing available.
    let order = uuid::Uuid::now_v7().to_string();
    app.reserve(&order, &[(&id, 7)]).await.unwrap();
    app.grpc_client()
        .await
        .commit(platform_proto::product::v1::ReservationRef { order_id: order })
        .await
        .unwrap();
    let outbox = app.outbox().await;
    assert_eq!(low(&outbox), 3);
    let last = &outbox.last().unwrap().2["data"];
    assert_eq!(last["reason"], "committed");
    assert_eq!(
        (last["stock"].clone(), last["available"].clone()),
        (json!(3), json!(3))
    );
}

platform_testing::backend_tests!(
    changes_are_published_through_the_outbox,
    refused_changes_publish_nothing,
    low_stock_fires_only_when_availability_drops,
);
