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
use platform_testing::{Backend, Call, Spawned, TestDatabase};
use product_service::ProductServiceConfig;
use serde_json::{Value, json};
use uuid::Uuid;

pub use platform_testing::eventually;
pub use platform_testing::http::{Actor, error_fields, json_of, problem};

/// A new user (or administrator) with a fresh token signed with the test secret.
pub fn actor(role: Role) -> Actor {
    platform_testing::http::actor(role, JWT_SECRET)
}

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The three services. Fields drop in order: the order service stops first, the databases
/// go last.
pub struct TestApp {
    orders: Option<Spawned>,
    _product_service: Spawned,
    payment_service: Spawned,
    /// The order service's HTTP API (what `TestApp` dereferences to).
    http: platform_testing::TestApp,
    /// The product service's HTTP API.
    pub products: platform_testing::TestApp,
    /// The payment service's HTTP API.
    pub payments: platform_testing::TestApp,
    /// Calls the product service's gRPC API as the order service.
    stock_reader: platform_testing::grpc::Caller,
    pub config: OrderServiceConfig,
    pub db: TestDatabase,
    _product_db: TestDatabase,
    pub payment_db: TestDatabase,
    _bus: tempfile::TempDir,
    pub admin: Actor,
    pub user: Actor,
}

/// The services with default test settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// The services, the order service's settings adjusted by `customize`.
pub async fn spawn_with(
    backend: Backend,
    customize: impl FnOnce(&mut OrderServiceConfig),
) -> TestApp {
    spawn_services(backend, None, customize, |_| {}).await
}

/// The services with the payment service's settings adjusted by `payments` too.
pub async fn spawn_with_payments(
    backend: Backend,
    customize: impl FnOnce(&mut OrderServiceConfig),
    payments: impl FnOnce(&mut PaymentServiceConfig),
) -> TestApp {
    spawn_services(backend, None, customize, payments).await
}

/// The services talking over mutual TLS only (no token secret anywhere), with certificates
/// from `pki`.
pub async fn spawn_over_mutual_tls(backend: Backend, pki: &Pki) -> TestApp {
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
) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let product_db = TestDatabase::create(backend).await;
    let payment_db = TestDatabase::create(backend).await;
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
    TestApp {
        http: orders.app(),
        orders: Some(orders),
        products: products.app(),
        payments: payments.app(),
        _product_service: products,
        payment_service: payments,
        stock_reader,
        config,
        db,
        _product_db: product_db,
        payment_db,
        _bus: bus,
        admin: actor(Role::Admin),
        user: actor(Role::User),
    }
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

impl std::ops::Deref for TestApp {
    type Target = platform_testing::TestApp;

    fn deref(&self) -> &Self::Target {
        &self.http
    }
}

impl TestApp {
    /// Calls the order service's gRPC API as `service` (with the test secret).
    pub fn order_grpc_as(&self, service: &str) -> platform_testing::grpc::Caller {
        let addr = self.orders.as_ref().unwrap().grpc.expect("gRPC is served");
        platform_testing::grpc::as_service(addr, service, "order-service", JWT_SECRET)
    }

    /// Calls the payment service's gRPC API as the order service does.
    pub fn payment_grpc(&self) -> platform_testing::grpc::Caller {
        let addr = self.payment_service.grpc.expect("gRPC is served");
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
        self.http = orders.app();
        self.orders = Some(orders);
    }

    /// `POST /api/v1/orders` under the idempotency key `key`: add `.by(..)` and `.json(..)`.
    pub fn post_order(&self, key: &str) -> Call {
        self.post("/api/v1/orders").header("Idempotency-Key", key)
    }

    /// Places an order as `actor` under a fresh key and expects `201`; returns it.
    pub async fn place(&self, actor: &Actor, body: &Value) -> Value {
        json_of(self.post_order(&new_key()).by(actor).json(body).await, 201).await
    }

    /// Order `id` as `actor` sees it; expects `200`.
    pub async fn order(&self, actor: &Actor, id: &str) -> Value {
        json_of(
            self.get(&format!("/api/v1/orders/{id}")).by(actor).await,
            200,
        )
        .await
    }

    /// `POST /api/v1/orders/{id}/cancel`: add `.by(..)`.
    pub fn cancel(&self, id: &str) -> Call {
        self.post(&format!("/api/v1/orders/{id}/cancel"))
    }

    /// `PUT /api/v1/orders/{id}/status` to `status`: add `.by(..)`.
    pub fn set_status(&self, id: &str, status: &str) -> Call {
        self.put(&format!("/api/v1/orders/{id}/status"))
            .json(&json!({"status": status}))
    }

    /// Creates a product (EUR) in the product service; returns its id.
    pub async fn new_product(&self, name: &str, price: i64, stock: i64) -> String {
        let sku = format!("T-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let response = self
            .products
            .post("/api/v1/admin/products")
            .by(&self.admin)
            .json(&json!({
                "sku": sku,
                "name": name,
                "description": format!("About the {name}."),
                "category": "misc",
                "price": {"amount": price, "currency": "EUR"},
                "stock": stock,
            }))
            .await;
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
                .payments
                .get(&format!("/api/v1/payments?per_page=100&page={page}"))
                .by(&self.admin)
                .await;
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

    /// Sends `event` (its `id` and `timestamp` filled in) to the payment service as a signed
    /// sandbox webhook, as the provider would; the response.
    pub async fn sandbox_webhook(&self, mut event: Value) -> reqwest::Response {
        event["id"] = json!(format!("evt_{}", Uuid::new_v4().simple()));
        event["timestamp"] = json!(chrono::Utc::now().timestamp());
        let body = serde_json::to_vec(&event).unwrap();
        let provider = payment_service::providers::sandbox::SandboxProvider::default();
        let signature = provider.sign(&body);
        self.payments
            .post("/api/v1/webhooks/payments/sandbox")
            .header("content-type", "application/json")
            .header(
                payment_service::providers::sandbox::SIGNATURE_HEADER,
                signature,
            )
            .body(body)
            .await
    }

    pub async fn payment_count(&self) -> u64 {
        let response = self
            .payments
            .get("/api/v1/payments?per_page=1")
            .by(&self.admin)
            .await;
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
}

/// Places an order of `quantity` of `product` paid with `token`, which may still be running
/// (201 or 202); its id.
pub async fn place_running(app: &TestApp, product: &str, quantity: i64, token: &str) -> String {
    let placed = app
        .post_order(&new_key())
        .by(&app.user)
        .json(&order_body(&[(product, quantity)], token))
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
