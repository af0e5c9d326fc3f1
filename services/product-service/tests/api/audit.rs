//! Administrators' changes to the catalog are audit records on the bus, naming the
//! administrator, the product, the client and the request.

use platform_auth::Role;
use platform_http::audit::{Action, Actor, Outcome};
use platform_testing::Backend;
use platform_testing::grpc::audited;
use serde_json::json;

use crate::helpers::{JWT_SECRET, product_body, spawn_app};

async fn every_catalog_change_by_an_administrator_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = platform_testing::http::actor(Role::Admin, JWT_SECRET);
    let response = app
        .post("/api/v1/admin/products")
        .by(&admin)
        .header("x-request-id", "audit-create-1")
        .json(&product_body("Audited", "misc", 100, 5))
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/admin/products/{id}");
    let changes = [
        app.put(&path)
            .by(&admin)
            .json(&json!({"name": "Audited too"}))
            .await,
        app.put(&format!("{path}/inventory"))
            .by(&admin)
            .json(&json!({"delta": 3}))
            .await,
        app.delete(&path).by(&admin).await,
    ];
    for response in changes {
        assert!(response.status().is_success(), "{}", response.status());
    }

    let target = format!("product:{id}");
    for action in [
        Action::ProductCreate,
        Action::ProductUpdate,
        Action::InventoryUpdate,
        Action::ProductDelete,
    ] {
        let record = audited(&app.events, action.as_str(), |record| {
            record.action == action && record.target.as_deref() == Some(target.as_str())
        })
        .await;
        assert_eq!(record.outcome, Outcome::Success);
        assert_eq!(record.actor, Some(Actor::User(admin.id)), "{action}");
        assert_eq!(record.service, "product-service");
        assert!(record.client_ip.is_some(), "{action}");
        if action == Action::ProductCreate {
            assert_eq!(record.request_id.as_deref(), Some("audit-create-1"));
        } else {
            assert!(record.request_id.is_some(), "the kit's own id: {record:?}");
        }
    }
}

async fn a_refused_change_is_not_recorded_as_done(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Short", "misc", 100, 1).await;
    let refused = app.inventory(&id, &json!({"stock": -1})).await;
    assert_eq!(refused.status(), 422);
    // The creation's record arrives; no inventory record was made before or after it.
    audited(&app.events, "the creation", |r| {
        r.action == Action::ProductCreate
    })
    .await;
    let records = platform_testing::grpc::audit_records(&app.events).await;
    assert!(
        records.iter().all(|r| r.action != Action::InventoryUpdate),
        "{records:?}"
    );
}

platform_testing::backend_tests!(
    every_catalog_change_by_an_administrator_is_audited,
    a_refused_change_is_not_recorded_as_done,
);
