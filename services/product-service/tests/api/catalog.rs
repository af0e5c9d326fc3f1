//! The admin catalog API: create, read, update, archive and stock, with every error case.

use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{error_fields, json_of, problem, product_body, spawn_app, unique_sku};

const PRODUCTS: &str = "/api/v1/admin/products";

async fn create_returns_the_product(backend: Backend) {
    let app = spawn_app(backend).await;
    let sku = unique_sku("mug");
    let response = app
        .post(PRODUCTS)
        .by(&app.admin)
        .json(&json!({
            "sku": sku,
            "name": "  Ceramic mug ",
            "description": "350 ml stoneware.",
            "category": "Kitchen",
            "price": {"amount": 1299, "currency": "eur"},
            "stock": 40,
            "image_url": "https://img.example.com/mug.png",
        }))
        .await;
    assert_eq!(response.status(), 201);
    let product: Value = response.json().await.unwrap();
    let mut keys: Vec<_> = product.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "available",
            "category",
            "created_at",
            "description",
            "id",
            "image_url",
            "name",
            "price",
            "reserved",
            "sku",
            "stock",
            "updated_at"
        ]
    );
    assert!(uuid::Uuid::parse_str(product["id"].as_str().unwrap()).is_ok());
    assert_eq!(
        product["sku"],
        sku.to_ascii_uppercase(),
        "stored upper-case"
    );
    assert_eq!(product["name"], "Ceramic mug", "trimmed");
    assert_eq!(product["description"], "350 ml stoneware.");
    assert_eq!(product["category"], "kitchen", "stored lower-case");
    assert_eq!(product["price"], json!({"amount": 1299, "currency": "EUR"}));
    assert_eq!(product["stock"], 40);
    assert_eq!(product["reserved"], 0);
    assert_eq!(product["available"], 40);
    assert_eq!(product["image_url"], "https://img.example.com/mug.png");
    let created = chrono::DateTime::parse_from_rfc3339(product["created_at"].as_str().unwrap());
    assert!(created.is_ok(), "RFC 3339 timestamps");
    assert_eq!(product["created_at"], product["updated_at"]);

    // Read back, by id: the same document.
    let id = product["id"].as_str().unwrap();
    assert_eq!(app.product(id).await, product);

    // Optional fields default: no description, no stock, no image.
    let minimal = app
        .create(&json!({
            "sku": unique_sku("min"),
            "name": "Plain",
            "category": "misc",
            "price": {"amount": 1, "currency": "USD"},
        }))
        .await;
    assert_eq!(minimal["description"], "");
    assert_eq!(minimal["stock"], 0);
    assert_eq!(minimal["available"], 0);
    assert_eq!(minimal["image_url"], Value::Null);
}

async fn duplicate_skus_conflict_in_any_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = product_body("Mug", "kitchen", 100, 1);
    let sku = unique_sku("dup").to_ascii_lowercase();
    body["sku"] = json!(sku);
    app.create(&body).await;
    for variant in [sku.clone(), sku.to_ascii_uppercase(), format!("  {sku} ")] {
        body["sku"] = json!(variant);
        let response = app.post(PRODUCTS).by(&app.admin).json(&body).await;
        problem(response, 409).await;
    }
    let list = json_of(app.get("/api/v1/products").await, 200).await;
    assert_eq!(list["total"], 1, "nothing was created by the conflicts");
}

