//! `/api/v1/users/me`, `/api/v1/users/{id}` and the admin listing.

use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, PASSWORD, problem, spawn_app, unique_email};

async fn me_returns_the_caller(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, tokens) = app.new_user().await;
    let me: Value = app
        .get("/api/v1/users/me")
        .by(&tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me, user);
}

async fn users_see_themselves_admins_see_everyone_others_get_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, alice_tokens) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    let alice_path = format!("/api/v1/users/{}", alice["id"].as_str().unwrap());
    let bob_path = format!("/api/v1/users/{}", bob["id"].as_str().unwrap());

    let own: Value = app
        .get(&alice_path)
        .by(&alice_tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own, alice);
    let body = problem(app.get(&bob_path).by(&alice_tokens.access).await, 404).await;
    let missing = format!("/api/v1/users/{}", uuid::Uuid::now_v7());
    let missing_body = problem(app.get(&missing).by(&alice_tokens.access).await, 404).await;
    assert_eq!(
        body, missing_body,
        "someone else's account looks exactly like a missing one"
    );

    let admin = app.admin().await;
    let seen: Value = app
        .get(&bob_path)
        .by(&admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen, bob);
    problem(app.get(&missing).by(&admin.access).await, 404).await;
    problem(
        app.get("/api/v1/users/not-a-uuid").by(&admin.access).await,
        400,
    )
    .await;
}

async fn users_update_their_name(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, tokens) = app.new_user().await;
    let path = format!("/api/v1/users/{}", user["id"].as_str().unwrap());
    let response = app
        .put(&path)
        .by(&tokens.access)
        .json(&json!({"name": "  Renamed  "}))
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(updated["email"], user["email"]);
    let before =
        chrono::DateTime::parse_from_rfc3339(user["updated_at"].as_str().unwrap()).unwrap();
    let after =
        chrono::DateTime::parse_from_rfc3339(updated["updated_at"].as_str().unwrap()).unwrap();
    assert!(after >= before);
    let me: Value = app
        .get("/api/v1/users/me")
        .by(&tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "Renamed");

    let body = problem(
        app.put(&path)
            .by(&tokens.access)
            .json(&json!({"name": ""}))
            .await,
        422,
    )
    .await;
    assert!(body["errors"]["name"].is_array());
    problem(
        app.put(&path)
            .by(&tokens.access)
            .json(&json!({"email": "x@y.zz"}))
            .await,
        422,
    )
    .await;

    let (other, other_tokens) = app.new_user().await;
    problem(
        app.put(&path)
            .by(&other_tokens.access)
            .json(&json!({"name": "Hijacked"}))
            .await,
        404,
    )
    .await;
    let _ = other;
}

async fn changing_ones_password_needs_the_current_one_and_ends_every_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, tokens) = app.new_user().await;
    let email = user["email"].as_str().unwrap();
    let path = format!("/api/v1/users/{}", user["id"].as_str().unwrap());
    let new_password = "a brand new password";

    let body = problem(
        app.put(&path)
            .by(&tokens.access)
            .json(&json!({"password": new_password}))
            .await,
        422,
    )
    .await;
    assert!(body["errors"]["current_password"].is_array());
    let body = problem(
        app.put(&path)
            .by(&tokens.access)
            .json(&json!({"password": new_password, "current_password": "wrong one"}))
            .await,
        422,
    )
    .await;
    assert!(body["errors"]["current_password"].is_array());
    let body = problem(
        app.put(&path)
            .by(&tokens.access)
            .json(&json!({"password": "short", "current_password": PASSWORD}))
            .await,
        422,
    )
    .await;
    assert!(body["errors"]["password"].is_array());
    // Nothing changed so far.
    app.login_ok(email, PASSWORD).await;

    let response = app
        .put(&path)
        .by(&tokens.access)
        .json(&json!({"password": new_password, "current_password": PASSWORD}))
        .await;
    assert_eq!(response.status(), 200);
    assert!(!response.text().await.unwrap().contains("argon2"));
    problem(app.login(email, PASSWORD).await, 401).await;
    app.login_ok(email, new_password).await;
    problem(app.refresh(&tokens.refresh).await, 401).await;
}

