//! The event store end to end: events flow in from the bus; administrators query them and
//! manage dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use event_store::{Application, EventStoreConfig};
use platform_auth::Role;
use platform_events::catalogue::{UserDeleted, UserRegistered};
use platform_events::transport::embedded::EmbeddedTransport;
use platform_events::transport::redis::RedisTransport;
use platform_events::{Envelope, EventsConfig, Transport};
use platform_http::CancellationToken;
use platform_http::audit::{Action, Actor, AuditContext, AuditEvent, AuditRecord, Outcome};
use platform_testing::{Backend, RedisNamespace, TestDatabase};
use serde_json::Value;

const SECRET: &str = "event-store-test-secret-0123456789abcdef";

struct App {
    /// First, so it is dropped first: the store stops before its database goes.
    _service: platform_testing::Spawned,
    http: platform_testing::TestApp,
    transport: Arc<dyn Transport>,
    _db: TestDatabase,
    _bus_dir: tempfile::TempDir,
    _redis: Option<RedisNamespace>,
}

impl Deref for App {
    type Target = platform_testing::TestApp;

    fn deref(&self) -> &platform_testing::TestApp {
        &self.http
    }
}

async fn spawn(backend: Backend, redis: Option<RedisNamespace>) -> App {
    let db = TestDatabase::create(backend).await;
    let bus_dir = tempfile::tempdir().unwrap();
    let mut events = EventsConfig::embedded(bus_dir.path());
    events.visibility_timeout = Duration::from_millis(500);
    let transport: Arc<dyn Transport> = match &redis {
        Some(redis) => {
            events.redis = Some(platform_redis::RedisConfig::new(&redis.url));
            events.namespace = redis.namespace.clone();
            Arc::new(RedisTransport::new(&redis.url, &redis.namespace, 10_000).unwrap())
        }
        None => Arc::new(
            EmbeddedTransport::open(bus_dir.path(), 10_000)
                .await
                .unwrap(),
        ),
    };
    let service = platform_testing::spawn::<Application>(EventStoreConfig::for_tests(
        db.config.clone(),
        events,
        SECRET,
    ))
    .await;
    App {
        http: service.app(),
        _service: service,
        transport,
        _db: db,
        _bus_dir: bus_dir,
        _redis: redis,
    }
}

fn token(role: Role) -> String {
    token_of(uuid::Uuid::now_v7(), role)
}

fn token_of(user: uuid::Uuid, role: Role) -> String {
    platform_testing::http::token(user, role, SECRET)
}

fn registered(user: &str) -> Envelope {
    Envelope::new(
        "user-service",
        &UserRegistered {
            user_id: user.parse().unwrap(),
            email: "a@example.com".into(),
            name: "A".into(),
            role: "user".into(),
        },
    )
    .unwrap()
}