async fn invalid_fields_are_all_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post(PRODUCTS)
        .by(&app.admin)
        .json(&json!({
            "sku": "bad sku!",
            "name": "   ",
            "category": "",
            "price": {"amount": 0, "currency": "EUR"},
            "stock": -1,
            "image_url": "ftp://example.com/x.png",
        }))
        .await;
    let body = problem(response, 422).await;
    assert_eq!(
        error_fields(&body),
        [
            "category",
            "image_url",
            "name",
            "price.amount",
            "sku",
            "stock"
        ],
        "{body}"
    );

    let cases = [
        (
            json!({"price": {"amount": -5, "currency": "EUR"}}),
            "price.amount",
        ),
        (
            json!({"price": {"amount": 100, "currency": "XYZ"}}),
            "price.currency",
        ),
        (json!({"name": ""}), "name"),
        (json!({"name": "a\u{0}b"}), "name"),
        (json!({"name": "n".repeat(201)}), "name"),
        (json!({"sku": "ä-1"}), "sku"),
        (json!({"sku": "x".repeat(65)}), "sku"),
        (json!({"stock": -3}), "stock"),
        (json!({"image_url": "not a url"}), "image_url"),
        (json!({"image_url": "javascript:alert(1)"}), "image_url"),
        (json!({"description": "d".repeat(5001)}), "description"),
    ];
    for (change, field) in cases {
        let mut body = product_body("Valid", "misc", 100, 1);
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = app.post(PRODUCTS).by(&app.admin).json(&body).await;
        let problem = problem(response, 422).await;
        assert_eq!(error_fields(&problem), [field], "{change}: {problem}");
    }
    let list = json_of(app.get("/api/v1/products").await, 200).await;
    assert_eq!(list["total"], 0);
}

