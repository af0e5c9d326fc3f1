//! The gRPC API the order saga uses: Reserve / Commit / Release / GetProducts, the race for
//! the last units, and the sweeper that releases expired reservations.

use std::time::Duration;

use platform_proto::product::v1 as proto;
use platform_testing::Backend;
use serde_json::json;
use tonic::Code;

use crate::helpers::{TestApp, eventually, json_of, spawn_app, spawn_with};

fn order() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn commit(app: &TestApp, order_id: &str) -> Result<proto::Reservation, tonic::Status> {
    app.grpc_client()
        .await
        .commit(proto::ReservationRef {
            order_id: order_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn release(app: &TestApp, order_id: &str) -> Result<proto::Reservation, tonic::Status> {
    app.grpc_client()
        .await
        .release(proto::ReservationRef {
            order_id: order_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn restock(app: &TestApp, order_id: &str) -> Result<proto::Reservation, tonic::Status> {
    app.grpc_client()
        .await
        .restock(proto::ReservationRef {
            order_id: order_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// (stock, reserved, available) as stored.
async fn levels(app: &TestApp, id: &str) -> (i64, i64, i64) {
    let product = app.stored(id).await;
    (product.stock, product.reserved, product.available)
}

async fn reserve_is_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let plenty = app.new_product("Plenty", "misc", 100, 5).await;
    let short = app.new_product("Short", "misc", 100, 2).await;

    let order_id = order();
    let refused = app
        .reserve(&order_id, &[(&plenty, 3), (&short, 3)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(&short), "{refused:?}");
    assert_eq!(levels(&app, &plenty).await, (5, 0, 5));
    assert_eq!(levels(&app, &short).await, (2, 0, 2));

    // A refused order left nothing behind: it may try again with what is there.
    let reserved = app
        .reserve(&order_id, &[(&plenty, 3), (&short, 2)])
        .await
        .unwrap();
    assert_eq!(reserved.state, proto::ReservationState::Reserved as i32);
    assert_eq!(reserved.lines.len(), 2);
    assert!(reserved.expires_at > chrono::Utc::now().timestamp());
    assert_eq!(levels(&app, &plenty).await, (5, 3, 2));
    assert_eq!(levels(&app, &short).await, (2, 2, 0));
    // The REST view shows it too (the cached copies were dropped).
    let view = app.product(&short).await;
    assert_eq!(
        (view["reserved"].clone(), view["available"].clone()),
        (json!(2), json!(0))
    );

    // Lines naming one product twice are added up.
    let merged = app
        .reserve(&order(), &[(&plenty, 1), (&plenty, 1)])
        .await
        .unwrap();
    assert_eq!(merged.lines.len(), 1);
    assert_eq!(merged.lines[0].quantity, 2);
    assert_eq!(levels(&app, &plenty).await, (5, 5, 0));
}

async fn reserve_refuses_unknown_products_and_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Real", "misc", 100, 5).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let before_unknown = uuid::Uuid::nil().to_string();
    for lines in [
        vec![(unknown.as_str(), 1)],
        vec![(id.as_str(), 1), (unknown.as_str(), 1)],
        vec![(before_unknown.as_str(), 1), (id.as_str(), 1)],
    ] {
        let error = app.reserve(&order(), &lines).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound, "{error:?}");
    }
    assert_eq!(levels(&app, &id).await, (5, 0, 5));

    let archived = app.new_product("Gone", "misc", 100, 5).await;
    assert_eq!(app.archive(&archived).await.status(), 204);
    let error = app.reserve(&order(), &[(&archived, 1)]).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    for (order_id, lines) in [
        ("not-a-uuid".to_owned(), vec![(id.as_str(), 1)]),
        (String::new(), vec![(id.as_str(), 1)]),
        (order(), vec![("not-a-uuid", 1)]),
        (order(), vec![(id.as_str(), 0)]),
        (order(), vec![(id.as_str(), 1), (id.as_str(), 0)]),
        (order(), vec![]),
    ] {
        let error = app.reserve(&order_id, &lines).await.unwrap_err();
        assert_eq!(
            error.code(),
            Code::InvalidArgument,
            "{order_id} {lines:?}: {error:?}"
        );
    }
    let error = app.reserve(&order(), &[(&id, u32::MAX)]).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(levels(&app, &id).await, (5, 0, 5));
}

async fn reserve_is_idempotent_per_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Item", "misc", 100, 10).await;
    let order_id = order();
    let first = app.reserve(&order_id, &[(&id, 2)]).await.unwrap();
    let again = app.reserve(&order_id, &[(&id, 2)]).await.unwrap();
    assert_eq!(again, first, "the existing reservation is returned");
    // Even with other lines: the order's reservation is what it is.
    let different = app.reserve(&order_id, &[(&id, 7)]).await.unwrap();
    assert_eq!(different.lines, first.lines);
    assert_eq!(levels(&app, &id).await, (10, 2, 8));

    // Concurrent repeats of one order reserve once too.
    let other = order();
    let line = [(id.as_str(), 3)];
    let attempts = (0..10).map(|_| app.reserve(&other, &line));
    for result in futures::future::join_all(attempts).await {
        let reservation = result.unwrap();
        assert_eq!(reservation.order_id, other);
        assert_eq!(reservation.state, proto::ReservationState::Reserved as i32);
    }
    assert_eq!(levels(&app, &id).await, (10, 5, 5));
}

async fn commit_sells_and_is_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.new_product("A", "misc", 100, 10).await;
    let b = app.new_product("B", "misc", 100, 4).await;
    let order_id = order();
    app.reserve(&order_id, &[(&a, 3), (&b, 4)]).await.unwrap();
    app.product(&a).await; // cached

    let committed = commit(&app, &order_id).await.unwrap();
    assert_eq!(committed.state, proto::ReservationState::Committed as i32);
    assert_eq!(committed.order_id, order_id);
    assert_eq!(committed.lines.len(), 2);
    assert_eq!(levels(&app, &a).await, (7, 0, 7));
    assert_eq!(levels(&app, &b).await, (0, 0, 0));
    assert_eq!(app.product(&a).await["stock"], 7, "reads see the sale");

    let twice = commit(&app, &order_id).await.unwrap();
    assert_eq!(twice.state, proto::ReservationState::Committed as i32);
    assert_eq!(levels(&app, &a).await, (7, 0, 7), "sold once");

    let after = release(&app, &order_id).await.unwrap_err();
    assert_eq!(after.code(), Code::FailedPrecondition, "{after:?}");
    assert_eq!(levels(&app, &a).await, (7, 0, 7));
    // A late Reserve of a committed order reserves nothing.
    let late = app.reserve(&order_id, &[(&a, 1)]).await.unwrap_err();
    assert_eq!(late.code(), Code::Aborted, "{late:?}");
    assert_eq!(levels(&app, &a).await, (7, 0, 7));

    let never = commit(&app, &order()).await.unwrap_err();
    assert_eq!(never.code(), Code::NotFound);
    let malformed = commit(&app, "nope").await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}

async fn restock_takes_a_sale_back_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.new_product("A", "misc", 100, 10).await;
    let b = app.new_product("B", "misc", 100, 5).await;
    let order_id = order();
    app.reserve(&order_id, &[(&a, 3), (&b, 5)]).await.unwrap();

    // Only a sale can be taken back.
    let early = restock(&app, &order_id).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    assert_eq!(levels(&app, &a).await, (10, 3, 7));

    commit(&app, &order_id).await.unwrap();
    assert_eq!(levels(&app, &b).await, (0, 0, 0));
    app.product(&b).await; // cached

    let returned = restock(&app, &order_id).await.unwrap();
    assert_eq!(returned.state, proto::ReservationState::Returned as i32);
    assert_eq!(levels(&app, &a).await, (10, 0, 10));
    assert_eq!(levels(&app, &b).await, (5, 0, 5));
    assert_eq!(app.product(&b).await["stock"], 5, "reads see the return");

    let twice = restock(&app, &order_id).await.unwrap();
    assert_eq!(twice.state, proto::ReservationState::Returned as i32);
    assert_eq!(levels(&app, &a).await, (10, 0, 10), "returned once");
    // Nothing moves a returned order's stock again.
    assert_eq!(
        commit(&app, &order_id).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        release(&app, &order_id).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(levels(&app, &b).await, (5, 0, 5));

    let never = restock(&app, &order()).await.unwrap_err();
    assert_eq!(never.code(), Code::NotFound);
}

async fn release_returns_stock_and_is_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Item", "misc", 100, 5).await;
    let order_id = order();
    app.reserve(&order_id, &[(&id, 4)]).await.unwrap();
    assert_eq!(levels(&app, &id).await, (5, 4, 1));

    let released = release(&app, &order_id).await.unwrap();
    assert_eq!(released.state, proto::ReservationState::Released as i32);
    assert_eq!(released.lines.len(), 1);
    assert_eq!(levels(&app, &id).await, (5, 0, 5));
    let twice = release(&app, &order_id).await.unwrap();
    assert_eq!(twice.state, proto::ReservationState::Released as i32);
    assert_eq!(levels(&app, &id).await, (5, 0, 5), "returned once");

    let commit_after = commit(&app, &order_id).await.unwrap_err();
    assert_eq!(
        commit_after.code(),
        Code::FailedPrecondition,
        "{commit_after:?}"
    );
    let reserve_after = app.reserve(&order_id, &[(&id, 1)]).await.unwrap_err();
    assert_eq!(reserve_after.code(), Code::Aborted);
    assert_eq!(levels(&app, &id).await, (5, 0, 5));

    // Releasing an order never reserved records it: its late Reserve is refused.
    let early = order();
    let recorded = release(&app, &early).await.unwrap();
    assert_eq!(recorded.state, proto::ReservationState::Released as i32);
    assert!(recorded.lines.is_empty());
    assert_eq!(
        release(&app, &early).await.unwrap().state,
        proto::ReservationState::Released as i32
    );
    let late = app.reserve(&early, &[(&id, 1)]).await.unwrap_err();
    assert_eq!(late.code(), Code::Aborted, "{late:?}");
    assert_eq!(levels(&app, &id).await, (5, 0, 5));
    let malformed = release(&app, "nope").await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}

async fn get_products_reports_prices_and_skips_unknown_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let mug = app
        .create(&crate::helpers::product_body("Mug", "kitchen", 1299, 8))
        .await;
    let mug_id = mug["id"].as_str().unwrap().to_owned();
    let lamp = app.new_product("Lamp", "lighting", 4500, 3).await;
    app.reserve(&order(), &[(&lamp, 2)]).await.unwrap();
    let gone = app.new_product("Gone", "misc", 100, 1).await;
    app.archive(&gone).await;

    let mut client = app.grpc_client().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut products = client
        .get_products(proto::GetProductsRequest {
            ids: vec![mug_id.clone(), unknown.clone(), lamp.clone(), gone.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    products.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(products.len(), 3, "{products:?}");
    let (gone_p, lamp_p, mug_p) = (&products[0], &products[1], &products[2]);
    assert_eq!(mug_p.id, mug_id);
    assert_eq!(mug_p.sku, mug["sku"].as_str().unwrap());
    assert_eq!(
        mug_p.price,
        Some(proto::Money {
            amount: 1299,
            currency: "EUR".into()
        })
    );
    assert_eq!((mug_p.stock, mug_p.reserved, mug_p.available), (8, 0, 8));
    assert!(!mug_p.archived);
    assert_eq!((lamp_p.stock, lamp_p.reserved, lamp_p.available), (3, 2, 1));
    assert_eq!(lamp_p.price.as_ref().unwrap().amount, 4500);
    assert!(gone_p.archived, "archived products are reported, flagged");

    let none = client
        .get_products(proto::GetProductsRequest { ids: vec![unknown] })
        .await
        .unwrap()
        .into_inner();
    assert!(none.products.is_empty());
    let empty = client
        .get_products(proto::GetProductsRequest { ids: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.products.is_empty());
    let bad = client
        .get_products(proto::GetProductsRequest {
            ids: vec![mug_id, "nope".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Prices are current: an update shows at once.
    app.update(
        &lamp,
        &json!({"price": {"amount": 3999, "currency": "EUR"}}),
    )
    .await;
    assert_eq!(app.stored(&lamp).await.price.unwrap().amount, 3999);
}

async fn fifty_orders_race_for_ten_units(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.new_product("Hot item", "misc", 100, 10).await;
    let client = app.grpc_client().await;
    let attempts = (0..50).map(|_| {
        let mut client = client.clone();
        let id = id.clone();
        tokio::spawn(async move {
            client
                .reserve(proto::ReserveRequest {
                    order_id: order(),
                    lines: vec![proto::Line {
                        product_id: id,
                        quantity: 1,
                    }],
                })
                .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut won = 0;
    for result in results {
        match result.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(won, 10, "exactly the stock was sold");
    assert_eq!(levels(&app, &id).await, (10, 10, 0));
    let view = app.product(&id).await;
    assert_eq!(view["available"], 0);
    assert_eq!(view["reserved"], 10);
    let in_stock = json_of(app.get("/api/v1/products?in_stock=true").await, 200).await;
    assert_eq!(in_stock["total"], 0);
}

/// Orders naming two products in either order, at once: no deadlock, no partial
/// reservation, and the two products' counts always agree.
async fn multi_line_orders_race_without_deadlocks(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.new_product("A", "misc", 100, 15).await;
    let b = app.new_product("B", "misc", 100, 15).await;
    let client = app.grpc_client().await;
    let attempts = (0..40).map(|i| {
        let mut client = client.clone();
        let (first, second) = if i % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        tokio::spawn(async move {
            let line = |product_id| proto::Line {
                product_id,
                quantity: 1,
            };
            client
                .reserve(proto::ReserveRequest {
                    order_id: order(),
                    lines: vec![line(first), line(second)],
                })
                .await
        })
    });
    let mut won = 0;
    for result in futures::future::join_all(attempts).await {
        match result.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(won, 15);
    assert_eq!(levels(&app, &a).await, (15, 15, 0));
    assert_eq!(levels(&app, &b).await, (15, 15, 0));
}

async fn expired_reservations_are_released(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.reservation_ttl = Duration::from_millis(300);
        config.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let id = app.new_product("Item", "misc", 100, 6).await;
    let expiring = order();
    let committed = order();
    app.reserve(&expiring, &[(&id, 4)]).await.unwrap();
    app.reserve(&committed, &[(&id, 1)]).await.unwrap();
    commit(&app, &committed).await.unwrap();
    assert_eq!(levels(&app, &id).await, (5, 4, 1));

    eventually(
        "the sweeper to release the reservation",
        Duration::from_secs(5),
        || {
            let app = &app;
            let id = &id;
            async move { levels(app, id).await == (5, 0, 5) }
        },
    )
    .await;
    assert_eq!(app.product(&id).await["available"], 5, "reads see it too");
    let late = commit(&app, &expiring).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    let again = release(&app, &expiring).await.unwrap();
    assert_eq!(again.state, proto::ReservationState::Released as i32);
    // The committed sale stays sold.
    assert_eq!(levels(&app, &id).await, (5, 0, 5));
    assert!(
        app.outbox()
            .await
            .iter()
            .any(|(kind, _, envelope)| kind == "inventory.changed"
                && envelope["data"]["reason"] == "expired"),
        "the release is an inventory change"
    );
}

platform_testing::backend_tests!(
    reserve_is_all_or_nothing,
    reserve_refuses_unknown_products_and_bad_input,
    reserve_is_idempotent_per_order,
    commit_sells_and_is_idempotent,
    restock_takes_a_sale_back_once,
    release_returns_stock_and_is_idempotent,
    get_products_reports_prices_and_skips_unknown_ids,
    fifty_orders_race_for_ten_units,
    multi_line_orders_race_without_deadlocks,
    expired_reservations_are_released,
);
