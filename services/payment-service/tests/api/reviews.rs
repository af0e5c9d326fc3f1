//! The manual review queue: payments the fraud rules held wait for an administrator, who
//! approves (charged now) or declines (nothing charged); undecided ones expire. Decisions are
//! announced, audited and final.

use std::time::Duration;

use platform_http::audit::{Action, Actor};
use platform_money::Currency;
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, problem, spawn_with};

async fn spawn(backend: Backend, ttl: Duration) -> TestApp {
    spawn_with(backend, move |config| {
        // Anything over €50 is held.
        config.fraud.review_limits.insert(Currency::EUR, 5_000);
        config.review_ttl = ttl;
    })
    .await
}

impl TestApp {
    /// The review queue, as an administrator sees it.
    async fn queue(&self) -> Value {
        let response = self
            .get("/api/v1/admin/payments/reviews")
            .by(&self.admin)
            .await;
        json_of(response, 200).await
    }
}

async fn an_approved_review_is_charged_and_a_declined_one_is_not(backend: Backend) {
    let app = spawn(backend, Duration::from_secs(3600)).await;
    let held = app.charge(&app.user, "tok_visa", 7_500).await;
    assert_eq!(held["status"], "requires_review", "{held}");
    let id = held["id"].as_str().unwrap();
    let requested = app.events_of("payment.review_requested", id).await;
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0]["held_by"], "fraud");
    assert_eq!(requested[0]["reasons"], json!(["amount_over_review_limit"]));
    let other = app.charge(&app.user, "tok_visa", 6_000).await;
    let other_id = other["id"].as_str().unwrap();

    // Only administrators see and decide the queue.
    let queue = app.queue().await;
    assert_eq!(queue["total"], 2);
    assert_eq!(queue["items"][0]["id"], held["id"], "oldest first");
    let user_list = app
        .get("/api/v1/admin/payments/reviews")
        .by(&app.user)
        .await;
    problem(user_list, 403).await;
    let approve = format!("/api/v1/admin/payments/{id}/approve");
    problem(app.post(&approve).by(&app.user).json(&json!({})).await, 403).await;
    assert_eq!(
        app.payment(&app.admin, id).await["status"],
        "requires_review"
    );

    let approved = json_of(
        app.post(&approve).by(&app.admin).json(&json!({})).await,
        200,
    )
    .await;
    assert_eq!(approved["status"], "captured", "{approved}");
    assert_eq!(approved["provider"], "sandbox");
    assert_eq!(app.events_of("payment.captured", id).await.len(), 1);
    let decided = app.events_of("payment.review_decided", id).await;
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["decision"], "approved");
    // Decided once: a second approval or a decline is refused, and charges nothing.
    problem(
        app.post(&approve).by(&app.admin).json(&json!({})).await,
        409,
    )
    .await;
    let decline_it = format!("/api/v1/admin/payments/{id}/decline");
    problem(
        app.post(&decline_it)
            .by(&app.admin)
            .json(&json!({"reason": "too late"}))
            .await,
        409,
    )
    .await;
    assert_eq!(app.events_of("payment.captured", id).await.len(), 1);

    // Declined: failed, nothing charged, announced.
    let decline = format!("/api/v1/admin/payments/{other_id}/decline");
    problem(
        app.post(&decline)
            .by(&app.admin)
            .json(&json!({"reason": ""}))
            .await,
        422,
    )
    .await;
    let declined = json_of(
        app.post(&decline)
            .by(&app.admin)
            .json(&json!({"reason": "stolen card report"}))
            .await,
        200,
    )
    .await;
    assert_eq!(declined["status"], "failed");
    assert_eq!(
        declined["failure_reason"],
        "not approved in review: stolen card report"
    );
    assert_eq!(declined["provider"], "");
    assert_eq!(app.events_of("payment.failed", other_id).await.len(), 1);
    assert_eq!(
        app.events_of("payment.review_decided", other_id).await[0]["decision"],
        "declined"
    );
    assert_eq!(app.queue().await["total"], 0);

    // Every decision is audited with the administrator as the actor.
    for target in [id, other_id] {
        let target = format!("payment:{target}");
        let record = platform_testing::grpc::audited(&app.events, "the review", |record| {
            record.action == Action::PaymentReview && record.target.as_deref() == Some(&target)
        })
        .await;
        assert_eq!(record.actor, Some(Actor::User(app.admin.id)));
    }
}

async fn provider_reviews_are_the_providers_to_decide(backend: Backend) {
    let app = spawn(backend, Duration::from_secs(3600)).await;
    let held = app.charge(&app.user, "tok_review", 1_000).await;
    assert_eq!(held["status"], "requires_review");
    let id = held["id"].as_str().unwrap();
    assert_eq!(
        app.events_of("payment.review_requested", id).await[0]["held_by"],
        "provider"
    );
    let approve = format!("/api/v1/admin/payments/{id}/approve");
    let refused = problem(
        app.post(&approve).by(&app.admin).json(&json!({})).await,
        409,
    )
    .await;
    assert!(
        refused["detail"].as_str().unwrap().contains("provider"),
        "{refused}"
    );
    let captured = app.charge(&app.user, "tok_visa", 1_000).await;
    let approve = format!(
        "/api/v1/admin/payments/{}/approve",
        captured["id"].as_str().unwrap()
    );
    problem(
        app.post(&approve).by(&app.admin).json(&json!({})).await,
        409,
    )
    .await;
    let missing = format!("/api/v1/admin/payments/{}/approve", uuid::Uuid::now_v7());
    problem(
        app.post(&missing).by(&app.admin).json(&json!({})).await,
        404,
    )
    .await;
}

async fn undecided_reviews_expire_declined(backend: Backend) {
    let app = spawn(backend, Duration::from_secs(1)).await;
    let held = app.charge(&app.user, "tok_visa", 9_000).await;
    assert_eq!(held["status"], "requires_review");
    let id = held["id"].as_str().unwrap();
    let mut payment = held.clone();
    for _ in 0..100 {
        payment = app.payment(&app.admin, id).await;
        if payment["status"] != "requires_review" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(payment["status"], "failed", "{payment}");
    let decided = app.events_of("payment.review_decided", id).await;
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["decision"], "expired");
    assert!(app.events_of("payment.captured", id).await.is_empty());
}

platform_testing::backend_tests!(
    an_approved_review_is_charged_and_a_declined_one_is_not,
    provider_reviews_are_the_providers_to_decide,
    undecided_reviews_expire_declined,
);
