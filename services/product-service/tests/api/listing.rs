//! `GET /api/v1/products`: pagination, filters, sorts and their validation.

use platform_testing::Backend;
use serde_json::Value;

use crate::helpers::{TestApp, error_fields, json_of, problem, spawn_app};

/// Names of a page's items, in order.
fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    json_of(app.get(&format!("/api/v1/products{query}")).await, 200).await
}

/// Five products; "Delta shelf" has its one unit reserved, "Alpha lamp" none in stock.
async fn catalog(app: &TestApp) {
    for (name, category, price, stock) in [
        ("Alpha lamp", "lighting", 500, 0),
        ("Bravo desk", "furniture", 2500, 5),
        ("Charlie chair", "Furniture", 1500, 2),
        ("Delta shelf", "furniture", 3500, 1),
        ("Echo rug", "textiles", 999, 10),
    ] {
        let id = app.new_product(name, category, price, stock).await;
        if name == "Delta shelf" {
            let order = uuid::Uuid::now_v7().to_string();
            app.reserve(&order, &[(&id, 1)]).await.unwrap();
        }
    }
}

async fn pages_cover_the_catalog_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let empty = list(&app, "").await;
    assert_eq!(empty["items"], serde_json::json!([]));
    assert_eq!(empty["total"], 0);
    catalog(&app).await;

    let first = list(&app, "").await;
    assert_eq!(first["page"], 1);
    assert_eq!(first["per_page"], 20);
    assert_eq!(first["total"], 5);
    assert_eq!(first["items"].as_array().unwrap().len(), 5);
    assert_eq!(first["items"][0]["available"], 10);

    let mut seen = Vec::new();
    for page in 1..=3 {
        let body = list(&app, &format!("?page={page}&per_page=2")).await;
        assert_eq!(body["page"], page);
        assert_eq!(body["per_page"], 2);
        assert_eq!(body["total"], 5);
        seen.extend(names(&body));
    }
    assert_eq!(seen.len(), 5);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "no product on two pages: {seen:?}");
    let beyond = list(&app, "?page=9&per_page=2").await;
    assert_eq!(beyond["items"], serde_json::json!([]));
    assert_eq!(beyond["total"], 5);
    assert_eq!(list(&app, "?per_page=1000").await["per_page"], 100);

    for bad in ["?page=0", "?per_page=0"] {
        problem(app.get(&format!("/api/v1/products{bad}")).await, 422).await;
    }
    problem(app.get("/api/v1/products?page=first").await, 400).await;

    // A new product shows up at once (list pages are dropped on every write).
    app.new_product("Foxtrot vase", "decor", 700, 3).await;
    let after = list(&app, "").await;
    assert_eq!(after["total"], 6);
    assert_eq!(names(&after)[0], "Foxtrot vase");
}

async fn filters_narrow_the_list(backend: Backend) {
    let app = spawn_app(backend).await;
    catalog(&app).await;
    let sorted = |query: &str| {
        let app = &app;
        let query = format!("{query}&sort=name");
        async move { names(&list(app, &query).await) }
    };
    assert_eq!(
        sorted("?category=FURNITURE").await,
        ["Bravo desk", "Charlie chair", "Delta shelf"]
    );
    assert_eq!(sorted("?category=lighting").await, ["Alpha lamp"]);
    assert!(sorted("?category=garden").await.is_empty());
    assert_eq!(
        sorted("?min_price=1500").await,
        ["Bravo desk", "Charlie chair", "Delta shelf"],
        "min_price is inclusive"
    );
    assert_eq!(
        sorted("?max_price=999").await,
        ["Alpha lamp", "Echo rug"],
        "max_price is inclusive"
    );
    assert_eq!(
        sorted("?min_price=1000&max_price=3000").await,
        ["Bravo desk", "Charlie chair"]
    );
    assert_eq!(
        sorted("?min_price=1500&max_price=1500").await,
        ["Charlie chair"]
    );
    assert_eq!(
        sorted("?in_stock=true").await,
        ["Bravo desk", "Charlie chair", "Echo rug"],
        "a fully reserved product is not in stock"
    );
    assert_eq!(
        sorted("?in_stock=false").await,
        ["Alpha lamp", "Delta shelf"]
    );
    assert_eq!(
        sorted("?category=furniture&in_stock=true&max_price=2000").await,
        ["Charlie chair"]
    );
    let filtered = list(&app, "?category=furniture&per_page=1").await;
    assert_eq!(filtered["total"], 3, "total counts the filtered list");
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
}

async fn every_sort_orders_the_list(backend: Backend) {
    let app = spawn_app(backend).await;
    catalog(&app).await;
    let order = |sort: &'static str| {
        let app = &app;
        async move { names(&list(app, sort).await) }
    };
    assert_eq!(
        order("?sort=price_asc").await,
        [
            "Alpha lamp",
            "Echo rug",
            "Charlie chair",
            "Bravo desk",
            "Delta shelf"
        ]
    );
    assert_eq!(
        order("?sort=price_desc").await,
        [
            "Delta shelf",
            "Bravo desk",
            "Charlie chair",
            "Echo rug",
            "Alpha lamp"
        ]
    );
    assert_eq!(
        order("?sort=name").await,
        [
            "Alpha lamp",
            "Bravo desk",
            "Charlie chair",
            "Delta shelf",
            "Echo rug"
        ]
    );
    let newest = [
        "Echo rug",
        "Delta shelf",
        "Charlie chair",
        "Bravo desk",
        "Alpha lamp",
    ];
    assert_eq!(order("?sort=newest").await, newest);
    assert_eq!(order("").await, newest, "newest first by default");
    // Sorting and paging together: page 2 of the cheapest first.
    assert_eq!(
        order("?sort=price_asc&per_page=2&page=2").await,
        ["Charlie chair", "Bravo desk"]
    );
}

async fn invalid_list_parameters_are_named(backend: Backend) {
    let app = spawn_app(backend).await;
    for (query, field) in [
        ("sort=bogus", "sort"),
        ("min_price=-1", "min_price"),
        ("max_price=-1", "max_price"),
        ("min_price=abc", "min_price"),
        ("max_price=1.5", "max_price"),
        ("in_stock=maybe", "in_stock"),
        ("category=%20", "category"),
    ] {
        let response = app.get(&format!("/api/v1/products?{query}")).await;
        let body = problem(response, 422).await;
        assert_eq!(error_fields(&body), [field], "{query}: {body}");
    }
    let several = problem(
        app.get("/api/v1/products?sort=bogus&in_stock=maybe&min_price=x")
            .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&several), ["in_stock", "min_price", "sort"]);
    // Accepted spellings; an empty parameter is an absent one.
    for query in [
        "in_stock=1",
        "in_stock=0",
        "min_price=0",
        "min_price=5&max_price=5",
        "sort=&in_stock=&category=",
    ] {
        let response = app.get(&format!("/api/v1/products?{query}")).await;
        assert_eq!(response.status(), 200, "{query}");
    }
    // An empty price range is no error: nothing is in it.
    let empty = json_of(
        app.get("/api/v1/products?min_price=10&max_price=5").await,
        200,
    )
    .await;
    assert_eq!(empty["total"], 0, "{empty}");
}

platform_testing::backend_tests!(
    pages_cover_the_catalog_exactly_once,
    filters_narrow_the_list,
    every_sort_orders_the_list,
    invalid_list_parameters_are_named,
);
