//! Who sees what: a user only their own payments (others' are "not found"), an administrator
//! everyone's.

use platform_auth::Role;
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{actor, error_fields, new_key, problem, spawn_app};

fn ids(page: &Value) -> Vec<String> {
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn users_see_only_their_own_payments(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = &app.user;
    let bob = actor(Role::User);
    let a1 = app.charge(alice, "tok_visa", 1000).await;
    let a2 = app.charge(alice, "tok_decline", 2000).await;
    let b1 = app.charge(&bob, "tok_visa", 3000).await;
    let id = |p: &Value| p["id"].as_str().unwrap().to_owned();

    // Someone else's payment does not exist; refunds are for administrators only (customers
    // cancel their order).
    let path = format!("/api/v1/payments/{}", id(&a1));
    problem(app.get(&path).by(&bob).await, 404).await;
    let refund = json!({"reason": "not mine"});
    problem(
        app.post_refund(&id(&a1), &new_key())
            .by(&bob)
            .json(&refund)
            .await,
        403,
    )
    .await;
    problem(
        app.post_refund(&id(&a1), &new_key())
            .by(alice)
            .json(&refund)
            .await,
        403,
    )
    .await;
    assert_eq!(app.payment(alice, &id(&a1)).await["refunded_amount"], 0);
    assert_eq!(app.payment(&app.admin, &id(&a1)).await, a1);
    assert_eq!(app.payment(&bob, &id(&b1)).await, b1);

    let page = app.list(alice, &[]).await;
    assert_eq!(page["total"], 2);
    assert_eq!(ids(&page), sorted(vec![id(&a1), id(&a2)]));
    // Newest first.
    assert_eq!(page["items"][0]["id"], a2["id"]);
    assert_eq!(ids(&app.list(&bob, &[]).await), [id(&b1)]);
    let all = app.list(&app.admin, &[]).await;
    assert_eq!(all["total"], 3);
    assert_eq!(ids(&all), sorted(vec![id(&a1), id(&a2), id(&b1)]));

    // Filters and pages.
    let captured = app.list(alice, &[("status", "captured")]).await;
    assert_eq!(ids(&captured), [id(&a1)]);
    let failed = app.list(&app.admin, &[("status", "failed")]).await;
    assert_eq!(ids(&failed), [id(&a2)]);
    let captured = app.list(&app.admin, &[("status", "captured")]).await;
    assert_eq!(captured["total"], 2);
    assert_eq!(app.list(&bob, &[("status", "refunded")]).await["total"], 0);
    let first = app
        .list(&app.admin, &[("per_page", "2"), ("page", "2")])
        .await;
    assert_eq!(first["total"], 3);
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["items"][0]["id"], a1["id"], "the oldest, last");

    let refused = problem(
        app.get("/api/v1/payments")
            .by(alice)
            .query(&[("status", "paid")])
            .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&refused), ["status"]);
    problem(
        app.get("/api/v1/payments")
            .by(alice)
            .query(&[("page", "0")])
            .await,
        422,
    )
    .await;
    problem(app.get("/api/v1/payments").await, 401).await;
}

platform_testing::backend_tests!(users_see_only_their_own_payments);
