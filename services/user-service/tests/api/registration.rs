//! `POST /api/v1/users`.

use platform_testing::Backend;
use serde_json::Value;

use crate::helpers::{PASSWORD, problem, spawn_app, unique_email};

async fn registration_returns_201_with_the_user_and_never_a_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .register("  Ada.Lovelace@Example.COM ", PASSWORD, " Ada Lovelace ")
        .await;
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.unwrap();
    let mut keys: Vec<_> = user.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["created_at", "email", "id", "name", "role", "updated_at"]
    );
    assert_eq!(user["email"], "ada.lovelace@example.com");
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["role"], "user");
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());
    for time in ["created_at", "updated_at"] {
        chrono::DateTime::parse_from_rfc3339(user[time].as_str().unwrap()).expect("RFC 3339");
    }
    assert!(!user.to_string().contains("argon2"));
}

async fn a_duplicate_email_is_409_whatever_its_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD, "First").await.status(), 201);
    problem(
        app.register(&email.to_uppercase(), PASSWORD, "Second")
            .await,
        409,
    )
    .await;
}

async fn invalid_fields_are_422_naming_each_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = problem(app.register("not-an-email", "short", "").await, 422).await;
    for field in ["email", "password", "name"] {
        assert!(body["errors"][field].is_array(), "{field} named in {body}");
    }
    assert_eq!(body["type"], "urn:problem-type:validation-error");
}

async fn password_and_name_lengths_are_enforced_at_their_bounds(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases: [(String, String, u16); 6] = [
        ("p".repeat(7), "Name".into(), 422),
        ("p".repeat(8), "Name".into(), 201),
        ("p".repeat(128), "Name".into(), 201),
        ("p".repeat(129), "Name".into(), 422),
        (PASSWORD.into(), "n".repeat(100), 201),
        (PASSWORD.into(), "n".repeat(101), 422),
    ];
    for (password, name, status) in cases {
        let response = app.register(&unique_email(), &password, &name).await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "password of {} chars, name of {} chars",
            password.len(),
            name.len()
        );
    }
    problem(app.register(&unique_email(), PASSWORD, "   ").await, 422).await;
}

async fn malformed_or_mis_shaped_bodies_are_4xx_problems(backend: Backend) {
    let app = spawn_app(backend).await;
    let send = |body: &'static str| {
        app.post("/api/v1/users")
            .header("content-type", "application/json")
            .body(body)
    };
    problem(send("{\"email\":").await, 400).await;
    let body = problem(
        send(r#"{"email":"a@b.co","password":"12345678"}"#).await,
        422,
    )
    .await;
    assert!(body["errors"]["name"].is_array(), "{body}");
    let body = problem(
        send(r#"{"email":"a@b.co","password":"12345678","name":"x","role":"admin"}"#).await,
        422,
    )
    .await;
    assert!(
        body["errors"]["role"].is_array(),
        "unknown fields are refused: {body}"
    );
    problem(
        send(r#"{"email":1,"password":"12345678","name":"x"}"#).await,
        422,
    )
    .await;
    problem(app.post("/api/v1/users").body("email=a").await, 415).await;
}

async fn concurrent_registrations_of_one_email_create_exactly_one_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    let attempts = (0..20).map(|i| {
        let app = &app;
        let email = email.clone();
        async move {
            app.register(&email, PASSWORD, &format!("Racer {i}"))
                .await
                .status()
                .as_u16()
        }
    });
    let mut statuses = futures::future::join_all(attempts).await;
    statuses.sort();
    let created = statuses.iter().filter(|s| **s == 201).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((created, conflicts), (1, 19), "{statuses:?}");
    // And exactly one user.registered event for it.
    let registered = app
        .outbox_types()
        .await
        .into_iter()
        .filter(|(t, _)| t == "user.registered")
        .count();
    assert_eq!(registered, 2, "the seeded admin and the one winner");
}

async fn registration_writes_a_user_registered_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.register(&unique_email(), PASSWORD, "Evented").await;
    let user: Value = response.json().await.unwrap();
    let events = app.outbox_types().await;
    assert!(events.contains(&(
        "user.registered".to_owned(),
        user["id"].as_str().unwrap().to_owned()
    )));
    // A failed registration writes nothing.
    let before = app.outbox_types().await.len();
    app.register(&unique_email(), "short", "X").await;
    assert_eq!(app.outbox_types().await.len(), before);
}

platform_testing::backend_tests!(
    registration_returns_201_with_the_user_and_never_a_hash,
    a_duplicate_email_is_409_whatever_its_case,
    invalid_fields_are_422_naming_each_field,
    password_and_name_lengths_are_enforced_at_their_bounds,
    malformed_or_mis_shaped_bodies_are_4xx_problems,
    concurrent_registrations_of_one_email_create_exactly_one_account,
    registration_writes_a_user_registered_event,
);
