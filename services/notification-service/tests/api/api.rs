//! The REST API: who may post, what is accepted, the inbox and its isolation, preferences.

use std::time::Duration;

use platform_auth::Role;
use platform_config::SecretString;
use platform_testing::Backend;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Bus, actor, error_fields, json_of, on, problem, spawn_app, spawn_with};

const INTERNAL: &str = "internal-service-token-0123456789";

async fn posting_takes_an_administrator_or_the_internal_token(backend: Backend, bus: Bus) {
    let app = spawn_with(backend, bus, |config| {
        config.internal_token = Some(SecretString::from(INTERNAL));
    })
    .await;
    let body = json!({"user_id": app.user.id, "channel": "in_app",
                      "subject": "Hello", "body": "From the shop"});
    let path = "/api/v1/notifications";
    problem(app.post(path).json(&body).await, 401).await;
    problem(app.post(path).by(&app.user).json(&body).await, 403).await;
    json_of(app.post(path).by(&app.admin).json(&body).await, 202).await;

    let internal = |token: &str| app.post(path).header("X-Internal-Token", token).json(&body);
    json_of(internal(INTERNAL).await, 202).await;
    problem(internal("internal-service-token-012345678X").await, 401).await;
    problem(internal("").await, 401).await;
    assert_eq!(app.inbox(&app.user, "").await["total"], 2);
}

async fn posted_notifications_are_validated(backend: Backend, bus: Bus) {
    let app = spawn_app(backend, bus).await;
    let user = app.user.id;
    let path = "/api/v1/notifications";
    for (body, fields) in [
        (json!({"user_id": user}), vec!["template"]),
        (
            json!({"user_id": user, "template": "welcome", "subject": "x", "body": "y"}),
            vec!["template"],
        ),
        (
            json!({"user_id": user, "template": "nope"}),
            vec!["template"],
        ),
        (json!({"user_id": user, "subject": "x"}), vec!["body"]),
        (
            json!({"user_id": user, "subject": "", "body": "y"}),
            vec!["subject"],
        ),
        (
            json!({"user_id": user, "subject": "a\nb", "body": "y"}),
            vec!["subject"],
        ),
        (
            json!({"user_id": user, "channel": "fax", "subject": "x", "body": "y"}),
            vec!["channel"],
        ),
        (
            json!({"user_id": user, "subject": "x", "body": "y", "data": [1]}),
            vec!["data"],
        ),
        // The template needs `order_id`.
        (
            json!({"user_id": user, "template": "order_shipped"}),
            vec!["data"],
        ),
        (
            json!({"user_id": "not-a-uuid", "subject": "x", "body": "y"}),
            vec!["user_id"],
        ),
        (
            json!({"user_id": user, "subject": "x", "body": "y", "admin": true}),
            vec!["admin"],
        ),
    ] {
        let response = app.post(path).by(&app.admin).json(&body).await;
        let problem = problem(response, 422).await;
        assert_eq!(error_fields(&problem), fields, "{body}: {problem}");
    }
    let malformed = app
        .post(path)
        .by(&app.admin)
        .header("content-type", "application/json")
        .body("{\"user_id\": ")
        .await;
    problem(malformed, 400).await;
    assert!(app.deliveries("").await.is_empty(), "nothing was created");
}