impl App {
    async fn events(&self, query: &str) -> Value {
        let response = self
            .get(&format!("/api/v1/admin/events{query}"))
            .by(token(Role::Admin))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `GET /api/v1/admin/audit{query}` as an administrator, once it lists `total` records.
    async fn audit_until(&self, query: &str, total: u64) -> Value {
        let path = format!("/api/v1/admin/audit{query}");
        for _ in 0..250 {
            let response = self.get(&path).by(token(Role::Admin)).await;
            assert_eq!(response.status(), 200);
            let page: Value = response.json().await.unwrap();
            if page["total"] == total {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = self
            .get(&path)
            .by(token(Role::Admin))
            .await
            .text()
            .await
            .unwrap();
        panic!("{path} never listed {total} records: {seen}");
    }

    async fn wait_for_total(&self, total: u64) {
        for _ in 0..250 {
            if self.events("").await["total"] == total {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the store never reached {total} events");
    }
}

async fn every_published_event_is_stored_once_and_queryable(backend: Backend) {
    let app = spawn(backend, None).await;
    let (a, b) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let first = registered(&a);
    for event in [first.clone(), registered(&b)] {
        app.transport.publish(&event).await.unwrap();
    }
    let deleted = Envelope::new(
        "user-service",
        &UserDeleted {
            user_id: a.parse().unwrap(),
        },
    )
    .unwrap();
    app.transport.publish(&deleted).await.unwrap();
    // A redelivered or replayed event adds nothing.
    app.transport.publish(&first).await.unwrap();
    app.wait_for_total(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let all = app.events("").await;
    assert_eq!(all["total"], 3);
    assert_eq!(all["items"][0]["id"], first.id.to_string(), "oldest first");
    assert_eq!(all["items"][0]["type"], "user.registered");
    assert_eq!(all["items"][0]["specversion"], "1.0");

    let about_a = app.events(&format!("?subject={a}")).await;
    assert_eq!(about_a["total"], 2);
    let deletions = app.events("?type=user.deleted").await;
    assert_eq!(deletions["total"], 1);
    assert_eq!(deletions["items"][0]["subject"], a.as_str());
    let future = app.events("?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["total"], 0);
    let past = app.events("?until=2000-01-01T00:00:00Z").await;
    assert_eq!(past["total"], 0);
    let paged = app.events("?per_page=2&page=2").await;
    assert_eq!(paged["items"].as_array().unwrap().len(), 1);

    assert_eq!(
        app.get("/api/v1/admin/events")
            .by(token(Role::User))
            .await
            .status(),
        403
    );
    assert_eq!(app.get("/api/v1/admin/events").await.status(), 401);
    assert_eq!(
        app.get("/api/v1/admin/events?since=yesterday")
            .by(token(Role::Admin))
            .await
            .status(),
        400
    );
}

async fn dead_letters_are_listed_and_replayed_by_administrators(backend: Backend) {
    let app = spawn(backend, None).await;
    let families = vec!["user".to_owned()];
    app.transport
        .subscribe("fragile-service", &families)
        .await
        .unwrap();
    let event = registered(&uuid::Uuid::now_v7().to_string());
    app.transport.publish(&event).await.unwrap();
    let delivery = app
        .transport
        .read(
            "fragile-service",
            "c1",
            &families,
            10,
            Duration::from_millis(500),
        )
        .await
        .unwrap()
        .remove(0);
    app.transport
        .dead_letter("fragile-service", &delivery, "smtp refused", 5)
        .await
        .unwrap();

    assert_eq!(
        app.get("/api/v1/admin/events/dead-letters")
            .by(token(Role::User))
            .await
            .status(),
        403
    );
    let listed: Value = app
        .get("/api/v1/admin/events/dead-letters")
        .by(token(Role::Admin))
        .await
        .json()
        .await
        .unwrap();
    let dead = &listed["items"][0];
    assert_eq!(dead["group"], "fragile-service");
    assert_eq!(dead["error"], "smtp refused");
    assert_eq!(dead["attempts"], 5);
    assert_eq!(dead["event"]["id"], event.id.to_string());

    let replay = |id: String, role: Role| {
        let request = app
            .post(&format!("/api/v1/admin/events/dead-letters/{id}/replay"))
            .by(token(role));
        async move { request.await.status().as_u16() }
    };
    let id = dead["id"].as_str().unwrap().to_owned();
    assert_eq!(replay(id.clone(), Role::User).await, 403);
    let admin = uuid::Uuid::now_v7();
    let replayed = app
        .post(&format!("/api/v1/admin/events/dead-letters/{id}/replay"))
        .by(token_of(admin, Role::Admin))
        .await;
    assert_eq!(replayed.status(), 202);
    assert_eq!(
        replay(id.clone(), Role::Admin).await,
        404,
        "gone once replayed"
    );
    // Ids that cannot name a dead letter on either bus are as unknown as spent ones, never a
    // "bus down" 503.
    for unknown in ["no-such-dead-letter", "0-1", "1-2-3", "99999999999"] {
        assert_eq!(
            replay(unknown.to_owned(), Role::Admin).await,
            404,
            "{unknown}"
        );
    }
    // The replay is on the audit trail, by that administrator.
    let trail = app
        .audit_until(&format!("?action=events.replay&actor={admin}"), 1)
        .await;
    assert_eq!(trail["items"][0]["target"], format!("dead_letter:{id}"));
    assert_eq!(trail["items"][0]["service"], "event-store");
    let again = app
        .transport
        .read(
            "fragile-service",
            "c1",
            &families,
            10,
            Duration::from_millis(500),
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the group receives the event again");
}

/// Records audit events the way a service does: through its sink and publisher, onto `app`'s
/// bus. Returns the records, oldest first.
async fn audit_trail_of(app: &App, events: Vec<(&str, AuditEvent)>) -> Vec<AuditRecord> {
    let mut records = Vec::new();
    for (service, event) in events {
        let (audit, publisher) =
            platform_events::audit::bus_audit(service, app.transport.clone(), None);
        let published = tokio::spawn(publisher.run(CancellationToken::new()));
        records.push(audit.record(&AuditContext::default(), event));
        drop(audit);
        published.await.unwrap();
        // Distinct times on both backends (PostgreSQL keeps microseconds).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    records
}

async fn the_audit_trail_is_filtered_paginated_and_newest_first(backend: Backend) {
    let app = spawn(backend, None).await;
    let admin = uuid::Uuid::now_v7();
    let records = audit_trail_of(
        &app,
        vec![
            (
                "product-service",
                AuditEvent::new(Action::ProductCreate, Outcome::Success)
                    .user(admin)
                    .target("product:1"),
            ),
            (
                "payment-service",
                AuditEvent::new(Action::PaymentRefund, Outcome::Success)
                    .actor(Actor::Service("order-service".into()))
                    .target("payment:1"),
            ),
            (
                "product-service",
                AuditEvent::new(Action::ProductDelete, Outcome::Success)
                    .user(admin)
                    .target("product:1"),
            ),
            (
                "payment-service",
                AuditEvent::new(Action::TokenRejected, Outcome::Denied).reason("missing"),
            ),
        ],
    )
    .await;
    // Other events are not audit records.
    app.transport
        .publish(&registered(&admin.to_string()))
        .await
        .unwrap();
    app.wait_for_total(5).await;
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let id = |i: usize| records[i].id.to_string();

    let all = app.audit_until("", 4).await;
    assert_eq!(ids(&all), [id(3), id(2), id(1), id(0)], "newest first");
    assert_eq!(all["items"][0]["action"], "auth.token_rejected");
    assert_eq!(all["items"][0]["reason"], "missing");
    assert_eq!(all["items"][3]["actor"], admin.to_string());
    assert_eq!(
        (all["page"].as_u64(), all["per_page"].as_u64()),
        (Some(1), Some(20))
    );

    let by_admin = app.audit_until(&format!("?actor={admin}"), 2).await;
    assert_eq!(ids(&by_admin), [id(2), id(0)]);
    let by_service = app.audit_until("?actor=service:order-service", 1).await;
    assert_eq!(ids(&by_service), [id(1)]);
    assert_eq!(by_service["items"][0]["actor"], "service:order-service");
    let created = app.audit_until("?action=product.create", 1).await;
    assert_eq!(ids(&created), [id(0)]);
    let deleted_by_admin = app
        .audit_until(&format!("?actor={admin}&action=product.delete"), 1)
        .await;
    assert_eq!(ids(&deleted_by_admin), [id(2)]);
    let since = (records[1].time - chrono::Duration::milliseconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let recent = app.audit_until(&format!("?since={since}"), 3).await;
    assert_eq!(ids(&recent), [id(3), id(2), id(1)]);
    let second_page = app.audit_until("?per_page=3&page=2", 4).await;
    assert_eq!(ids(&second_page), [id(0)]);
    assert_eq!(second_page["page"], 2);
    assert_eq!(second_page["per_page"], 3);

    assert_eq!(app.get("/api/v1/admin/audit").await.status(), 401);
    assert_eq!(
        app.get("/api/v1/admin/audit")
            .by(token(Role::User))
            .await
            .status(),
        403
    );

    // That refusal is itself in the trail, under the user who was refused.
    let user = uuid::Uuid::now_v7();
    let refused = app
        .get("/api/v1/admin/events/dead-letters")
        .by(token_of(user, Role::User))
        .await;
    assert_eq!(refused.status(), 403);
    let denied = app
        .audit_until(&format!("?actor={user}&action=auth.access_denied"), 1)
        .await;
    assert_eq!(denied["items"][0]["service"], "event-store");
    assert_eq!(denied["items"][0]["outcome"], "denied");
}

async fn invalid_audit_queries_name_every_bad_field(backend: Backend) {
    let app = spawn(backend, None).await;
    for (query, fields) in [
        ("?actor=bob", vec!["actor"]),
        ("?actor=service:", vec!["actor"]),
        ("?action=product.explode", vec!["action"]),
        ("?since=yesterday", vec!["since"]),
        ("?page=0", vec!["page"]),
        ("?per_page=lots", vec!["per_page"]),
        (
            "?actor=x&action=y&since=z&page=-1&per_page=0",
            vec!["action", "actor", "page", "per_page", "since"],
        ),
    ] {
        let response = app
            .get(&format!("/api/v1/admin/audit{query}"))
            .by(token(Role::Admin))
            .await;
        let problem = platform_testing::http::problem(response, 422).await;
        assert_eq!(
            platform_testing::http::error_fields(&problem),
            fields,
            "{query}"
        );
    }
    let twice = app
        .get("/api/v1/admin/audit?actor=a&actor=b")
        .by(token(Role::Admin))
        .await;
    platform_testing::http::problem(twice, 400).await;
}

async fn the_audit_endpoint_is_documented_with_every_status(backend: Backend) {
    let app = spawn(backend, None).await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let operation = &document["paths"]["/api/v1/admin/audit"]["get"];
    let mut statuses: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
    statuses.sort();
    assert_eq!(statuses, ["200", "400", "401", "403", "422", "500", "503"]);
    let parameters: Vec<&str> = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(parameters, ["actor", "action", "since", "page", "per_page"]);
}

async fn a_batch_appends_each_new_event_once(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let conn = platform_db::connect(&db.config, "event-store")
        .await
        .unwrap();
    platform_db::migrate::<event_store::migration::Migrator>(&conn)
        .await
        .unwrap();
    let user = || uuid::Uuid::now_v7().to_string();
    let (a, b, c) = (
        registered(&user()),
        registered(&user()),
        registered(&user()),
    );
    use platform_events::store;
    // A read may carry the same event twice (a replay next to the original).
    assert_eq!(
        store::append_many(&conn, &[a.clone(), b.clone(), a.clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store::append_many(&conn, &[a.clone(), c.clone()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store::append_many(&conn, &[]).await.unwrap(), 0);
    assert!(!store::append(&conn, &b).await.unwrap());
    let (stored, total) = store::query(&conn, &store::Filter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(total, 3);
    let ids: Vec<_> = stored.iter().map(|e| e.id).collect();
    assert_eq!(ids, [a.id, b.id, c.id]);
    conn.close().await.unwrap();
}

platform_testing::backend_tests!(
    a_batch_appends_each_new_event_once,
    every_published_event_is_stored_once_and_queryable,
    dead_letters_are_listed_and_replayed_by_administrators,
    the_audit_trail_is_filtered_paginated_and_newest_first,
    invalid_audit_queries_name_every_bad_field,
    the_audit_endpoint_is_documented_with_every_status,
);

async fn audit_records_reach_the_audit_endpoint_through_redis_streams() {
    let app = spawn(Backend::Sqlite, Some(RedisNamespace::create())).await;
    let admin = uuid::Uuid::now_v7();
    let records = audit_trail_of(
        &app,
        vec![(
            "order-service",
            AuditEvent::new(Action::OrderStatusChange, Outcome::Success)
                .user(admin)
                .target("order:1")
                .reason("shipped"),
        )],
    )
    .await;
    let page = app
        .audit_until(&format!("?actor={admin}&action=order.status_change"), 1)
        .await;
    assert_eq!(page["items"][0]["id"], records[0].id.to_string());
    assert_eq!(page["items"][0]["reason"], "shipped");
}

async fn the_store_consumes_from_redis_streams_too() {
    let app = spawn(Backend::Sqlite, Some(RedisNamespace::create())).await;
    app.transport
        .publish(&registered(&uuid::Uuid::now_v7().to_string()))
        .await
        .unwrap();
    app.wait_for_total(1).await;
}

platform_testing::redis_tests!(
    audit_records_reach_the_audit_endpoint_through_redis_streams,
    the_store_consumes_from_redis_streams_too,
);