async fn malformed_and_unexpected_bodies_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = |body: &'static str| {
        app.post(PRODUCTS)
            .by(&app.admin)
            .header("content-type", "application/json")
            .body(body)
    };
    problem(raw(r#"{"sku": "A", "name": "#).await, 400).await;
    problem(raw("not json").await, 400).await;

    let mut body = product_body("Mug", "kitchen", 100, 1);
    body["colour"] = json!("red");
    let response = app.post(PRODUCTS).by(&app.admin).json(&body).await;
    assert!(response.status().is_client_error());
    let unknown = problem(response, 422).await;
    assert_eq!(error_fields(&unknown), ["colour"], "{unknown}");

    let mut body = product_body("Mug", "kitchen", 100, 1);
    body["price"]["cents"] = json!(1);
    let response = app.post(PRODUCTS).by(&app.admin).json(&body).await;
    assert_eq!(response.status(), 422);

    let mut body = product_body("Mug", "kitchen", 100, 1);
    body.as_object_mut().unwrap().remove("price");
    let missing = problem(app.post(PRODUCTS).by(&app.admin).json(&body).await, 422).await;
    assert_eq!(error_fields(&missing), ["price"], "{missing}");

    let mut body = product_body("Mug", "kitchen", 100, 1);
    body["stock"] = json!("ten");
    problem(app.post(PRODUCTS).by(&app.admin).json(&body).await, 422).await;

    let text = app
        .post(PRODUCTS)
        .by(&app.admin)
        .header("content-type", "text/plain")
        .body(product_body("Mug", "kitchen", 100, 1).to_string())
        .await;
    problem(text, 415).await;
}

async fn only_administrators_may_write(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Mug", "kitchen", 100, 5).await;
    let body = product_body("Other", "kitchen", 100, 5);
    let product = format!("{PRODUCTS}/{id}");
    let inventory = format!("{PRODUCTS}/{id}/inventory");
    for (token, status) in [
        (None, 401),
        (Some("not-a-token"), 401),
        (Some(app.user.as_str()), 403),
    ] {
        problem(app.post(PRODUCTS).by(token).json(&body).await, status).await;
        problem(
            app.put(&product)
                .by(token)
                .json(&json!({"name": "Hacked"}))
                .await,
            status,
        )
        .await;
        problem(
            app.put(&inventory)
                .by(token)
                .json(&json!({"stock": 0}))
                .await,
            status,
        )
        .await;
        problem(app.delete(&product).by(token).await, status).await;
    }
    // A token signed with another secret is not accepted either.
    let forged = platform_auth::Jwt::new(platform_auth::JwtConfig::with_secret(
        "another-secret-0123456789abcdef-0123456789",
    ))
    .issue(
        platform_auth::UserId::generate(),
        platform_auth::Role::Admin,
    )
    .unwrap()
    .token;
    problem(app.post(PRODUCTS).by(&forged).json(&body).await, 401).await;

    let unchanged = app.product(&id).await;
    assert_eq!(unchanged["name"], "Mug");
    assert_eq!(unchanged["stock"], 5);
    assert_eq!(
        json_of(app.get("/api/v1/products").await, 200).await["total"],
        1
    );
}

async fn get_by_id_finds_or_refuses(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Mug", "kitchen", 100, 5).await;
    assert_eq!(app.product(&id).await["id"], id.as_str());
    let unknown = uuid::Uuid::now_v7();
    problem(app.get(&format!("/api/v1/products/{unknown}")).await, 404).await;
    // Asked twice: the cached "no such product" answers the same.
    problem(app.get(&format!("/api/v1/products/{unknown}")).await, 404).await;
    problem(app.get("/api/v1/products/not-a-uuid").await, 400).await;
    problem(app.get("/api/v1/products/12345").await, 400).await;
}

async fn updates_change_fields_and_remove_the_image(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = product_body("Mug", "kitchen", 1000, 5);
    body["image_url"] = json!("https://img.example.com/a.png");
    let original = app.create(&body).await;
    let id = original["id"].as_str().unwrap();
    app.product(id).await; // cached now

    let new_sku = unique_sku("new");
    let response = app
        .update(
            id,
            &json!({
                "sku": new_sku,
                "name": "Big mug",
                "description": "Holds more.",
                "category": "Tableware",
                "price": {"amount": 1500, "currency": "USD"},
                "image_url": null,
            }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["sku"], new_sku.to_ascii_uppercase());
    assert_eq!(updated["name"], "Big mug");
    assert_eq!(updated["description"], "Holds more.");
    assert_eq!(updated["category"], "tableware");
    assert_eq!(updated["price"], json!({"amount": 1500, "currency": "USD"}));
    assert_eq!(updated["image_url"], Value::Null);
    assert_eq!(updated["stock"], 5, "stock is not a catalog field");
    assert_eq!(updated["created_at"], original["created_at"]);
    assert_ne!(updated["updated_at"], original["updated_at"]);
    // Reads see the change at once (the cached copy was dropped).
    assert_eq!(app.product(id).await, updated);

    // A partial update keeps the rest; an absent image_url is kept, a new one set.
    let response = app
        .update(id, &json!({"image_url": "https://img.example.com/b.png"}))
        .await;
    assert_eq!(response.status(), 200);
    let response = app.update(id, &json!({"name": "Bigger mug"})).await;
    let partial: Value = response.json().await.unwrap();
    assert_eq!(partial["name"], "Bigger mug");
    assert_eq!(partial["image_url"], "https://img.example.com/b.png");
    assert_eq!(partial["price"]["amount"], 1500);

    // Nothing to change: 200 with the product as it is.
    let same = app.update(id, &json!({})).await;
    assert_eq!(same.status(), 200);
    let same: Value = same.json().await.unwrap();
    assert_eq!(same["name"], "Bigger mug");

    // Invalid fields are named; nothing changes.
    let invalid = app
        .update(
            id,
            &json!({"name": "", "price": {"amount": 0, "currency": "EUR"}, "sku": "a b"}),
        )
        .await;
    let invalid = problem(invalid, 422).await;
    assert_eq!(error_fields(&invalid), ["name", "price.amount", "sku"]);
    let unknown_field = app.update(id, &json!({"stock": 1})).await;
    problem(unknown_field, 422).await;
    assert_eq!(app.product(id).await["name"], "Bigger mug");

    let unknown = uuid::Uuid::now_v7();
    problem(
        app.update(&unknown.to_string(), &json!({"name": "X"}))
            .await,
        404,
    )
    .await;
    problem(app.update("nope", &json!({"name": "X"})).await, 400).await;
}

async fn updating_to_a_taken_sku_conflicts(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.create(&product_body("First", "misc", 100, 1)).await;
    let second = app.new_product("Second", "misc", 100, 1).await;
    let taken = first["sku"].as_str().unwrap().to_ascii_lowercase();
    problem(app.update(&second, &json!({"sku": taken})).await, 409).await;
    let response = app
        .update(&second, &json!({"sku": taken, "name": "Renamed"}))
        .await;
    problem(response, 409).await;
    assert_eq!(
        app.product(&second).await["name"],
        "Second",
        "nothing applied"
    );
    // Its own SKU, in another case, is not a conflict.
    let own = first["sku"].as_str().unwrap().to_ascii_lowercase();
    let id = first["id"].as_str().unwrap();
    assert_eq!(app.update(id, &json!({"sku": own})).await.status(), 200);
}

async fn archiving_hides_the_product(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Walnut desk", "furniture", 25000, 3).await;
    let other = app.new_product("Oak desk", "furniture", 20000, 3).await;
    app.product(&id).await; // cached
    assert_eq!(
        json_of(app.get("/api/v1/products").await, 200).await["total"],
        2
    ); // cached page
    assert_eq!(
        json_of(app.get("/api/v1/products/search?q=desk").await, 200).await["total"],
        2
    );

    let response = app.archive(&id).await;
    assert_eq!(response.status(), 204);
    assert!(response.text().await.unwrap().is_empty());
    problem(app.get(&format!("/api/v1/products/{id}")).await, 404).await;
    let list = json_of(app.get("/api/v1/products").await, 200).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], other.as_str());
    let found = json_of(app.get("/api/v1/products/search?q=desk").await, 200).await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["id"], other.as_str());
    let by_category = json_of(app.get("/api/v1/products?category=furniture").await, 200).await;
    assert_eq!(by_category["total"], 1);

    // Archiving twice is not an error; archived products cannot be changed.
    assert_eq!(app.archive(&id).await.status(), 204);
    problem(app.update(&id, &json!({"name": "Back"})).await, 404).await;
    problem(app.inventory(&id, &json!({"stock": 9})).await, 404).await;
    // Still stored (for past orders): GetProducts reports it as archived.
    let stored = app.stored(&id).await;
    assert!(stored.archived);
    assert_eq!(stored.stock, 3, "the refused stock change was not applied");

    let unknown = uuid::Uuid::now_v7().to_string();
    problem(app.archive(&unknown).await, 404).await;
    problem(app.archive("nope").await, 400).await;
}

