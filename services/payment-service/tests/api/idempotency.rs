//! The `Idempotency-Key` of a charge: a repeat replays the first answer, a different request
//! under the same key is refused, keys are per user, and concurrent repeats charge once.

use platform_auth::Role;
use platform_testing::Backend;
use serde_json::{Value, json};

use payment_service::repo::entities::{idempotency_key, payment};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::helpers::{
    TestApp, actor, charge_body, error_fields, json_of, new_key, problem, spawn_app,
};

async fn a_repeat_replays_the_first_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = new_key();
    let body = charge_body("tok_visa", 2500, "EUR");
    let first = app.post_charge(&key).by(&app.user).json(&body).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_text = first.text().await.unwrap();

    let second = app.post_charge(&key).by(&app.user).json(&body).await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second_text = second.text().await.unwrap();
    assert_eq!(first_text, second_text, "the same body");
    let first: Value = serde_json::from_str(&first_text).unwrap();

    let page = app.list(&app.user, &[]).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], first["id"]);
    assert_eq!(
        app.events_of("payment.captured", first["id"].as_str().unwrap())
            .await
            .len(),
        1
    );

    // Declines, reviews and blocks replay too (no second provider call).
    let key = new_key();
    let declined = charge_body("tok_decline", 100, "EUR");
    let one = json_of(
        app.post_charge(&key).by(&app.user).json(&declined).await,
        201,
    )
    .await;
    let again = app.post_charge(&key).by(&app.user).json(&declined).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(again, 201).await, one);
    assert_eq!(app.list(&app.user, &[]).await["total"], 2);
}

async fn a_key_cannot_be_reused_for_another_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = new_key();
    let body = charge_body("tok_visa", 2500, "EUR");
    json_of(app.post_charge(&key).by(&app.user).json(&body).await, 201).await;

    let mut other_amount = body.clone();
    other_amount["amount"]["amount"] = json!(2600);
    let mut other_order = body.clone();
    other_order["order_id"] = json!(uuid::Uuid::now_v7());
    let mut other_card = body.clone();
    other_card["method"]["token"] = json!("tok_mastercard");
    let mut other_bin = body.clone();
    other_bin["method"]["bin"] = json!("400000");
    let mut other_country = body.clone();
    other_country["method"]["country"] = json!("FR");
    for changed in [
        other_amount,
        other_order,
        other_card,
        other_bin,
        other_country,
    ] {
        let refused = problem(
            app.post_charge(&key).by(&app.user).json(&changed).await,
            422,
        )
        .await;
        assert_eq!(error_fields(&refused), ["Idempotency-Key"], "{changed}");
    }
    assert_eq!(app.list(&app.user, &[]).await["total"], 1);
}

async fn keys_belong_to_their_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let other = actor(Role::User);
    let key = new_key();
    let body = charge_body("tok_visa", 2500, "EUR");
    let mine = app.post_charge(&key).by(&app.user).json(&body).await;
    let theirs = app.post_charge(&key).by(&other).json(&body).await;
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    let mine = json_of(mine, 201).await;
    let theirs = json_of(theirs, 201).await;
    assert_ne!(mine["id"], theirs["id"]);
    assert_eq!(theirs["user_id"], other.id.to_string());
    assert_eq!(app.list(&app.admin, &[]).await["total"], 2);
    assert_eq!(app.list(&other, &[]).await["total"], 1);
}

async fn concurrent_repeats_charge_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = new_key();
    let body = charge_body("tok_visa", 1500, "EUR");
    let responses = futures::future::join_all(
        (0..20).map(|_| app.post_charge(&key).by(&app.user).json(&body).send()),
    )
    .await;
    let mut ids = Vec::new();
    let mut in_progress = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => {
                let payment: Value = response.json().await.unwrap();
                assert_eq!(payment["status"], "captured");
                ids.push(payment["id"].clone());
            }
            409 => {
                assert!(response.headers().contains_key("retry-after"));
                in_progress += 1;
            }
            status => panic!("unexpected {status}: {}", response.text().await.unwrap()),
        }
    }
    assert!(!ids.is_empty(), "{in_progress} in progress, none answered");
    ids.dedup();
    assert_eq!(ids.len(), 1, "one payment: {ids:?}");
    let page = app.list(&app.admin, &[]).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], ids[0]);
    assert_eq!(app.outbox().await.len(), 1, "captured once");

    // Once finished, a repeat is a replay.
    let again = app.post_charge(&key).by(&app.user).json(&body).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(again, 201).await["id"], ids[0]);
}

/// What a crash between recording a charge and hearing from the provider leaves: the key
/// without a response, the payment pending.
async fn rewind_to_in_progress(app: &TestApp, key: &str, payment_id: &str, age: chrono::Duration) {
    let db = app.connect().await;
    idempotency_key::Entity::update_many()
        .col_expr(
            idempotency_key::Column::Response,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            idempotency_key::Column::CreatedAt,
            Expr::value(chrono::Utc::now() - age),
        )
        .filter(idempotency_key::Column::Key.eq(key))
        .exec(&db)
        .await
        .unwrap();
    payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value("pending"))
        .col_expr(payment::Column::Provider, Expr::value(""))
        .col_expr(
            payment::Column::ProviderPaymentId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            payment::Column::CardBrand,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            payment::Column::CardLast4,
            Expr::value(Option::<String>::None),
        )
        .filter(payment::Column::Id.eq(uuid::Uuid::parse_str(payment_id).unwrap()))
        .exec(&db)
        .await
        .unwrap();
    db.close().await.unwrap();
}

async fn an_unfinished_charge_is_in_progress_then_taken_over(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = new_key();
    let body = charge_body("tok_visa", 1500, "EUR");
    let first = json_of(app.post_charge(&key).by(&app.user).json(&body).await, 201).await;
    let id = first["id"].as_str().unwrap();

    // Still running (recently claimed): retry later.
    rewind_to_in_progress(&app, &key, id, chrono::Duration::seconds(1)).await;
    let busy = app.post_charge(&key).by(&app.user).json(&body).await;
    assert_eq!(busy.headers()["retry-after"], "1");
    problem(busy, 409).await;
    // A different request under the key is still refused as such.
    let other = charge_body("tok_visa", 1600, "EUR");
    problem(app.post_charge(&key).by(&app.user).json(&other).await, 422).await;

    // Abandoned (the process died): a repeat finishes the same payment.
    rewind_to_in_progress(&app, &key, id, chrono::Duration::minutes(5)).await;
    let taken_over = app.post_charge(&key).by(&app.user).json(&body).await;
    assert_eq!(taken_over.headers()["idempotent-replayed"], "true");
    let taken_over = json_of(taken_over, 201).await;
    assert_eq!(taken_over["id"], first["id"]);
    assert_eq!(taken_over["status"], "captured");
    assert_eq!(taken_over["card"], first["card"]);
    assert_eq!(app.list(&app.admin, &[]).await["total"], 1);
    // And the key now replays that answer.
    let again = app.post_charge(&key).by(&app.user).json(&body).await;
    assert_eq!(json_of(again, 201).await, taken_over);
}

platform_testing::backend_tests!(
    an_unfinished_charge_is_in_progress_then_taken_over,
    a_repeat_replays_the_first_answer,
    a_key_cannot_be_reused_for_another_request,
    keys_belong_to_their_user,
    concurrent_repeats_charge_once,
);
