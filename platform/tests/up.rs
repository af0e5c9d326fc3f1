//! `platform up` and `platform migrate`, in-process and as the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use platform_config::Env;
use platform_http::CancellationToken;
use platform_testing::{Backend, TestDatabase};
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "root@example.com";
const ADMIN_PASSWORD: &str = "root password 123";

/// Register, log in and read one's own account through the gateway at `base`; returns the
/// new user's id.
async fn main_journey(base: &str) -> String {
    let client = reqwest::Client::new();
    let email = format!("journey-{}@example.com", uuid::Uuid::new_v4().simple());
    let response = client
        .post(format!("{base}/api/v1/users"))
        .json(&json!({"email": email, "password": "a good password", "name": "Journey"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let tokens: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "a good password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email.as_str());
    me["id"].as_str().unwrap().to_owned()
}

/// An access token of the administrator `platform up` created from `ADMIN_EMAIL`.
async fn admin_token(base: &str) -> String {
    let tokens: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// The `user.registered` event of `user` reaches the event store: outbox → relay → bus →
/// consumer → store, read back through the gateway by an administrator.
async fn registration_event_reaches_the_event_store(base: &str, user: &str) {
    let client = reqwest::Client::new();
    let admin = admin_token(base).await;
    for _ in 0..250 {
        let page: Value = client
            .get(format!(
                "{base}/api/v1/admin/events?subject={user}&type=user.registered"
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
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
    let everything = client
        .get(format!("{base}/api/v1/admin/events"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    panic!("user.registered for {user} never reached the event store: {everything}");
}

/// Polls the event store's audit trail (through the gateway, as an administrator) for a
/// record of `action` that `wanted` picks, and returns it; `what` names it if it never comes.
async fn audit_record(
    base: &str,
    action: &str,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let client = reqwest::Client::new();
    let admin = admin_token(base).await;
    let mut last = Value::Null;
    for _ in 0..250 {
        let response = client
            .get(format!("{base}/api/v1/admin/audit?action={action}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
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
async fn audit_record_reaches_the_event_store(base: &str, action: &str, target: &str) {
    let what = format!("the {action} record of {target}");
    let record = audit_record(base, action, &what, |r| r["target"] == target).await;
    assert_eq!(record["outcome"], "success");
    assert!(record["actor"].is_string(), "{record}");
    assert!(record["request_id"].is_string(), "{record}");
}

/// A token the gateway refuses at the edge is an audit record in the event store too, with
/// the client's address and the request id.
async fn edge_refusal_reaches_the_event_store(base: &str) {
    let refused = reqwest::Client::new()
        .get(format!("{base}/api/v1/orders"))
        .bearer_auth("not.a.token")
        .header("x-request-id", "edge-refusal-1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let record = audit_record(base, "auth.token_rejected", "the edge's refusal", |r| {
        r["request_id"] == "edge-refusal-1"
    })
    .await;
    assert_eq!(record["service"], "api-gateway", "{record}");
    assert_eq!(record["outcome"], "denied", "{record}");
    assert_eq!(record["client_ip"], "127.0.0.1", "{record}");
    assert!(record["reason"].is_string(), "{record}");
}

/// An administrator adds a product through the gateway; anyone can then find it by listing,
/// by id and by search. Returns its id.
async fn product_journey(base: &str) -> String {
    let client = reqwest::Client::new();
    let admin = admin_token(base).await;
    let sku = format!("J-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let response = client
        .post(format!("{base}/api/v1/admin/products"))
        .bearer_auth(&admin)
        .json(
            &json!({"sku": sku, "name": "Journey teapot", "category": "kitchen",
            "price": {"amount": 2500, "currency": "EUR"}, "stock": 7}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let product: Value = client
        .get(format!("{base}/api/v1/products/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(product["available"], 7);
    let found: Value = client
        .get(format!("{base}/api/v1/products/search?q=journey%20tea"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"][0]["id"], id, "{found}");
    let kitchen: Value = client
        .get(format!(
            "{base}/api/v1/products?category=kitchen&per_page=100"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        kitchen["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id)
    );
    id.to_owned()
}

/// Checkout through the gateway: the order service prices the order from the catalog,
/// reserves the stock, charges the sandbox card and confirms. Returns the buyer's token and the
/// order.
async fn order_journey(base: &str, product: &str) -> (String, Value) {
    let client = reqwest::Client::new();
    let buyer = admin_token(base).await;
    let order = place_order(base, &buyer, product, 2, None).await;
    assert_eq!(order["total"]["amount"], 5000);
    let product: Value = client
        .get(format!("{base}/api/v1/products/{product}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(product["stock"], 5, "two of seven sold: {product}");

    // order.confirmed travels outbox → bus → notification service → the buyer's inbox.
    confirmation_reaches_the_inbox(base, &buyer, order["id"].as_str().unwrap()).await;
    (buyer, order)
}

/// A direct charge that names an order is checked with the order service over gRPC (which the
/// payment service finds once the order service is up): 422 when it does not match the order,
/// 409 when it does (the checkout paid it).
async fn direct_charges_are_checked_against_their_order(base: &str, buyer: &str, order: &Value) {
    let total = order["total"]["amount"].as_i64().unwrap();
    for (amount, status) in [(total - 1, 422), (total, 409)] {
        let response = reqwest::Client::new()
            .post(format!("{base}/api/v1/payments"))
            .bearer_auth(buyer)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({
                "order_id": order["id"],
                "amount": {"amount": amount, "currency": order["total"]["currency"]},
                "method": {"type": "card", "token": "tok_visa"},
            }))
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(
            code, status,
            "a direct charge of {amount} for the order: {body}"
        );
    }
}

/// Checks out `quantity` of `product` with the sandbox card (and the caller's `traceparent`,
/// when given); returns the order, confirmed.
async fn place_order(
    base: &str,
    token: &str,
    product: &str,
    quantity: u32,
    traceparent: Option<&str>,
) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request
        .json(&json!({
            "items": [{"product_id": product, "quantity": quantity}],
            "payment": {"token": "tok_visa"},
            "shipping_address": {"name": "Journey", "line1": "1 Road", "city": "Town",
                "postal_code": "12345", "country": "DE"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    order
}

/// Waits (15 s at most) until the `order.confirmed` notification of `order_id` is in the inbox
/// of the holder of `token`.
async fn confirmation_reaches_the_inbox(base: &str, token: &str, order_id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let inbox: Value = reqwest::Client::new()
            .get(format!("{base}/api/v1/notifications?per_page=100"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let told = inbox["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|n| n["event_type"] == "order.confirmed" && n["data"]["order_id"] == order_id)
        });
        if told {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no order.confirmed notification: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn env_for(db: &TestDatabase) -> Vec<(String, String)> {
    let mut vars = vec![
        ("PORT".to_owned(), "0".to_owned()),
        ("USER_SERVICE_PORT".to_owned(), "0".to_owned()),
        ("USER_SERVICE_GRPC_PORT".to_owned(), "0".to_owned()),
        ("PRODUCT_SERVICE_PORT".to_owned(), "0".to_owned()),
        ("PRODUCT_SERVICE_GRPC_PORT".to_owned(), "0".to_owned()),
        ("PAYMENT_SERVICE_PORT".to_owned(), "0".to_owned()),
        ("PAYMENT_SERVICE_GRPC_PORT".to_owned(), "0".to_owned()),
        ("ORDER_SERVICE_PORT".to_owned(), "0".to_owned()),
        ("ORDER_SERVICE_GRPC_PORT".to_owned(), "0".to_owned()),
        ("NOTIFICATION_SERVICE_PORT".to_owned(), "0".to_owned()),
        ("EVENT_STORE_PORT".to_owned(), "0".to_owned()),
        // The event checks poll; the default 100 requests a minute would throttle them.
        ("RATE_LIMIT_PER_MINUTE".to_owned(), "100000".to_owned()),
        ("ADMIN_EMAIL".to_owned(), ADMIN_EMAIL.to_owned()),
        ("ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned()),
        ("DATA_DIR".to_owned(), db.dir().display().to_string()),
        ("ARGON2_MEMORY_KIB".to_owned(), "1024".to_owned()),
        ("ARGON2_ITERATIONS".to_owned(), "1".to_owned()),
    ];
    if db.backend == Backend::Postgres {
        use platform_config::ExposeSecret;
        // One database for everything: platform up gives each service a schema of its own.
        let url = db.config.url.as_ref().unwrap().expose_secret().to_owned();
        vars.push(("DATABASE_URL".to_owned(), url));
    }
    vars
}

async fn the_main_journey_works_through_platform_up(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let stop = CancellationToken::new();
    let running = platform::up(&Env::from_pairs(env_for(&db)), stop.clone())
        .await
        .unwrap();
    let gateway = running.gateway().unwrap();
    let banner = platform::banner(&running);
    assert!(
        banner.contains(&format!(
            "api-gateway    http://localhost:{}",
            gateway.port()
        )),
        "a wildcard bind is shown as localhost: {banner}"
    );

    assert!(banner.contains("user-service"), "{banner}");
    // Internal services listen on loopback only.
    let users = running
        .endpoints
        .iter()
        .find(|e| e.service == "user-service")
        .unwrap();
    assert!(users.http.ip().is_loopback());
    assert!(users.grpc.unwrap().ip().is_loopback());

    let base = format!("http://{gateway}");
    let user = main_journey(&base).await;
    registration_event_reaches_the_event_store(&base, &user).await;
    let product = product_journey(&base).await;
    audit_record_reaches_the_event_store(&base, "product.create", &format!("product:{product}"))
        .await;
    edge_refusal_reaches_the_event_store(&base).await;
    let (buyer, order) = order_journey(&base, &product).await;
    direct_charges_are_checked_against_their_order(&base, &buyer, &order).await;
    // The seed's `curl :8080/metrics | grep cache_hits_total`: under platform up the gateway's
    // scrape covers every service, database pools included (each backend's pool is read).
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for wanted in [
        r#"cache_hits_total{service="product-service""#,
        r#"db_pool_max_connections{service="order-service"}"#,
        r#"db_query_duration_seconds_count{service="payment-service""#,
        r#"saga_duration_seconds_count{service="order-service",outcome="confirmed"} 1"#,
    ] {
        assert!(
            metrics.contains(wanted),
            "{wanted} missing from the gateway's /metrics"
        );
    }
    assert_eq!(
        metrics.matches("# TYPE cache_hits_total ").count(),
        1,
        "each family declared once"
    );

    if backend == Backend::Sqlite {
        // Embedded mode loads the demo catalog.
        let catalog: Value = reqwest::get(format!("{base}/api/v1/products"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(catalog["total"].as_u64().unwrap() >= 50, "{catalog}");
    }

    if backend == Backend::Postgres {
        use sea_orm::ConnectionTrait;
        let conn = platform_db::connect(&db.config, "probe").await.unwrap();
        let rows = conn
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT table_schema FROM information_schema.tables WHERE table_name IN ('users', 'products', 'payments', 'orders', 'event_store', 'outbox') ORDER BY 1",
            ))
            .await
            .unwrap();
        let schemas: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("", "table_schema").unwrap())
            .collect();
        assert_eq!(
            schemas,
            [
                "event_store",
                "order_service",
                "order_service",
                "payment_service",
                "payment_service",
                "product_service",
                "product_service",
                "user_service",
                "user_service"
            ],
            "each service in its own schema"
        );
    }

    stop.cancel();

    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("everything stops")
        .unwrap();
}

platform_testing::backend_tests!(the_main_journey_works_through_platform_up);

/// Sends `bytes` one every 400 ms until the server closes; how long that took and what came
/// back.
async fn trickle(addr: std::net::SocketAddr, bytes: &'static [u8]) -> (Duration, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        answer
    });
    for byte in bytes.iter().cycle().take(100) {
        if reader.is_finished() || write.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    (started.elapsed(), reader.await.unwrap())
}

/// Opens connections to `addr` and holds them until one is refused: how many were held.
async fn connections_until_refused(addr: std::net::SocketAddr, http: bool) -> usize {
    use tokio::io::AsyncReadExt;
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 2048];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 503") => {
                assert!(http, "an HTTP answer on a gRPC port");
                return held.len();
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                assert!(
                    !http,
                    "an HTTP listener refuses with a 503 problem, not a close"
                );
                return held.len();
            }
            _ => held.push(stream),
        }
    }
    panic!("{addr}: 40 connections and none refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_cuts_off_trickling_clients_and_refuses_connections_past_the_limit() {
    let Some(db) = TestDatabase::create(Backend::Sqlite).await else {
        return;
    };
    let mut env = env_for(&db);
    env.push(("HEADER_READ_TIMEOUT".to_owned(), "2s".to_owned()));
    env.push(("MAX_CONNECTIONS".to_owned(), "8".to_owned()));
    let stop = CancellationToken::new();
    let running = platform::up(&Env::from_pairs(env), stop.clone())
        .await
        .unwrap();
    let mut listeners = Vec::new();
    for endpoint in &running.endpoints {
        listeners.push((format!("{} http", endpoint.service), endpoint.http, true));
        if let Some(grpc) = endpoint.grpc {
            listeners.push((format!("{} grpc", endpoint.service), grpc, false));
        }
    }
    assert!(listeners.len() >= 10, "{listeners:?}");

    let head: &'static [u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789\r\n\r\n";
    let preface: &'static [u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let trickled = futures::future::join_all(
        listeners
            .iter()
            .map(|(_, addr, http)| trickle(*addr, if *http { head } else { preface })),
    )
    .await;
    for ((name, _, http), (elapsed, answer)) in listeners.iter().zip(trickled) {
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
            "{name}: cut off after {elapsed:?}"
        );
        if *http {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 408 "), "{name}: {text}");
        }
    }

    // Others may hold a few connections of their own (the gateway's pools, its health
    // checks), so the count held here is at most the limit, and not far below it.
    for (name, addr, http) in &listeners {
        let held = connections_until_refused(*addr, *http).await;
        assert!((5..=8).contains(&held), "{name}: refused after {held}");
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), running.wait())
        .await
        .expect("everything stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_through_redis_streams_when_redis_is_configured() {
    let Some(redis) = platform_testing::RedisNamespace::create() else {
        return;
    };
    let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let mut vars = env_for(&db);
    vars.push(("REDIS_URL".to_owned(), redis.url.clone()));
    vars.push(("EVENTS_NAMESPACE".to_owned(), redis.namespace.clone()));
    let stop = CancellationToken::new();
    let running = platform::up(&Env::from_pairs(vars), stop.clone())
        .await
        .unwrap();
    let base = format!("http://{}", running.gateway().unwrap());
    let user = main_journey(&base).await;
    registration_event_reaches_the_event_store(&base, &user).await;
    let product = product_journey(&base).await;
    audit_record_reaches_the_event_store(&base, "product.create", &format!("product:{product}"))
        .await;
    edge_refusal_reaches_the_event_store(&base).await;
    // The stream really is in Redis.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let length: u64 = redis::cmd("XLEN")
        .arg(format!("{}.user", redis.namespace))
        .query(&mut conn)
        .unwrap();
    assert!(length >= 2, "the admin's and the user's registrations");
    let audited: u64 = redis::cmd("XLEN")
        .arg(format!("{}.audit", redis.namespace))
        .query(&mut conn)
        .unwrap();
    assert!(audited >= 1, "the product's creation");
    stop.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn configuration_problems_of_every_service_are_reported_together() {
    let env = Env::from_pairs([
        ("USER_SERVICE_PORT", "http"),
        ("UPSTREAM_TIMEOUT", "later"),
        ("DB_MAX_CONNECTIONS", "-1"),
    ]);
    let error = match platform::up(&env, CancellationToken::new()).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("bad configuration must not start"),
    };
    for variable in [
        "USER_SERVICE_PORT",
        "UPSTREAM_TIMEOUT",
        "DB_MAX_CONNECTIONS",
    ] {
        assert!(error.contains(variable), "{variable} missing from {error}");
    }
}

#[test]
fn a_bare_port_sets_the_gateway_port_only() {
    // If PORT reached the user service too, both would try to bind one port and start-up fails.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let env = Env::from_pairs([
            ("PORT", port.to_string()),
            ("HOST", "127.0.0.1".to_owned()),
            ("USER_SERVICE_PORT", "0".to_owned()),
            ("USER_SERVICE_GRPC_PORT", "0".to_owned()),
            ("PRODUCT_SERVICE_PORT", "0".to_owned()),
            ("PRODUCT_SERVICE_GRPC_PORT", "0".to_owned()),
            ("PAYMENT_SERVICE_PORT", "0".to_owned()),
            ("PAYMENT_SERVICE_GRPC_PORT", "0".to_owned()),
            ("ORDER_SERVICE_PORT", "0".to_owned()),
            ("ORDER_SERVICE_GRPC_PORT", "0".to_owned()),
            ("NOTIFICATION_SERVICE_PORT", "0".to_owned()),
            ("EVENT_STORE_PORT", "0".to_owned()),
            ("DATA_DIR", dir.path().display().to_string()),
        ]);
        let stop = CancellationToken::new();
        let running = platform::up(&env, stop.clone()).await.unwrap();
        assert_eq!(running.gateway().unwrap().port(), port);
        stop.cancel();
        running.wait().await.unwrap();
    });
}

/// The real binary: starts, prints where it listens, serves, and exits 0 on Ctrl-C (SIGINT).
#[test]
fn the_binary_starts_serves_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, gateway, rest) = spawn_platform(dir.path(), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(main_journey(&gateway));

    let status = platform_testing::process::stop(&mut child, "INT", Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let rest = rest.join().unwrap();
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
    assert!(
        dir.path().join("user-service.db").exists(),
        "embedded SQLite in DATA_DIR"
    );
}

#[test]
fn migrate_applies_every_services_migrations_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_platform"))
        .arg("migrate")
        .env_clear()
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("user-service: migrations applied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("event-store: migrations applied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("product-service: migrations applied"),
        "{stdout}"
    );
    assert!(dir.path().join("product-service.db").exists());
    assert!(
        stdout.contains("payment-service: migrations applied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("order-service: migrations applied"),
        "{stdout}"
    );
    assert!(dir.path().join("order-service.db").exists());
    assert!(
        stdout.contains("notification-service: migrations applied"),
        "{stdout}"
    );
    assert!(dir.path().join("notification-service.db").exists());
    assert!(dir.path().join("user-service.db").exists());
    assert!(dir.path().join("event-store.db").exists());
    // Applying them again is a no-op.
    let again = Command::new(env!("CARGO_BIN_EXE_platform"))
        .arg("migrate")
        .env_clear()
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(again.status.success());
}

fn platform_command(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_platform"))
        .args(args)
        .env_clear()
        .env("DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn dead_letters_are_listed_and_replayed_from_the_command_line() {
    use platform_events::transport::embedded::EmbeddedTransport;
    use platform_events::{Envelope, Transport};

    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let families = vec!["user".to_owned()];
    let event = Envelope::new(
        "user-service",
        &platform_events::catalogue::UserDeleted {
            user_id: uuid::Uuid::now_v7(),
        },
    )
    .unwrap();
    runtime.block_on(async {
        let bus = EmbeddedTransport::open(dir.path(), 1000).await.unwrap();
        bus.subscribe("mailer", &families).await.unwrap();
        bus.publish(&event).await.unwrap();
        let delivery = bus
            .read("mailer", "c", &families, 1, Duration::ZERO)
            .await
            .unwrap()
            .remove(0);
        bus.dead_letter("mailer", &delivery, "mailbox full", 5)
            .await
            .unwrap();
    });

    let listed = platform_command(dir.path(), &["events", "dead-letters"]);
    assert!(listed.status.success(), "{listed:?}");
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        table.contains("mailer")
            && table.contains("user.deleted")
            && table.contains("mailbox full"),
        "{table}"
    );
    let id = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let missing = platform_command(dir.path(), &["events", "replay", "--id", "999999"]);
    assert!(!missing.status.success());
    let replayed = platform_command(dir.path(), &["events", "replay", "--id", &id]);
    assert!(replayed.status.success(), "{replayed:?}");
    assert!(String::from_utf8_lossy(&replayed.stdout).contains("replayed 1 dead letter"));
    let empty = platform_command(dir.path(), &["events", "dead-letters"]);
    assert!(String::from_utf8_lossy(&empty.stdout).contains("no dead letters"));
    let none_chosen = platform_command(dir.path(), &["events", "replay"]);
    assert_eq!(
        none_chosen.status.code(),
        Some(2),
        "one of --id, --all, --type is required"
    );

    runtime.block_on(async {
        let bus = EmbeddedTransport::open(dir.path(), 1000).await.unwrap();
        let again = bus
            .read("mailer", "c", &families, 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].envelope.as_ref().unwrap().id, event.id);
    });
}

/// Starts the `platform` binary on free ports with `extra` variables; returns the child, the
/// gateway's base URL from the banner, and the rest of its output once it has stopped.
fn spawn_platform(
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    std::thread::JoinHandle<Vec<String>>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_platform"))
        .env_clear()
        .envs([
            ("PORT", "0"),
            ("USER_SERVICE_PORT", "0"),
            ("USER_SERVICE_GRPC_PORT", "0"),
            ("PRODUCT_SERVICE_PORT", "0"),
            ("PRODUCT_SERVICE_GRPC_PORT", "0"),
            ("PAYMENT_SERVICE_PORT", "0"),
            ("PAYMENT_SERVICE_GRPC_PORT", "0"),
            ("ORDER_SERVICE_PORT", "0"),
            ("ORDER_SERVICE_GRPC_PORT", "0"),
            ("NOTIFICATION_SERVICE_PORT", "0"),
            ("EVENT_STORE_PORT", "0"),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
            ("RATE_LIMIT_PER_MINUTE", "100000"),
            ("ADMIN_EMAIL", ADMIN_EMAIL),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("RUST_LOG", "warn"),
        ])
        .envs(extra.iter().copied())
        .env("DATA_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut gateway = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("api-gateway") {
            gateway = Some(rest.trim().to_owned());
        }
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    // Keep reading: a closed pipe would fail the platform's last words ("stopped").
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
    (child, gateway.expect("the banner names the gateway"), rest)
}

/// One checkout with the client's own `traceparent` gives one trace through every service:
/// the gateway, the order service and its saga steps, the product and payment services over
/// gRPC, the outbox relay, and the notification service's consumer, each span parented, named
/// and described as the OpenTelemetry conventions say, under its own service's name.
#[test]
fn one_checkout_is_one_trace_through_every_service() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let collector = runtime
        .block_on(platform_testing::otlp::Collector::start())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, gateway, _) = spawn_platform(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str())],
    );
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let declined_trace = uuid::Uuid::new_v4().simple().to_string();
    let client_span = "00f067aa0ba902b7";
    let order_id = runtime.block_on(async {
        let product = product_journey(&gateway).await;
        let buyer = admin_token(&gateway).await;
        let traceparent = format!("00-{trace_id}-{client_span}-01");
        let order = place_order(&gateway, &buyer, &product, 1, Some(&traceparent)).await;
        let order_id = order["id"].as_str().unwrap().to_owned();
        // The confirmation's notification is the trace's last hop.
        confirmation_reaches_the_inbox(&gateway, &buyer, &order_id).await;
        // A declined card: the failure shows in the trace where it happened.
        let declined = reqwest::Client::new()
            .post(format!("{gateway}/api/v1/orders"))
            .bearer_auth(&buyer)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header(
                "traceparent",
                format!("00-{declined_trace}-{client_span}-01"),
            )
            .json(&json!({
                "items": [{"product_id": product, "quantity": 1}],
                "payment": {"token": "tok_decline"},
                "shipping_address": {"name": "Journey", "line1": "1 Road", "city": "Town",
                    "postal_code": "12345", "country": "DE"},
            }))
            .send()
            .await
            .unwrap();
        assert!(declined.status().is_client_error() || declined.status().is_success());
        order_id
    });
    // A graceful stop flushes every span still batched.
    let status = platform_testing::process::stop(&mut child, "TERM", Duration::from_secs(20));
    assert!(
        status.success(),
        "{status:?}: {}",
        std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
    );
    let spans = runtime.block_on(async {
        for _ in 0..50 {
            let spans = collector.trace(&trace_id);
            if spans.iter().any(|s| s.name == "process order") {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        collector.trace(&trace_id)
    });
    // The tree, for a reader of `--nocapture` output.
    fn print_tree(spans: &[platform_testing::otlp::Span], parent: &str, depth: usize) {
        for span in spans.iter().filter(|s| s.parent_span_id == parent) {
            eprintln!("{}{} [{}]", "  ".repeat(depth), span.name, span.service);
            print_tree(spans, &span.span_id, depth + 1);
        }
    }
    print_tree(&spans, client_span, 0);
    let described: Vec<String> = spans
        .iter()
        .map(|s| format!("{} {:?} <- {}", s.service, s.name, s.parent_span_id))
        .collect();

    // Every span hangs off another of the trace, or off the client's own span.
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for span in &spans {
        assert!(
            span.parent_span_id == client_span || ids.contains(span.parent_span_id.as_str()),
            "{} {:?} has a parent outside the trace: {described:#?}",
            span.service,
            span.name
        );
    }
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap_or_else(|| panic!("no {service} span {name:?}: {described:#?}"))
    };
    let parent_of = |span: &platform_testing::otlp::Span| {
        spans
            .iter()
            .find(|s| s.span_id == span.parent_span_id)
            .unwrap_or_else(|| panic!("{:?} has no parent in the trace", span.name))
    };

    // HTTP: the gateway's server span is the client's child, the order service's is under it.
    // The gateway names its span after its own route pattern, the order service after its.
    let edge = spans
        .iter()
        .find(|s| s.service == "api-gateway" && s.kind == 2)
        .unwrap_or_else(|| panic!("no gateway server span: {described:#?}"));
    let route = edge.attribute("http.route").unwrap_or_default();
    assert!(route.starts_with("/api/v1/orders"), "{route}");
    assert_eq!(edge.name, format!("POST {route}"));
    assert_eq!(edge.parent_span_id, client_span);
    assert_eq!(edge.kind, 2, "server");
    assert_eq!(edge.attribute("http.request.method"), Some("POST"));
    assert_eq!(edge.attribute("http.response.status_code"), Some("201"));
    assert_eq!(edge.attribute("url.scheme"), Some("http"));
    let host = gateway
        .trim_start_matches("http://")
        .rsplit_once(':')
        .map_or("", |(host, _)| host);
    assert_eq!(edge.attribute("server.address"), Some(host));
    let order = find("order-service", "POST /api/v1/orders");
    assert_eq!(order.attribute("http.route"), Some("/api/v1/orders"));

    // The saga, one span per step, each calling out over gRPC.
    for step in ["saga reserve", "saga charge", "saga commit"] {
        let span = find("order-service", step);
        assert_eq!(span.attribute("saga.outcome"), Some("advanced"), "{step}");
    }
    for (service, rpc_service, method, step) in [
        (
            "product-service",
            "platform.product.v1.ProductService",
            "Reserve",
            "saga reserve",
        ),
        (
            "payment-service",
            "platform.payment.v1.PaymentService",
            "Charge",
            "saga charge",
        ),
        (
            "product-service",
            "platform.product.v1.ProductService",
            "Commit",
            "saga commit",
        ),
    ] {
        let name = format!("{rpc_service}/{method}");
        let call = find("order-service", &name);
        assert_eq!(call.kind, 3, "client");
        assert_eq!(parent_of(call).name, step);
        let served = find(service, &name);
        assert_eq!(served.kind, 2, "server");
        assert_eq!(served.parent_span_id, call.span_id, "{name}");
        assert_eq!(served.attribute("rpc.system"), Some("grpc"));
        assert_eq!(served.attribute("rpc.service"), Some(rpc_service));
        assert_eq!(served.attribute("rpc.method"), Some(method));
        assert_eq!(served.attribute("rpc.grpc.status_code"), Some("0"));
    }
    // The card was charged with a provider, in a client span of its own.
    let provider = find("payment-service", "charge sandbox");
    assert_eq!(provider.kind, 3);

    // Database work shows, named by operation and table, without parameter values.
    let queries: Vec<_> = spans
        .iter()
        .filter(|s| s.attributes.contains_key("db.system.name"))
        .collect();
    assert!(
        queries.iter().any(|q| q.service == "order-service"
            && q.attribute("db.operation.name") == Some("insert")
            && q.attribute("db.collection.name") == Some("orders")),
        "no insert into orders: {described:#?}"
    );
    assert!(
        queries
            .iter()
            .all(|q| !q.attributes.contains_key("db.query.text")),
        "no statement text (it could carry values)"
    );

    // Events: published from the outbox, processed by the notification service.
    let publish = spans
        .iter()
        .find(|s| s.name == "publish order" && s.attribute("event_type") == Some("order.confirmed"))
        .unwrap_or_else(|| panic!("no publish of order.confirmed: {described:#?}"));
    assert_eq!(publish.service, "order-service");
    assert_eq!(publish.kind, 4, "producer");
    assert_eq!(
        publish.attribute("messaging.operation.type"),
        Some("publish")
    );
    assert_eq!(
        publish.attribute("messaging.destination.name"),
        Some("order")
    );
    let processed = spans
        .iter()
        .find(|s| {
            s.service == "notification-service"
                && s.name == "process order"
                && s.parent_span_id == publish.span_id
        })
        .unwrap_or_else(|| {
            panic!("the notification service did not process it in the trace: {described:#?}")
        });
    assert_eq!(processed.kind, 5, "consumer");
    assert_eq!(processed.attribute("messaging.system"), Some("embedded"));
    assert_eq!(
        processed.attribute("messaging.consumer.group.name"),
        Some("notification-service")
    );
    assert!(!order_id.is_empty());

    // The declined charge: an error span with an exception event, and the saga compensating.
    let declined = collector.trace(&declined_trace);
    let charge = declined
        .iter()
        .find(|s| s.name == "charge sandbox")
        .unwrap_or_else(|| panic!("no charge span in the declined trace: {declined:#?}"));
    assert_eq!(charge.status, 2, "error status");
    assert!(charge.events.iter().any(|e| e == "exception"), "{charge:?}");
    assert!(
        declined.iter().any(|s| s.name == "saga compensate"),
        "the saga compensates in the same trace: {declined:#?}"
    );
}
