//! `spawn_app`: the real product service on random ports, over a private database.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use platform_auth::{Jwt, JwtConfig, Role, UserId};
use platform_events::EventsConfig;
use platform_proto::product::v1 as proto;
use platform_proto::product::v1::product_service_client::ProductServiceClient;
use platform_testing::grpc::Caller;
use platform_testing::{Backend, Call, TestDatabase};
use product_service::{Application, ProductServiceConfig};
use serde_json::{Value, json};

pub use platform_testing::eventually;
pub use platform_testing::http::{error_fields, json_of, problem};

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The service under test; derefs to the shared HTTP client (`app.get(path).by(&app.admin)`).
pub struct TestApp {
    /// First, so it is dropped first: the service stops before its database goes.
    _service: platform_testing::Spawned,
    http: platform_testing::TestApp,
    pub grpc: SocketAddr,
    /// The service's event bus (its audit records are there).
    pub events: EventsConfig,
    /// Shared by every instance spawned over it (see [`spawn_on`]).
    pub db: Arc<TestDatabase>,
    /// `config.server.service_name`: the SQLite file name, the metrics' `service` label and
    /// the cache's Redis key prefix.
    pub service_name: String,
    pub admin: String,
    pub user: String,
}

impl Deref for TestApp {
    type Target = platform_testing::TestApp;

    fn deref(&self) -> &Self::Target {
        &self.http
    }
}

/// The service with default test settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// The service with settings adjusted by `customize`, over a fresh database.
pub async fn spawn_with(
    backend: Backend,
    customize: impl FnOnce(&mut ProductServiceConfig),
) -> TestApp {
    let db = Arc::new(TestDatabase::create(backend).await);
    spawn_on(&db, customize).await
}

/// Another instance over an existing database (replicas, restarts).
pub async fn spawn_on(
    db: &Arc<TestDatabase>,
    customize: impl FnOnce(&mut ProductServiceConfig),
) -> TestApp {
    let mut config = ProductServiceConfig::for_tests(db.config.clone(), JWT_SECRET);
    customize(&mut config);
    let service_name = config.server.service_name.clone();
    let events = config.events.clone();
    let service = platform_testing::spawn::<Application>(config).await;
    TestApp {
        http: service.app(),
        grpc: service.grpc.expect("gRPC is served"),
        events,
        db: Arc::clone(db),
        service_name,
        admin: token(Role::Admin),
        user: token(Role::User),
        _service: service,
    }
}

/// A fresh access token with `role`, signed with the test secret.
pub fn token(role: Role) -> String {
    Jwt::new(JwtConfig::with_secret(JWT_SECRET))
        .issue(UserId::generate(), role)
        .unwrap()
        .token
}

/// A SKU no other test uses.
pub fn unique_sku(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A valid create request; adjust fields with `json` merges in the tests.
pub fn product_body(name: &str, category: &str, amount: i64, stock: i64) -> Value {
    json!({
        "sku": unique_sku("T"),
        "name": name,
        "description": format!("About the {name}."),
        "category": category,
        "price": {"amount": amount, "currency": "EUR"},
        "stock": stock,
    })
}

impl TestApp {
    /// Creates a product as the administrator; returns it.
    pub async fn create(&self, body: &Value) -> Value {
        let response = self
            .post("/api/v1/admin/products")
            .by(&self.admin)
            .json(body)
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "create failed: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Creates a product with the usual fields; returns its id.
    pub async fn new_product(&self, name: &str, category: &str, amount: i64, stock: i64) -> String {
        let product = self
            .create(&product_body(name, category, amount, stock))
            .await;
        product["id"].as_str().unwrap().to_owned()
    }

    /// `GET /api/v1/products/{id}`, which must be found.
    pub async fn product(&self, id: &str) -> Value {
        json_of(self.get(&format!("/api/v1/products/{id}")).await, 200).await
    }

    /// `PUT /api/v1/admin/products/{id}` as the administrator.
    pub fn update(&self, id: &str, body: &Value) -> Call {
        self.put(&format!("/api/v1/admin/products/{id}"))
            .by(&self.admin)
            .json(body)
    }

    /// `PUT /api/v1/admin/products/{id}/inventory` as the administrator.
    pub fn inventory(&self, id: &str, body: &Value) -> Call {
        self.put(&format!("/api/v1/admin/products/{id}/inventory"))
            .by(&self.admin)
            .json(body)
    }

    /// `DELETE /api/v1/admin/products/{id}` as the administrator.
    pub fn archive(&self, id: &str) -> Call {
        self.delete(&format!("/api/v1/admin/products/{id}"))
            .by(&self.admin)
    }

    /// A gRPC client calling as the order service, the one caller of the saga's methods.
    pub async fn grpc_client(&self) -> ProductServiceClient<Caller> {
        ProductServiceClient::new(self.grpc_as("order-service"))
    }

    /// A gRPC channel calling as `service`, with tokens meant for this service (its name).
    pub fn grpc_as(&self, service: &str) -> Caller {
        platform_testing::grpc::as_service(self.grpc, service, &self.service_name, JWT_SECRET)
    }

    /// `Reserve` of one line per `(product id, quantity)`.
    pub async fn reserve(
        &self,
        order_id: &str,
        lines: &[(&str, u32)],
    ) -> Result<proto::Reservation, tonic::Status> {
        let request = proto::ReserveRequest {
            order_id: order_id.to_owned(),
            lines: lines
                .iter()
                .map(|(product_id, quantity)| proto::Line {
                    product_id: (*product_id).to_owned(),
                    quantity: *quantity,
                })
                .collect(),
        };
        self.grpc_client()
            .await
            .reserve(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// The product as `GetProducts` reports it, straight from the database.
    pub async fn stored(&self, id: &str) -> proto::Product {
        let found = self
            .grpc_client()
            .await
            .get_products(proto::GetProductsRequest {
                ids: vec![id.to_owned()],
            })
            .await
            .unwrap()
            .into_inner()
            .products;
        assert_eq!(found.len(), 1, "product {id} is stored");
        found.into_iter().next().unwrap()
    }

    /// Every outbox row: (type, subject, envelope), in publication order.
    pub async fn outbox(&self) -> Vec<(String, String, Value)> {
        let db = platform_db::connect(&self.db.config, &self.service_name)
            .await
            .unwrap();
        let rows = platform_events::outbox::all(&db).await.unwrap();
        db.close().await.unwrap();
        rows.into_iter()
            .map(|row| (row.event_type, row.subject, row.envelope))
            .collect()
    }
}