async fn admins_reset_other_passwords_without_the_current_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = app.new_user().await;
    let path = format!("/api/v1/users/{}", user["id"].as_str().unwrap());
    let admin = app.admin().await;
    let response = app
        .put(&path)
        .by(&admin.access)
        .json(&json!({"password": "reset by admin"}))
        .await;
    assert_eq!(response.status(), 200);
    app.login_ok(user["email"].as_str().unwrap(), "reset by admin")
        .await;
    // But an admin changing their own password proves they know it.
    let me: Value = app
        .get("/api/v1/users/me")
        .by(&admin.access)
        .await
        .json()
        .await
        .unwrap();
    let own = format!("/api/v1/users/{}", me["id"].as_str().unwrap());
    problem(
        app.put(&own)
            .by(&admin.access)
            .json(&json!({"password": "new admin password"}))
            .await,
        422,
    )
    .await;
}

async fn a_deleted_user_can_no_longer_log_in_or_refresh(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, tokens) = app.new_user().await;
    let path = format!("/api/v1/users/{}", user["id"].as_str().unwrap());
    let (_, stranger) = app.new_user().await;
    problem(app.delete(&path).by(&stranger.access).await, 404).await;

    assert_eq!(app.delete(&path).by(&tokens.access).await.status(), 204);
    problem(
        app.login(user["email"].as_str().unwrap(), PASSWORD).await,
        401,
    )
    .await;
    problem(app.refresh(&tokens.refresh).await, 401).await;
    // The deleted user's access tokens were revoked with the account.
    problem(app.get("/api/v1/users/me").by(&tokens.access).await, 401).await;
    problem(app.delete(&path).by(&tokens.access).await, 401).await;

    let (victim, _) = app.new_user().await;
    let admin = app.admin().await;
    let victim_path = format!("/api/v1/users/{}", victim["id"].as_str().unwrap());
    assert_eq!(
        app.delete(&victim_path).by(&admin.access).await.status(),
        204
    );
    problem(app.get(&victim_path).by(&admin.access).await, 404).await;
    // The email is free again.
    assert_eq!(
        app.register(victim["email"].as_str().unwrap(), PASSWORD, "Again")
            .await
            .status(),
        201
    );
}

async fn updates_and_deletions_write_their_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, tokens) = app.new_user().await;
    let id = user["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/users/{id}");
    app.put(&path)
        .by(&tokens.access)
        .json(&json!({"name": "New"}))
        .await;
    app.delete(&path).by(&tokens.access).await;
    let mine: Vec<String> = app
        .outbox_types()
        .await
        .into_iter()
        .filter(|(_, subject)| *subject == id)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(mine, ["user.registered", "user.updated", "user.deleted"]);
}

async fn only_admins_list_users_a_page_at_a_time(backend: Backend) {
    let app = spawn_app(backend).await;
    for _ in 0..3 {
        app.register(&unique_email(), PASSWORD, "Listed").await;
    }
    let (_, user) = app.new_user().await;
    problem(app.get("/api/v1/users").by(&user.access).await, 403).await;
    problem(app.get("/api/v1/users").await, 401).await;

    let admin = app.admin().await;
    let page: Value = app
        .get("/api/v1/users")
        .by(&admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["page"], 1);
    assert_eq!(page["per_page"], 20);
    assert_eq!(page["total"], 5, "admin + 3 + 1");
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert_eq!(page["items"][0]["email"], ADMIN_EMAIL, "oldest first");
    assert!(!page.to_string().contains("argon2"));

    let page: Value = app
        .get("/api/v1/users?page=2&per_page=2")
        .by(&admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["page"], 2);
    let page: Value = app
        .get("/api/v1/users?page=3&per_page=2")
        .by(&admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let page: Value = app
        .get("/api/v1/users?per_page=1000")
        .by(&admin.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["per_page"], 100);
    problem(app.get("/api/v1/users?page=0").by(&admin.access).await, 422).await;
    problem(
        app.get("/api/v1/users?per_page=many")
            .by(&admin.access)
            .await,
        400,
    )
    .await;
}

platform_testing::backend_tests!(
    me_returns_the_caller,
    users_see_themselves_admins_see_everyone_others_get_404,
    users_update_their_name,
    changing_ones_password_needs_the_current_one_and_ends_every_session,
    admins_reset_other_passwords_without_the_current_one,
    a_deleted_user_can_no_longer_log_in_or_refresh,
    updates_and_deletions_write_their_events,
    only_admins_list_users_a_page_at_a_time,
);
