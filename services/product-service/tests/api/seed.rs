//! The demo catalog: loaded into an empty database, never twice.

use std::collections::BTreeSet;

use platform_testing::{Backend, TestDatabase};
use serde_json::Value;

use crate::helpers::{TestApp, json_of, spawn_on};

async fn everything(app: &TestApp) -> Value {
    json_of(app.get("/api/v1/products?per_page=100").await, 200).await
}

async fn the_demo_catalog_is_loaded_once(backend: Backend) {
    let db = std::sync::Arc::new(TestDatabase::create(backend).await);
    let seeded = |config: &mut product_service::ProductServiceConfig| {
        config.seed_demo_data = true;
    };
    let app = spawn_on(&db, seeded).await;
    let list = everything(&app).await;
    let total = list["total"].as_u64().unwrap();
    assert!(total >= 50, "{total} products");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, total);
    let categories: BTreeSet<&str> = items
        .iter()
        .map(|p| p["category"].as_str().unwrap())
        .collect();
    assert!(categories.len() >= 5, "{categories:?}");
    let skus: BTreeSet<&str> = items.iter().map(|p| p["sku"].as_str().unwrap()).collect();
    assert_eq!(skus.len() as u64, total, "unique SKUs");
    assert!(items.iter().any(|p| p["available"] == 0), "one is sold out");
    let mugs = json_of(app.get("/api/v1/products/search?q=mug").await, 200).await;
    assert!(mugs["total"].as_u64().unwrap() >= 1, "searchable: {mugs}");
    let ids: BTreeSet<String> = items
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    drop(app);

    // A restart over the same database adds nothing.
    let again = spawn_on(&db, seeded).await;
    let list = everything(&again).await;
    assert_eq!(list["total"].as_u64().unwrap(), total);
    let same: BTreeSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(same, ids);
}

async fn a_catalog_in_use_is_not_seeded(backend: Backend) {
    let db = std::sync::Arc::new(TestDatabase::create(backend).await);
    let plain = spawn_on(&db, |_| {}).await;
    assert_eq!(
        everything(&plain).await["total"],
        0,
        "off by default in tests"
    );
    plain.new_product("Ours", "misc", 100, 1).await;
    drop(plain);
    let seeded = spawn_on(&db, |config| config.seed_demo_data = true).await;
    assert_eq!(everything(&seeded).await["total"], 1);
}

platform_testing::backend_tests!(
    the_demo_catalog_is_loaded_once,
    a_catalog_in_use_is_not_seeded,
);
