//! The event store end to end: events flow in from the bus; administrators query them and
//! manage dead letters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use event_store::{EventStore, EventStoreConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform_events::catalogue::{UserDeleted, UserRegistered};
use platform_events::transport::embedded::EmbeddedTransport;
use platform_events::transport::redis::RedisTransport;
use platform_events::{Envelope, EventsConfig, Transport};
use platform_testing::{Backend, TestDatabase};
use serde_json::{Value, json};

const SECRET: &str = "event-store-test-secret-0123456789abcdef";

struct App {
    /// First, so it is dropped first: the store stops before its database goes.
    _service: platform_testing::Spawned,
    base: String,
    client: reqwest::Client,
    transport: Arc<dyn Transport>,
    _db: TestDatabase,
    _bus_dir: tempfile::TempDir,
    _redis: Option<platform_testing::RedisNamespace>,
}

async fn spawn(backend: Backend, redis: Option<platform_testing::RedisNamespace>) -> Option<App> {
    let db = TestDatabase::create(backend).await?;
    let bus_dir = tempfile::tempdir().unwrap();
    let mut events = EventsConfig::embedded(bus_dir.path());
    events.visibility_timeout = Duration::from_millis(500);
    let transport: Arc<dyn Transport> = match &redis {
        Some(redis) => {
            events.redis = Some(platform_cache::RedisConfig::new(&redis.url));
            events.namespace = redis.namespace.clone();
            Arc::new(RedisTransport::new(&redis.url, &redis.namespace, 10_000).unwrap())
        }
        None => Arc::new(
            EmbeddedTransport::open(bus_dir.path(), 10_000)
                .await
                .unwrap(),
        ),
    };
    let service = platform_testing::spawn::<EventStore>(EventStoreConfig::for_tests(
        db.config.clone(),
        events,
        SECRET,
    ))
    .await;
    Some(App {
        base: service.base.clone(),
        _service: service,
        client: reqwest::Client::new(),
        transport,
        _db: db,
        _bus_dir: bus_dir,
        _redis: redis,
    })
}

fn token(role: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": uuid::Uuid::now_v7(), "role": role, "iat": now, "exp": now + 600, "jti": "t",
        "iss": "microservices-platform", "aud": "microservices-platform",
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
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
    async fn get(&self, path: &str, role: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(role) = role {
            request = request.bearer_auth(token(role));
        }
        request.send().await.unwrap()
    }

    async fn events(&self, query: &str) -> Value {
        let response = self
            .get(&format!("/api/v1/admin/events{query}"), Some("admin"))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
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
    let Some(app) = spawn(backend, None).await else {
        return;
    };
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
        app.get("/api/v1/admin/events", Some("user")).await.status(),
        403
    );
    assert_eq!(app.get("/api/v1/admin/events", None).await.status(), 401);
    assert_eq!(
        app.get("/api/v1/admin/events?since=yesterday", Some("admin"))
            .await
            .status(),
        400
    );
}

async fn dead_letters_are_listed_and_replayed_by_administrators(backend: Backend) {
    let Some(app) = spawn(backend, None).await else {
        return;
    };
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
        app.get("/api/v1/admin/events/dead-letters", Some("user"))
            .await
            .status(),
        403
    );
    let listed: Value = app
        .get("/api/v1/admin/events/dead-letters", Some("admin"))
        .await
        .json()
        .await
        .unwrap();
    let dead = &listed["items"][0];
    assert_eq!(dead["group"], "fragile-service");
    assert_eq!(dead["error"], "smtp refused");
    assert_eq!(dead["attempts"], 5);
    assert_eq!(dead["event"]["id"], event.id.to_string());

    let replay = |id: String, role: &'static str| {
        let request = app
            .client
            .post(format!(
                "{}/api/v1/admin/events/dead-letters/{id}/replay",
                app.base
            ))
            .bearer_auth(token(role));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let id = dead["id"].as_str().unwrap().to_owned();
    assert_eq!(replay(id.clone(), "user").await, 403);
    assert_eq!(replay(id.clone(), "admin").await, 202);
    assert_eq!(replay(id, "admin").await, 404, "gone once replayed");
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

platform_testing::backend_tests!(
    every_published_event_is_stored_once_and_queryable,
    dead_letters_are_listed_and_replayed_by_administrators,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_consumes_from_redis_streams_too() {
    let Some(redis) = platform_testing::RedisNamespace::create() else {
        return;
    };
    let app = spawn(Backend::Sqlite, Some(redis)).await.unwrap();
    app.transport
        .publish(&registered(&uuid::Uuid::now_v7().to_string()))
        .await
        .unwrap();
    app.wait_for_total(1).await;
}
