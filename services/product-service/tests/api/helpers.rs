//! `spawn_app`: the real product service on random ports, over a private database.

use platform_testing::http::Documented as _;
use std::net::SocketAddr;
use std::sync::Arc;

use platform_auth::{Jwt, JwtConfig, Role, UserId};
use platform_events::EventsConfig;
use platform_proto::product::v1 as proto;
use platform_proto::product::v1::product_service_client::ProductServiceClient;
use platform_testing::grpc::Caller;
use platform_testing::{Backend, TestDatabase};
use product_service::{Application, ProductServiceConfig};
use serde_json::{Value, json};

pub use platform_testing::http::{error_fields, problem, wait_until};

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

pub struct TestApp {
    /// First, so it is dropped first: the service stops before its database goes.
    _service: platform_testing::Spawned,
    pub base: String,
    pub grpc: SocketAddr,
    /// The service's event bus (its audit records are there).
    pub events: EventsConfig,
    pub client: reqwest::Client,
    /// Shared by every instance spawned over it (see [`spawn_on`]).
    pub db: Arc<TestDatabase>,
    /// `config.server.service_name`: the SQLite file name, the metrics' `service` label and
    /// the cache's Redis key prefix.
    pub service_name: String,
    pub admin: String,
    pub user: String,
}

/// The service with default test settings, or `None` when `backend` is not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_with(backend, |_| {}).await
}

/// The service with settings adjusted by `customize`, over a fresh database.
pub async fn spawn_with(
    backend: Backend,
    customize: impl FnOnce(&mut ProductServiceConfig),
) -> Option<TestApp> {
    let db = Arc::new(TestDatabase::create(backend).await?);
    Some(spawn_on(&db, customize).await)
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
    let base = service.base.clone();
    let grpc = service.grpc.expect("gRPC is served");
    TestApp {
        base,
        grpc,
        events,
        client: reqwest::Client::new(),
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
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET without a token (the catalog is public).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .documented()
    }

    /// GET with query parameters, encoded properly.
    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        let url = reqwest::Url::parse_with_params(&self.url(path), query).unwrap();
        self.client.get(url).send().await.unwrap().documented()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().documented()
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.put(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().documented()
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.delete(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().documented()
    }

    /// Creates a product as the administrator; returns it.
    pub async fn create(&self, body: &Value) -> Value {
        let response = self
            .post("/api/v1/admin/products", Some(&self.admin), body)
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

    pub async fn product(&self, id: &str) -> Value {
        self.get_json(&format!("/api/v1/products/{id}")).await
    }

    pub async fn update(&self, id: &str, body: &Value) -> reqwest::Response {
        self.put(
            &format!("/api/v1/admin/products/{id}"),
            Some(&self.admin),
            body,
        )
        .await
    }

    pub async fn inventory(&self, id: &str, body: &Value) -> reqwest::Response {
        self.put(
            &format!("/api/v1/admin/products/{id}/inventory"),
            Some(&self.admin),
            body,
        )
        .await
    }

    pub async fn archive(&self, id: &str) -> reqwest::Response {
        self.delete(&format!("/api/v1/admin/products/{id}"), Some(&self.admin))
            .await
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

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// The sum of the series `name{…}` whose labels include every one of `labels`
    /// (`key="value"`), 0 when there is none.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|value| value as u64)
            .sum()
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
