//! `spawn_app`: the real order service on random ports with the real product and payment
//! services beside it (each over a private database, all on one embedded event bus), as
//! deployed apart but in one test process.

use order_service::{Application, OrderServiceConfig};
use payment_service::PaymentServiceConfig;
use platform_auth::Role;
use platform_auth::service_identity::ServiceAuthConfig;
use platform_events::EventsConfig;
use platform_proto::product::v1 as proto;
use platform_proto::product::v1::product_service_client::ProductServiceClient;
use platform_testing::grpc::Pki;
use platform_testing::http::Documented as _;
use platform_testing::{Backend, Spawned, TestDatabase};
use product_service::ProductServiceConfig;
use serde_json::{Value, json};
use uuid::Uuid;

pub use platform_testing::http::{Actor, error_fields, json_of, problem, wait_until};

/// A new user (or administrator) with a fresh token signed with the test secret.
pub fn actor(role: Role) -> Actor {
    platform_testing::http::actor(role, JWT_SECRET)
}

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The three services. Fields drop in order: the order service stops first, the databases
/// go last.
pub struct TestApp {
    orders: Option<Spawned>,
    _products: Spawned,
    payments: Spawned,
    pub base: String,
    pub products_base: String,
    pub payments_base: String,
    /// Calls the product service's gRPC API as the order service.
    stock_reader: platform_testing::grpc::Caller,
    pub client: reqwest::Client,
    pub config: OrderServiceConfig,
    pub db: TestDatabase,
    _product_db: TestDatabase,
    pub payment_db: TestDatabase,
    _bus: tempfile::TempDir,
    pub admin: Actor,
    pub user: Actor,
}

/// The services with default test settings, or `None` when `backend` is not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_with(backend, |_| {}).await
}

/// The services, the order service's settings adjusted by `customize`.
pub async fn spawn_with(
    backend: Backend,
    customize: impl FnOnce(&mut OrderServiceConfig),
) -> Option<TestApp> {
    spawn_services(backend, None, customize, |_| {}).await
}

/// The services with the payment service's settings adjusted by `payments` too.
pub async fn spawn_with_payments(
    backend: Backend,
    customize: impl FnOnce(&mut OrderServiceConfig),
    payments: impl FnOnce(&mut PaymentServiceConfig),
) -> Option<TestApp> {
    spawn_services(backend, None, customize, payments).await
}

/// The services talking over mutual TLS only (no token secret anywhere), with certificates
/// from `pki`.
pub async fn spawn_over_mutual_tls(backend: Backend, pki: &Pki) -> Option<TestApp> {
    spawn_services(backend, Some(pki), |_| {}, |_| {}).await
}

/// How the service `name` authenticates: mutual TLS with `pki`, else the test secret.
fn internal_auth(pki: Option<&Pki>, name: &str) -> ServiceAuthConfig {
    match pki {
        Some(pki) => ServiceAuthConfig::with_tls(pki.service(name)),
        None => ServiceAuthConfig::with_secret(JWT_SECRET),
    }
}

async fn spawn_services(
    backend: Backend,
    pki: Option<&Pki>,
    customize: impl FnOnce(&mut OrderServiceConfig),
    customize_payments: impl FnOnce(&mut PaymentServiceConfig),
) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let product_db = TestDatabase::create(backend).await?;
    let payment_db = TestDatabase::create(backend).await?;
    let bus = tempfile::tempdir().unwrap();

    let mut products = ProductServiceConfig::for_tests(product_db.config.clone(), JWT_SECRET);
    products.events = EventsConfig::embedded(bus.path());
    products.internal = Some(internal_auth(pki, "product-service"));
    let products = platform_testing::spawn::<product_service::Application>(products).await;

    let mut payments = PaymentServiceConfig::for_tests(payment_db.config.clone(), JWT_SECRET);
    payments.events = EventsConfig::embedded(bus.path());
    payments.internal = Some(internal_auth(pki, "payment-service"));
    // Tests charge one card many times in a minute; the velocity rules are not under test.
    payments.fraud.max_payments_per_card = 100_000;
    payments.fraud.max_payments_per_user = 100_000;
    customize_payments(&mut payments);
    let payments = platform_testing::spawn::<payment_service::Application>(payments).await;

    let product_grpc = products.grpc.unwrap();
    let payment_grpc = format!("http://{}", payments.grpc.unwrap());
    let mut config = OrderServiceConfig::for_tests(
        db.config.clone(),
        JWT_SECRET,
        format!("http://{product_grpc}"),
        payment_grpc,
    );
    config.events = EventsConfig::embedded(bus.path());
    config.internal = Some(internal_auth(pki, "order-service"));
    customize(&mut config);
    // The tests read stock levels as the order service does.
    let stock_reader = match pki {
        Some(pki) => platform_testing::grpc::over_mutual_tls(
            product_grpc,
            "order-service",
            pki.service("order-service"),
            "product-service",
        ),
        None => platform_testing::grpc::as_service(
            product_grpc,
            "order-service",
            "product-service",
            JWT_SECRET,
        ),
    };
    let orders = platform_testing::spawn::<Application>(config.clone()).await;
    Some(TestApp {
        base: orders.base.clone(),
        orders: Some(orders),
        products_base: products.base.clone(),
        payments_base: payments.base.clone(),
        _products: products,
        payments,
        stock_reader,
        client: reqwest::Client::new(),
        config,
        db,
        _product_db: product_db,
        payment_db,
        _bus: bus,
        admin: actor(Role::Admin),
        user: actor(Role::User),
    })
}