async fn a_posted_notification_is_queued_then_delivered(backend: Backend, bus: Bus) {
    let app = spawn_app(backend, bus).await;
    app.register(&app.user, "ada@example.org", "user").await;
    app.settled(app.user.id, 2).await;
    let accepted = app
        .notify(&json!({"user_id": app.user.id, "template": "order_shipped",
                        "data": {"order_id": "1042", "tracking": "XY"}}))
        .await;
    let created = accepted["notifications"].as_array().unwrap();
    let channels: Vec<&str> = created
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    // SMS and push are opt-in: not considered without a subscription.
    assert_eq!(channels, ["in_app", "email"]);
    assert_eq!(on(created, "in_app")["status"], "sent");
    assert_eq!(on(created, "email")["status"], "queued");

    let rows = app.settled(app.user.id, 4).await;
    let email = rows
        .iter()
        .find(|r| r["id"] == on(created, "email")["id"])
        .unwrap();
    assert_eq!(email["status"], "sent");
    assert_eq!(email["event_type"], "direct");
    let logged = app.log.logged();
    let sent = logged
        .iter()
        .find(|m| m.subject == "Order 1042 has shipped")
        .unwrap();
    assert_eq!(sent.recipient.as_str(), "ada@example.org");
    assert!(sent.html.as_deref().unwrap().contains("<b>1042</b>"));
    assert_eq!(sent.data["tracking"], "XY");

    // One channel, asked for explicitly, while opted out: recorded as suppressed.
    app.subscribe(
        &app.user,
        &json!({"channel": "email", "event_types": ["*"], "enabled": false}),
    )
    .await;
    let accepted = app
        .notify(&json!({"user_id": app.user.id, "channel": "email",
                        "subject": "Sale", "body": "Everything must go"}))
        .await;
    assert_eq!(accepted["notifications"][0]["status"], "suppressed");
    assert_eq!(accepted["notifications"][0]["reason"], "opted_out");
    // And to a user nobody knows: in-app works, email has nowhere to go.
    let stranger = Uuid::now_v7();
    let accepted = app
        .notify(&json!({"user_id": stranger, "subject": "Hi", "body": "there"}))
        .await;
    assert_eq!(
        on(accepted["notifications"].as_array().unwrap(), "email")["reason"],
        "no_address"
    );
}

async fn mark_read_is_isolated_between_users(backend: Backend, bus: Bus) {
    let app = spawn_app(backend, bus).await;
    let other = actor(Role::User);
    for who in [&app.user, &app.user, &other] {
        app.notify(&json!({"user_id": who.id, "channel": "in_app",
                           "subject": "Hi", "body": "there", "data": {"n": 1}}))
            .await;
    }
    let mine = app.inbox(&app.user, "").await;
    assert_eq!(mine["total"], 2);
    let id = mine["items"][0]["id"].as_str().unwrap().to_owned();
    assert!(mine["items"][0]["read_at"].is_null());
    assert_eq!(mine["items"][0]["data"]["n"], 1);

    let read = |who: &crate::helpers::Actor, id: &str| {
        let path = format!("/api/v1/notifications/{id}/read");
        let who = who.clone();
        let app = &app;
        async move { app.put(&path).by(&who).await }
    };
    // Someone else's notification does not exist, as far as they can tell.
    problem(read(&other, &id).await, 404).await;
    assert_eq!(app.inbox(&app.user, "?unread=true").await["total"], 2);
    assert_eq!(read(&app.user, &id).await.status(), 204);
    assert_eq!(
        read(&app.user, &id).await.status(),
        204,
        "reading twice is fine"
    );
    let unread = app.inbox(&app.user, "?unread=true").await;
    assert_eq!(unread["total"], 1);
    assert_ne!(unread["items"][0]["id"], id.as_str());
    let all = app.inbox(&app.user, "").await;
    let first = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap();
    assert!(first["read_at"].is_string());

    assert_eq!(app.inbox(&other, "").await["total"], 1);
    assert_eq!(app.inbox(&other, "?unread=true").await["total"], 1);
    problem(read(&app.user, &Uuid::now_v7().to_string()).await, 404).await;
    problem(read(&app.user, "not-a-uuid").await, 400).await;
    problem(
        app.get("/api/v1/notifications?per_page=0")
            .by(&app.user)
            .await,
        422,
    )
    .await;
    let page = app.inbox(&app.user, "?per_page=1&page=2").await;
    assert_eq!(
        (
            page["total"].clone(),
            page["items"].as_array().unwrap().len()
        ),
        (json!(2), 1)
    );
    problem(app.get("/api/v1/notifications").await, 401).await;
    // The administrators' list is theirs only.
    problem(
        app.get("/api/v1/notifications/deliveries")
            .by(&app.user)
            .await,
        403,
    )
    .await;
    problem(
        app.get("/api/v1/notifications/deliveries?status=lost")
            .by(&app.admin)
            .await,
        422,
    )
    .await;
}

