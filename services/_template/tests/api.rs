//! The template service end to end, on both backends: started the way its binary starts it,
//! called over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Deref;

use platform_auth::Role;
use platform_testing::http::{actor, error_fields, json_of, problem};
use platform_testing::{Backend, Spawned, TestDatabase};
use serde_json::json;
use template_service::{Application, TemplateServiceConfig};

const SECRET: &str = "template-service-test-secret-0123456789";

/// The service on a private database; calls go through the shared client (`Deref`).
struct TestApp {
    /// First, so it is dropped first: the service stops before its database goes.
    _service: Spawned,
    http: platform_testing::TestApp,
    _db: TestDatabase,
}

impl Deref for TestApp {
    type Target = platform_testing::TestApp;

    fn deref(&self) -> &platform_testing::TestApp {
        &self.http
    }
}

async fn spawn(backend: Backend) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let config = TemplateServiceConfig::for_tests(db.config.clone(), SECRET);
    let service = platform_testing::spawn::<Application>(config).await;
    TestApp {
        http: service.app(),
        _service: service,
        _db: db,
    }
}

async fn an_item_is_created_and_read_back_by_its_id(backend: Backend) {
    let app = spawn(backend).await;
    let user = actor(Role::User, SECRET);
    let created = app
        .post("/api/v1/items")
        .by(&user)
        .json(&json!({"name": "  First item "}))
        .await;
    let created = json_of(created, 201).await;
    assert_eq!(created["name"], "First item");
    assert_eq!(created["owner"], user.id.to_string());

    let id = created["id"].as_str().unwrap();
    let read = app.get(&format!("/api/v1/items/{id}")).by(&user).await;
    assert_eq!(json_of(read, 200).await, created);
}

async fn bad_input_and_strangers_get_problems(backend: Backend) {
    let app = spawn(backend).await;
    let user = actor(Role::User, SECRET);
    let items = "/api/v1/items";
    let empty = app
        .post(items)
        .by(&user)
        .json(&json!({"name": "   "}))
        .await;
    assert_eq!(error_fields(&problem(empty, 422).await), ["name"]);
    let anonymous = app.post(items).json(&json!({"name": "x"})).await;
    problem(anonymous, 401).await;
    let missing = app.get(&format!("{items}/{}", uuid_zero())).by(&user).await;
    problem(missing, 404).await;
    let ready = app.get("/ready").await;
    assert_eq!(json_of(ready, 200).await["status"], "ready");
}

/// The kit's rule for a service that uses Redis only as its bus (`RedisUse::Bus`): with Redis
/// down it stays in rotation, `degraded`, naming Redis (the user service, `RedisUse::State`,
/// answers 503 instead: its own tests show that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_only_service_stays_ready_but_degraded_without_redis() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut config = TemplateServiceConfig::for_tests(db.config.clone(), SECRET);
    // Port 1 on loopback: nothing listens there.
    config.redis = Some(platform_redis::RedisConfig::new("redis://127.0.0.1:1"));
    let service = platform_testing::spawn::<Application>(config).await;
    let ready = service.app().get("/ready").await;
    let body = json_of(ready, 200).await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "down", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "up", "{body}");
}

fn uuid_zero() -> &'static str {
    "00000000-0000-0000-0000-000000000000"
}

platform_testing::backend_tests!(
    an_item_is_created_and_read_back_by_its_id,
    bad_input_and_strangers_get_problems
);