/// A fresh idempotency key.
pub fn new_key() -> String {
    Uuid::new_v4().to_string()
}

/// A valid order request for `lines` (product id, quantity), paid with `token`.
pub fn order_body(lines: &[(&str, i64)], token: &str) -> Value {
    json!({
        "items": lines.iter().map(|(id, quantity)| json!({"product_id": id, "quantity": quantity})).collect::<Vec<_>>(),
        "payment": {"token": token},
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "12 Analytical Row",
            "city": "London",
            "postal_code": "NW1 6XE",
            "country": "GB",
        },
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Calls the order service's gRPC API as `service` (with the test secret).
    pub fn order_grpc_as(&self, service: &str) -> platform_testing::grpc::Caller {
        let addr = self.orders.as_ref().unwrap().grpc.expect("gRPC is served");
        platform_testing::grpc::as_service(addr, service, "order-service", JWT_SECRET)
    }

    /// Calls the payment service's gRPC API as the order service does.
    pub fn payment_grpc(&self) -> platform_testing::grpc::Caller {
        let addr = self.payments.grpc.expect("gRPC is served");
        platform_testing::grpc::as_service(addr, "order-service", "payment-service", JWT_SECRET)
    }

    /// Calls the order service's gRPC API with no credential.
    pub fn order_grpc_anonymous(&self) -> platform_testing::grpc::Caller {
        let addr = self.orders.as_ref().unwrap().grpc.expect("gRPC is served");
        platform_testing::grpc::anonymous(addr)
    }

    /// Stops the order service (gracefully); the others keep running.
    pub fn stop_orders(&mut self) {
        self.orders = None;
    }

    /// Starts an order service again over the same database and bus.
    pub async fn restart_orders(&mut self, config: OrderServiceConfig) {
        let orders = platform_testing::spawn::<Application>(config).await;
        self.base = orders.base.clone();
        self.orders = Some(orders);
    }

    /// `POST /api/v1/orders` as `actor` under `key`.
    pub async fn place_raw(
        &self,
        actor: &Actor,
        key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/api/v1/orders"))
            .bearer_auth(&actor.token)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap().documented()
    }

    /// Places an order and expects `201`; returns it.
    pub async fn place(&self, actor: &Actor, body: &Value) -> Value {
        json_of(self.place_raw(actor, Some(&new_key()), body).await, 201).await
    }

    pub async fn get(&self, actor: &Actor, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&actor.token)
            .send()
            .await
            .unwrap()
            .documented()
    }

    pub async fn order(&self, actor: &Actor, id: &str) -> Value {
        json_of(self.get(actor, &format!("/api/v1/orders/{id}")).await, 200).await
    }

    pub async fn cancel(&self, actor: &Actor, id: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/v1/orders/{id}/cancel")))
            .bearer_auth(&actor.token)
            .send()
            .await
            .unwrap()
            .documented()
    }

    pub async fn set_status(&self, actor: &Actor, id: &str, status: &str) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/api/v1/orders/{id}/status")))
            .bearer_auth(&actor.token)
            .json(&json!({"status": status}))
            .send()
            .await
            .unwrap()
            .documented()
    }

    /// Creates a product (EUR) in the product service; returns its id.
    pub async fn new_product(&self, name: &str, price: i64, stock: i64) -> String {
        let sku = format!("T-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let response = self
            .client
            .post(format!("{}/api/v1/admin/products", self.products_base))
            .bearer_auth(&self.admin.token)
            .json(&json!({
                "sku": sku,
                "name": name,
                "description": format!("About the {name}."),
                "category": "misc",
                "price": {"amount": price, "currency": "EUR"},
                "stock": stock,
            }))
            .send()
            .await
            .unwrap();
        json_of(response, 201).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// (stock, reserved, available) of a product, as stored.
    pub async fn stock(&self, id: &str) -> (i64, i64, i64) {
        let mut client = ProductServiceClient::new(self.stock_reader.clone());
        let products = client
            .get_products(proto::GetProductsRequest {
                ids: vec![id.to_owned()],
            })
            .await
            .unwrap()
            .into_inner()
            .products;
        let product = &products[0];
        (product.stock, product.reserved, product.available)
    }

    /// Every payment the payment service made for `order_id`.
    pub async fn payments_for(&self, order_id: &str) -> Vec<Value> {
        let mut found = Vec::new();
        for page in 1.. {
            let response = self
                .client
                .get(format!(
                    "{}/api/v1/payments?per_page=100&page={page}",
                    self.payments_base
                ))
                .bearer_auth(&self.admin.token)
                .send()
                .await
                .unwrap();
            let body = json_of(response, 200).await;
            let items = body["items"].as_array().unwrap().clone();
            let done = items.len() < 100;
            found.extend(
                items
                    .into_iter()
                    .filter(|payment| payment["order_id"] == order_id),
            );
            if done {
                break;
            }
        }
        found
    }

    /// Every payment the payment service made.
    /// Sends `event` (its `id` and `timestamp` filled in) to the payment service as a signed
    /// sandbox webhook, as the provider would; the response.
    pub async fn sandbox_webhook(&self, mut event: Value) -> reqwest::Response {
        event["id"] = json!(format!("evt_{}", Uuid::new_v4().simple()));
        event["timestamp"] = json!(chrono::Utc::now().timestamp());
        let body = serde_json::to_vec(&event).unwrap();
        let provider = payment_service::providers::sandbox::SandboxProvider::default();
        self.client
            .post(format!(
                "{}/api/v1/webhooks/payments/sandbox",
                self.payments_base
            ))
            .header("content-type", "application/json")
            .header(
                payment_service::providers::sandbox::SIGNATURE_HEADER,
                provider.sign(&body),
            )
            .body(body)
            .send()
            .await
            .unwrap()
            .documented()
    }

    pub async fn payment_count(&self) -> u64 {
        let response = self
            .client
            .get(format!("{}/api/v1/payments?per_page=1", self.payments_base))
            .bearer_auth(&self.admin.token)
            .send()
            .await
            .unwrap();
        json_of(response, 200).await["total"].as_u64().unwrap()
    }

    /// Every event the order service wrote to its outbox: (type, subject, data), in order.
    pub async fn outbox(&self) -> Vec<(String, String, Value)> {
        platform_testing::outbox(&self.db.config, "order-service")
            .await
            .into_iter()
            .map(|(kind, subject, envelope)| (kind, subject, envelope["data"].clone()))
            .collect()
    }

    /// The order service's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Places an order of `quantity` of `product` paid with `token`, which may still be running
/// (201 or 202); its id.
pub async fn place_running(app: &TestApp, product: &str, quantity: i64, token: &str) -> String {
    let placed = app
        .place_raw(
            &app.user,
            Some(&new_key()),
            &order_body(&[(product, quantity)], token),
        )
        .await;
    assert!(
        [201, 202].contains(&placed.status().as_u16()),
        "{}",
        placed.status()
    );
    let placed: Value = placed.json().await.unwrap();
    placed["id"].as_str().unwrap().to_owned()
}

/// Order `id` once its saga ended (at most 20 s).
pub async fn settle(app: &TestApp, id: &str) -> Value {
    for _ in 0..200 {
        let order = app.order(&app.user, id).await;
        if ["confirmed", "failed", "cancelled"].contains(&order["status"].as_str().unwrap()) {
            return order;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("order {id} never settled");
}
