//! Every authentication decision and account change is in the audit trail, without secrets.

use platform_http::audit::{Action, Actor, Outcome};
use platform_testing::{AuditCapture, Backend};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, problem, spawn_with, unique_email};

async fn authentication_decisions_and_account_changes_are_audited(backend: Backend) {
    let capture = AuditCapture::default();
    let app = spawn_with(backend, |config| {
        config.audit = Some(capture.audit("user-service"));
        config.throttle.max_failures = 2;
    })
    .await;
    let has = |action, outcome, reason| capture.find(action, outcome, reason).is_some();

    let email = unique_email();
    let user: Value = app
        .register(&email, PASSWORD, "Audited")
        .await
        .json()
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    let uuid: uuid::Uuid = id.parse().unwrap();
    let record = capture
        .find(Action::UserRegister, Outcome::Success, Some("user"))
        .unwrap();
    assert_eq!(record.actor, Some(Actor::User(uuid)));
    assert_eq!(
        record.target.as_deref(),
        Some(format!("user:{id}").as_str())
    );

    problem(app.login(&email, "not the password").await, 401).await;
    let record = capture
        .find(Action::Login, Outcome::Failure, Some("bad_password"))
        .unwrap();
    assert_eq!(record.actor, Some(Actor::User(uuid)));
    assert!(record.request_id.is_some() && record.client_ip.is_some());
    problem(app.login(&unique_email(), PASSWORD).await, 401).await;
    let record = capture
        .find(Action::Login, Outcome::Failure, Some("unknown_account"))
        .unwrap();
    assert_eq!(record.actor, None);

    let tokens = app.login_ok(&email, PASSWORD).await;
    assert!(has(Action::Login, Outcome::Success, None));

    let rotated: Value = app.refresh(&tokens.refresh).await.json().await.unwrap();
    assert!(has(Action::Refresh, Outcome::Success, None));
    problem(app.refresh("made-up").await, 401).await;
    assert!(has(
        Action::Refresh,
        Outcome::Failure,
        Some("invalid_token")
    ));
    problem(app.refresh(&tokens.refresh).await, 401).await;
    assert!(has(
        Action::RefreshReuse,
        Outcome::Denied,
        Some("family_revoked")
    ));

    let access = rotated["access_token"].as_str().unwrap();
    let response = app
        .put(&format!("/api/v1/users/{id}"))
        .by(access)
        .json(&json!({"role": "admin"}))
        .await;
    problem(response, 403).await;
    assert!(has(
        Action::AccessDenied,
        Outcome::Denied,
        Some("admin_only")
    ));

    let session = app.login_ok(&email, PASSWORD).await;
    let response = app
        .put(&format!("/api/v1/users/{id}"))
        .by(&session.access)
        .json(&json!({"password": "a new password here", "current_password": PASSWORD}))
        .await;
    assert_eq!(response.status(), 200);
    assert!(has(Action::PasswordChange, Outcome::Success, None));
    // The old token is refused now, and that is recorded too.
    problem(app.get("/api/v1/users/me").by(&session.access).await, 401).await;
    let record = capture
        .find(Action::TokenRejected, Outcome::Denied, Some("revoked"))
        .unwrap();
    assert_eq!(record.actor, Some(Actor::User(uuid)));
    assert_eq!(record.target.as_deref(), Some("GET /api/v1/users/me"));
    problem(app.get("/api/v1/users/me").await, 401).await;
    assert!(has(Action::TokenRejected, Outcome::Denied, Some("missing")));

    let admin = app.admin().await;
    let response = app
        .put(&format!("/api/v1/users/{id}"))
        .by(&admin.access)
        .json(&json!({"role": "admin"}))
        .await;
    assert_eq!(response.status(), 200);
    assert!(has(
        Action::UserRoleChange,
        Outcome::Success,
        Some("granted_admin")
    ));

    // Two failures lock the account: the next attempt is recorded as throttled.
    for _ in 0..2 {
        problem(app.login(&email, "wrong again").await, 401).await;
    }
    problem(app.login(&email, "a new password here").await, 401).await;
    assert!(has(Action::Login, Outcome::Failure, Some("throttled")));

    let response = app.logout(&session.refresh).await;
    assert_eq!(response.status(), 204);
    assert!(has(Action::Logout, Outcome::Success, None));

    let response = app
        .delete(&format!("/api/v1/users/{id}"))
        .by(&admin.access)
        .await;
    assert_eq!(response.status(), 204);
    let record = capture
        .find(Action::UserDelete, Outcome::Success, None)
        .unwrap();
    assert_eq!(
        record.target.as_deref(),
        Some(format!("user:{id}").as_str())
    );

    // Nothing secret, nor the email as typed, is in any record.
    let trail = serde_json::to_string(&capture.records()).unwrap();
    for secret in [
        PASSWORD,
        "a new password here",
        &tokens.refresh,
        &session.access,
        &email,
    ] {
        assert!(!trail.contains(secret), "the audit trail holds {secret}");
    }
}

platform_testing::backend_tests!(authentication_decisions_and_account_changes_are_audited);
