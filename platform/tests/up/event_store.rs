//! What must reach the event store through the bus, polled through the gateway as an
//! administrator: domain events and audit records, which arrive some time after the request
//! that caused them.

use std::time::Duration;

use platform_testing::TestApp;
use serde_json::Value;

use crate::journeys::admin_token;

/// The `user.registered` event of `user` reaches the event store: outbox → relay → bus →
/// consumer → store, read back through the gateway by an administrator.
pub(crate) async fn registration_event_reaches_the_event_store(app: &TestApp, user: &str) {
    let admin = admin_token(app).await;
    for _ in 0..250 {
        let page: Value = app
            .get(&format!(
                "/api/v1/admin/events?subject={user}&type=user.registered"
            ))
            .by(&admin)
            .await
            .json()
            .await
            .unwrap();
        if page["total"] == 1 {
            assert_eq!(page["items"][0]["source"], "user-service");
            assert_eq!(page["items"][0]["data"]["user_id"], user);
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let everything = app
        .get("/api/v1/admin/events")
        .by(&admin)
        .await
        .text()
        .await
        .unwrap();
    panic!("user.registered for {user} never reached the event store: {everything}");
}

/// Polls the event store's audit trail (through the gateway, as an administrator) for a
/// record of `action` that `wanted` picks, and returns it; `what` names it if it never comes.
async fn audit_record(
    app: &TestApp,
    action: &str,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let admin = admin_token(app).await;
    let mut last = Value::Null;
    for _ in 0..250 {
        let response = app
            .get(&format!("/api/v1/admin/audit?action={action}"))
            .by(&admin)
            .await;
        last = platform_testing::http::json_of(response, 200).await;
        if let Some(record) = last["items"].as_array().unwrap().iter().find(|r| wanted(r)) {
            return record.clone();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("{what} did not reach the event store: {last}");
}

/// The audit record of an administrator's action reaches the event store: the service's
/// sink → bus → the store's consumer → `GET /api/v1/admin/audit`, through the gateway.
pub(crate) async fn audit_record_reaches_the_event_store(
    app: &TestApp,
    action: &str,
    target: &str,
) {
    let what = format!("the {action} record of {target}");
    let record = audit_record(app, action, &what, |r| r["target"] == target).await;
    assert_eq!(record["outcome"], "success");
    assert!(record["actor"].is_string(), "{record}");
    assert!(record["request_id"].is_string(), "{record}");
}

/// A token the gateway refuses at the edge is an audit record in the event store too, with
/// the client's address and the request id.
pub(crate) async fn edge_refusal_reaches_the_event_store(app: &TestApp) {
    let refused = app
        .get("/api/v1/orders")
        .by("not.a.token")
        .header("x-request-id", "edge-refusal-1")
        .await;
    assert_eq!(refused.status(), 401);
    let record = audit_record(app, "auth.token_rejected", "the edge's refusal", |r| {
        r["request_id"] == "edge-refusal-1"
    })
    .await;
    assert_eq!(record["service"], "api-gateway", "{record}");
    assert_eq!(record["outcome"], "denied", "{record}");
    assert_eq!(record["client_ip"], "127.0.0.1", "{record}");
    assert!(record["reason"].is_string(), "{record}");
}