async fn preferences_are_validated_and_reported(backend: Backend, bus: Bus) {
    let app = spawn_app(backend, bus).await;
    app.register(&app.user, "ada@example.org", "user").await;
    crate::helpers::eventually("the contact", Duration::from_secs(10), || async {
        let p = json_of(
            app.get("/api/v1/notifications/preferences")
                .by(&app.user)
                .await,
            200,
        )
        .await;
        p["channels"][0]["address"] == "ada@example.org"
    })
    .await;
    let defaults = json_of(
        app.get("/api/v1/notifications/preferences")
            .by(&app.user)
            .await,
        200,
    )
    .await;
    let channel = |view: &serde_json::Value, name: &str| {
        view["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        channel(&defaults, "email")["event_types"]["order.shipped"],
        true
    );
    assert_eq!(channel(&defaults, "in_app")["event_types"]["direct"], true);
    assert_eq!(
        channel(&defaults, "sms")["event_types"]["order.shipped"],
        false
    );
    assert!(channel(&defaults, "sms")["address"].is_null());

    let path = "/api/v1/notifications/subscribe";
    for (body, fields) in [
        (
            json!({"channel": "sms", "event_types": ["order.shipped"], "enabled": true}),
            vec!["address"],
        ),
        (
            json!({"channel": "sms", "event_types": ["*"], "enabled": true, "address": "555-1234"}),
            vec!["address"],
        ),
        (
            json!({"channel": "push", "event_types": ["*"], "enabled": true, "address": ""}),
            vec!["address"],
        ),
        (
            json!({"channel": "email", "event_types": ["*"], "enabled": true, "address": "not-an-email"}),
            vec!["address"],
        ),
        (
            json!({"channel": "in_app", "event_types": ["*"], "enabled": true, "address": "x"}),
            vec!["address"],
        ),
        (
            json!({"channel": "email", "event_types": ["order.exploded"], "enabled": false}),
            vec!["event_types[0]"],
        ),
        (
            json!({"channel": "email", "event_types": [], "enabled": false}),
            vec!["event_types"],
        ),
        (
            json!({"channel": "pigeon", "event_types": ["*"], "enabled": true}),
            vec!["channel"],
        ),
        (
            json!({"channel": "email", "event_types": ["*"]}),
            vec!["enabled"],
        ),
    ] {
        let problem = problem(app.post(path).by(&app.user).json(&body).await, 422).await;
        assert_eq!(error_fields(&problem), fields, "{body}: {problem}");
    }

    let after = app
        .subscribe(
            &app.user,
            &json!({"channel": "sms", "event_types": ["order.shipped", "order.failed"],
                                      "enabled": true, "address": "+1 (555) 123-4567"}),
        )
        .await;
    let sms = channel(&after, "sms");
    assert_eq!(sms["address"], "+15551234567");
    assert_eq!(sms["event_types"]["order.shipped"], true);
    assert_eq!(sms["event_types"]["order.failed"], true);
    assert_eq!(sms["event_types"]["order.confirmed"], false);
    // With an address on record, turning more on needs none.
    app.subscribe(
        &app.user,
        &json!({"channel": "sms", "event_types": ["direct"], "enabled": true}),
    )
    .await;
    // `*` turns everything off; the exact choices made before still win.
    let after = app
        .subscribe(
            &app.user,
            &json!({"channel": "sms", "event_types": ["*"], "enabled": false}),
        )
        .await;
    let sms = channel(&after, "sms");
    assert_eq!(sms["event_types"]["order.confirmed"], false);
    assert_eq!(sms["event_types"]["order.shipped"], true);
    let after = app
        .subscribe(
            &app.user,
            &json!({"channel": "email", "event_types": ["*"], "enabled": true,
                                      "address": "ada.work@example.com"}),
        )
        .await;
    assert_eq!(channel(&after, "email")["address"], "ada.work@example.com");
    // Another user sees none of it.
    let other = actor(Role::User);
    let theirs = json_of(
        app.get("/api/v1/notifications/preferences")
            .by(&other)
            .await,
        200,
    )
    .await;
    assert!(channel(&theirs, "sms")["address"].is_null());
    assert!(channel(&theirs, "email")["address"].is_null());
}

crate::db_tests!(
    posting_takes_an_administrator_or_the_internal_token,
    posted_notifications_are_validated,
    a_posted_notification_is_queued_then_delivered,
    mark_read_is_isolated_between_users,
    preferences_are_validated_and_reported,
);