async fn inventory_is_set_or_adjusted_never_below_reserved(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Lamp", "lighting", 3000, 10).await;
    app.product(&id).await; // cached

    let set = app.inventory(&id, &json!({"stock": 25})).await;
    assert_eq!(set.status(), 200);
    let set: Value = set.json().await.unwrap();
    assert_eq!(
        (set["stock"].clone(), set["available"].clone()),
        (json!(25), json!(25))
    );
    let down: Value = app
        .inventory(&id, &json!({"delta": -5}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(down["stock"], 20);
    let up: Value = app
        .inventory(&id, &json!({"delta": 3}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(up["stock"], 23);
    assert_eq!(app.product(&id).await["stock"], 23, "reads see it at once");

    // 20 held by an order: stock cannot go below that.
    let order = uuid::Uuid::now_v7().to_string();
    app.reserve(&order, &[(&id, 20)]).await.unwrap();
    problem(app.inventory(&id, &json!({"stock": 19})).await, 409).await;
    problem(app.inventory(&id, &json!({"delta": -4})).await, 409).await;
    let exact: Value = app
        .inventory(&id, &json!({"stock": 20}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            exact["stock"].clone(),
            exact["reserved"].clone(),
            exact["available"].clone()
        ),
        (json!(20), json!(20), json!(0))
    );
    // Without reservations a delta still cannot take stock below zero.
    let free = app.new_product("Bulb", "lighting", 300, 2).await;
    problem(app.inventory(&free, &json!({"delta": -3})).await, 409).await;
    assert_eq!(app.product(&free).await["stock"], 2);

    for body in [
        json!({"stock": 5, "delta": 1}),
        json!({}),
        json!({"stock": -1}),
        json!({"delta": 0}),
    ] {
        let response = app.inventory(&id, &body).await;
        problem(response, 422).await;
    }
    problem(app.inventory(&id, &json!({"stock": "many"})).await, 422).await;
    problem(app.inventory(&id, &json!({"units": 1})).await, 422).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    problem(app.inventory(&unknown, &json!({"stock": 1})).await, 404).await;
    problem(app.inventory(&unknown, &json!({"delta": 1})).await, 404).await;
    assert_eq!(app.product(&id).await["stock"], 20);
}

/// Writes of every kind at once never fail with a server error (on SQLite every write
/// transaction must take the write lock before it reads, or a concurrent commit makes it
/// fail instead of wait).
async fn concurrent_writes_all_succeed(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(
            app.new_product(&format!("Item {i}"), "misc", 100, 100)
                .await,
        );
    }
    let app = &app;
    let writes = ids.iter().enumerate().flat_map(|(i, id)| {
        let i = i64::try_from(i).unwrap();
        [
            Box::pin(async move {
                let response = app
                    .update(
                        id,
                        &json!({"name": format!("Renamed {i}"), "price": {"amount": 200 + i, "currency": "EUR"}}),
                    )
                    .await;
                response.status().as_u16()
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>>,
            Box::pin(async move {
                app.inventory(id, &json!({"delta": -1})).await.status().as_u16()
            }),
            Box::pin(async move {
                let order = uuid::Uuid::now_v7().to_string();
                match app.reserve(&order, &[(id, 1)]).await {
                    Ok(_) => 200,
                    Err(status) => panic!("reserve failed: {status:?}"),
                }
            }),
            Box::pin(async move {
                app.create(&product_body(&format!("New {i}"), "misc", 100, 1))
                    .await;
                201
            }),
        ]
    });
    let statuses = futures::future::join_all(writes).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    for (i, id) in ids.iter().enumerate() {
        let product = app.product(id).await;
        assert_eq!(product["name"], format!("Renamed {i}"));
        assert_eq!(product["stock"], 99);
        assert_eq!(product["reserved"], 1);
    }
}

/// Two admins changing different fields of one product at once: neither change is lost.
async fn concurrent_updates_of_one_product_lose_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Item", "misc", 100, 1).await;
    for round in 0..10 {
        let name = format!("Name {round}");
        let amount = 1000 + round;
        let bodies = [
            json!({"name": name}),
            json!({"price": {"amount": amount, "currency": "EUR"}}),
            json!({"description": format!("Round {round}")}),
        ];
        let (renamed, repriced, described) = tokio::join!(
            app.update(&id, &bodies[0]),
            app.update(&id, &bodies[1]),
            app.update(&id, &bodies[2]),
        );
        assert_eq!(renamed.status(), 200);
        assert_eq!(repriced.status(), 200);
        assert_eq!(described.status(), 200);
        let product = app.product(&id).await;
        assert_eq!(product["name"], name, "round {round}: {product}");
        assert_eq!(
            product["price"]["amount"], amount,
            "round {round}: {product}"
        );
        assert_eq!(product["description"], format!("Round {round}"));
    }
}

platform_testing::backend_tests!(
    create_returns_the_product,
    duplicate_skus_conflict_in_any_case,
    invalid_fields_are_all_named,
    malformed_and_unexpected_bodies_are_refused,
    only_administrators_may_write,
    get_by_id_finds_or_refuses,
    updates_change_fields_and_remove_the_image,
    updating_to_a_taken_sku_conflicts,
    archiving_hides_the_product,
    inventory_is_set_or_adjusted_never_below_reserved,
    concurrent_writes_all_succeed,
    concurrent_updates_of_one_product_lose_nothing,
);
