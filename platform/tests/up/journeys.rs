//! What a user does through the gateway (register, shop, check out), as steps the tests
//! share: each asserts its own outcome, so a test reads as the journey it checks.

use std::time::Duration;

use platform_testing::TestApp;
use serde_json::{Value, json};

use crate::{ADMIN_EMAIL, ADMIN_PASSWORD};

/// Register, log in and read one's own account through the gateway `app`; returns the new
/// user's id.
pub(crate) async fn main_journey(app: &TestApp) -> String {
    let email = format!("journey-{}@example.com", uuid::Uuid::new_v4().simple());
    let response = app
        .post("/api/v1/users")
        .json(&json!({"email": email, "password": "a good password", "name": "Journey"}))
        .await;
    assert_eq!(response.status(), 201);
    let tokens: Value = app
        .post("/api/v1/auth/login")
        .json(&json!({"email": email, "password": "a good password"}))
        .await
        .json()
        .await
        .unwrap();
    let me: Value = app
        .get("/api/v1/users/me")
        .by(tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email.as_str());
    me["id"].as_str().unwrap().to_owned()
}

/// An access token of the administrator `platform up` created from `ADMIN_EMAIL`.
pub(crate) async fn admin_token(app: &TestApp) -> String {
    let tokens: Value = app
        .post("/api/v1/auth/login")
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .await
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// An administrator adds a product through the gateway; anyone can then find it by listing,
/// by id and by search. Returns its id.
pub(crate) async fn product_journey(app: &TestApp) -> String {
    let admin = admin_token(app).await;
    let sku = format!("J-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let response = app
        .post("/api/v1/admin/products")
        .by(&admin)
        .json(
            &json!({"sku": sku, "name": "Journey teapot", "category": "kitchen",
            "price": {"amount": 2500, "currency": "EUR"}, "stock": 7}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let product: Value = app
        .get(&format!("/api/v1/products/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(product["available"], 7);
    let found: Value = app
        .get("/api/v1/products/search?q=journey%20tea")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"][0]["id"], id, "{found}");
    let kitchen: Value = app
        .get("/api/v1/products?category=kitchen&per_page=100")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        kitchen["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id)
    );
    id.to_owned()
}

/// Checkout through the gateway: the order service prices the order from the catalog,
/// reserves the stock, charges the sandbox card and confirms. Returns the buyer's token and the
/// order.
pub(crate) async fn order_journey(app: &TestApp, product: &str) -> (String, Value) {
    let buyer = admin_token(app).await;
    let order = place_order(app, &buyer, product, 2, None).await;
    assert_eq!(order["total"]["amount"], 5000);
    let product: Value = app
        .get(&format!("/api/v1/products/{product}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(product["stock"], 5, "two of seven sold: {product}");

    // order.confirmed travels outbox → bus → notification service → the buyer's inbox.
    confirmation_reaches_the_inbox(app, &buyer, order["id"].as_str().unwrap()).await;
    (buyer, order)
}

/// A direct charge that names an order is checked with the order service over gRPC (which the
/// payment service finds once the order service is up): 422 when it does not match the order,
/// 409 when it does (the checkout paid it).
pub(crate) async fn direct_charges_are_checked_against_their_order(
    app: &TestApp,
    buyer: &str,
    order: &Value,
) {
    let total = order["total"]["amount"].as_i64().unwrap();
    for (amount, status) in [(total - 1, 422), (total, 409)] {
        let response = app
            .post("/api/v1/payments")
            .by(buyer)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({
                "order_id": order["id"],
                "amount": {"amount": amount, "currency": order["total"]["currency"]},
                "method": {"type": "card", "token": "tok_visa"},
            }))
            .await;
        let code = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(
            code, status,
            "a direct charge of {amount} for the order: {body}"
        );
    }
}

/// Checks out `quantity` of `product` with the sandbox card (and the caller's `traceparent`,
/// when given); returns the order, confirmed.
pub(crate) async fn place_order(
    app: &TestApp,
    token: &str,
    product: &str,
    quantity: u32,
    traceparent: Option<&str>,
) -> Value {
    let mut call = app
        .post("/api/v1/orders")
        .by(token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    if let Some(traceparent) = traceparent {
        call = call.header("traceparent", traceparent);
    }
    let response = call
        .json(&json!({
            "items": [{"product_id": product, "quantity": quantity}],
            "payment": {"token": "tok_visa"},
            "shipping_address": {"name": "Journey", "line1": "1 Road", "city": "Town",
                "postal_code": "12345", "country": "DE"},
        }))
        .await;
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    order
}

/// Waits (15 s at most) until the `order.confirmed` notification of `order_id` is in the inbox
/// of the holder of `token`.
pub(crate) async fn confirmation_reaches_the_inbox(app: &TestApp, token: &str, order_id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let inbox: Value = app
            .get("/api/v1/notifications?per_page=100")
            .by(token)
            .await
            .json()
            .await
            .unwrap();
        let told = inbox["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|n| n["event_type"] == "order.confirmed" && n["data"]["order_id"] == order_id)
        });
        if told {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no order.confirmed notification: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
