//! `spawn_app`: the real payment service on random ports, over a private database, with the
//! sandbox provider (see `providers/sandbox.rs` for its test tokens).

use platform_testing::http::Documented as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use payment_service::providers::sandbox::{self, SandboxProvider};
use payment_service::{Application, PaymentServiceConfig};
use platform_auth::Role;
use platform_events::EventsConfig;
use platform_proto::order::v1 as order;
use platform_proto::order::v1::order_service_server::{OrderService, OrderServiceServer};
use platform_proto::payment::v1::payment_service_client::PaymentServiceClient;
use platform_testing::grpc::Caller;
use platform_testing::{Backend, TestDatabase};
use serde_json::{Value, json};
use uuid::Uuid;

pub use platform_testing::http::{Actor, error_fields, json_of, problem};

/// A new user (or administrator) with a fresh token signed with the test secret.
pub fn actor(role: Role) -> Actor {
    platform_testing::http::actor(role, JWT_SECRET)
}

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

pub struct TestApp {
    /// First, so it is dropped first: the service stops before its database goes.
    _service: platform_testing::Spawned,
    pub base: String,
    pub grpc: SocketAddr,
    /// The service's event bus (its audit records are there).
    pub events: EventsConfig,
    pub client: reqwest::Client,
    pub db: Arc<TestDatabase>,
    pub service_name: String,
    pub admin: Actor,
    pub user: Actor,
    /// The order service the service asks about the orders direct charges name.
    pub orders: FakeOrders,
}

/// A stand-in for the order service's gRPC API: the orders a test places in it, NOT_FOUND for
/// every other id.
#[derive(Clone, Default)]
pub struct FakeOrders {
    orders: Arc<Mutex<HashMap<String, order::Order>>>,
    /// How many times it was asked.
    pub asked: Arc<std::sync::atomic::AtomicU32>,
}

impl FakeOrders {
    /// Serves it on a free loopback port; returns its URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(OrderServiceServer::new(self.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        url
    }

    /// An order of `user`'s costing `amount` `currency`; returns its id.
    pub fn place(&self, user: Uuid, amount: i64, currency: &str) -> Uuid {
        let id = Uuid::now_v7();
        let placed = order::Order {
            order_id: id.to_string(),
            user_id: user.to_string(),
            total: Some(order::Money {
                amount,
                currency: currency.to_owned(),
            }),
            status: "confirmed".to_owned(),
            state: order::OrderStatus::Confirmed.into(),
        };
        self.orders.lock().unwrap().insert(id.to_string(), placed);
        id
    }
}

#[tonic::async_trait]
impl OrderService for FakeOrders {
    async fn get_order(
        &self,
        request: tonic::Request<order::GetOrderRequest>,
    ) -> Result<tonic::Response<order::Order>, tonic::Status> {
        self.asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = &request.get_ref().order_id;
        let found = self.orders.lock().unwrap().get(id).cloned();
        found
            .map(tonic::Response::new)
            .ok_or_else(|| tonic::Status::not_found(format!("no order {id}")))
    }
}

/// The service with default test settings, or `None` when `backend` is not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_with(backend, |_| {}).await
}

/// The service with settings adjusted by `customize`, over a fresh database.
pub async fn spawn_with(
    backend: Backend,
    customize: impl FnOnce(&mut PaymentServiceConfig),
) -> Option<TestApp> {
    let db = Arc::new(TestDatabase::create(backend).await?);
    let mut config = PaymentServiceConfig::for_tests(db.config.clone(), JWT_SECRET);
    let orders = FakeOrders::default();
    config.order_url = orders.serve().await;
    customize(&mut config);
    let service_name = config.server.service_name.clone();
    let events = config.events.clone();
    let service = platform_testing::spawn::<Application>(config).await;
    let base = service.base.clone();
    let grpc = service.grpc.expect("gRPC is served");
    Some(TestApp {
        base,
        grpc,
        events,
        client: reqwest::Client::new(),
        db,
        service_name,
        admin: actor(Role::Admin),
        user: actor(Role::User),
        orders,
        _service: service,
    })
}

/// A valid charge request for a new order.
pub fn charge_body(card_token: &str, amount: i64, currency: &str) -> Value {
    json!({
        "order_id": Uuid::now_v7(),
        "amount": {"amount": amount, "currency": currency},
        "method": {"type": "card", "token": card_token},
    })
}

/// A fresh idempotency key.
pub fn new_key() -> String {
    Uuid::new_v4().to_string()
}

/// A sandbox webhook body signed with the development secret.
pub fn signed(body: &[u8]) -> String {
    SandboxProvider::default().sign(body)
}

/// Now, in unix seconds (for webhook timestamps).
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/v1/payments` with an optional bearer token and idempotency key.
    pub async fn charge_raw(
        &self,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url("/api/v1/payments")).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap().documented()
    }

    /// A direct charge of `amount` `currency` with `tok_visa` naming `order`, as `who`, under a
    /// fresh key.
    pub async fn charge_order(
        &self,
        who: &Actor,
        order: impl std::fmt::Display,
        amount: i64,
        currency: &str,
    ) -> reqwest::Response {
        let mut body = charge_body("tok_visa", amount, currency);
        body["order_id"] = order.to_string().into();
        self.charge_raw(Some(&who.token), Some(&new_key()), &body)
            .await
    }

    /// Charges `amount` EUR to `card_token` as `who` under a fresh key; asserts 201.
    pub async fn charge(&self, who: &Actor, card_token: &str, amount: i64) -> Value {
        self.charge_body(who, &charge_body(card_token, amount, "EUR"))
            .await
    }

    /// Charges `body` as `who` under a fresh key; asserts 201.
    pub async fn charge_body(&self, who: &Actor, body: &Value) -> Value {
        let response = self
            .charge_raw(Some(&who.token), Some(&new_key()), body)
            .await;
        json_of(response, 201).await
    }

    /// `POST /api/v1/payments/{id}/refund`.
    pub async fn refund_raw(
        &self,
        who: &Actor,
        id: &str,
        key: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/v1/payments/{id}/refund")))
            .bearer_auth(&who.token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
            .documented()
    }

    /// Refunds `amount` EUR (everything left when `None`) under a fresh key; asserts 200.
    pub async fn refund(&self, who: &Actor, id: &str, amount: Option<i64>) -> Value {
        let body = match amount {
            Some(amount) => {
                json!({"amount": {"amount": amount, "currency": "EUR"}, "reason": "returned"})
            }
            None => json!({"reason": "returned"}),
        };
        json_of(self.refund_raw(who, id, &new_key(), &body).await, 200).await
    }

    /// `GET /api/v1/payments/{id}`.
    pub async fn get_raw(&self, who: &Actor, id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/v1/payments/{id}")))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap()
            .documented()
    }

    pub async fn payment(&self, who: &Actor, id: &str) -> Value {
        json_of(self.get_raw(who, id).await, 200).await
    }

    /// `GET /api/v1/payments?…`.
    pub async fn list_raw(&self, who: &Actor, query: &[(&str, &str)]) -> reqwest::Response {
        let url = reqwest::Url::parse_with_params(&self.url("/api/v1/payments"), query).unwrap();
        self.client
            .get(url)
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap()
            .documented()
    }

    pub async fn list(&self, who: &Actor, query: &[(&str, &str)]) -> Value {
        json_of(self.list_raw(who, query).await, 200).await
    }

    /// Posts `body` to the webhook of `provider` with the `Sandbox-Signature` given.
    pub async fn webhook_raw(
        &self,
        provider: &str,
        body: impl Into<Vec<u8>>,
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(&format!("/api/v1/webhooks/payments/{provider}")))
            .header("content-type", "application/json")
            .body(body.into());
        if let Some(signature) = signature {
            request = request.header(sandbox::SIGNATURE_HEADER, signature);
        }
        request.send().await.unwrap().documented()
    }

    /// Sends `event` as a correctly signed sandbox webhook.
    pub async fn sandbox_webhook(&self, event: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(event).unwrap();
        let signature = signed(&body);
        self.webhook_raw("sandbox", body, Some(&signature)).await
    }

    /// A gRPC client calling as the order service, the one caller of the saga's methods.
    pub async fn grpc_client(&self) -> PaymentServiceClient<Caller> {
        PaymentServiceClient::new(self.grpc_as("order-service"))
    }

    /// A gRPC channel calling as `service`, with tokens meant for this service (its name).
    pub fn grpc_as(&self, service: &str) -> Caller {
        platform_testing::grpc::as_service(self.grpc, service, &self.service_name, JWT_SECRET)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// The sum of the series `name{…}` whose labels include every one of `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|value| value as u64)
            .sum()
    }

    /// A connection of its own to the service's database.
    pub async fn connect(&self) -> sea_orm::DatabaseConnection {
        platform_db::connect(&self.db.config, &self.service_name)
            .await
            .unwrap()
    }

    /// Every outbox row: (type, subject, envelope), in publication order.
    pub async fn outbox(&self) -> Vec<(String, String, Value)> {
        let db = self.connect().await;
        let rows = platform_events::outbox::all(&db).await.unwrap();
        db.close().await.unwrap();
        rows.into_iter()
            .map(|row| (row.event_type, row.subject, row.envelope))
            .collect()
    }

    /// The outbox rows of `event_type` about payment `id`: their `data`.
    pub async fn events_of(&self, event_type: &str, id: &str) -> Vec<Value> {
        self.outbox()
            .await
            .into_iter()
            .filter(|(kind, subject, _)| kind == event_type && subject == id)
            .map(|(_, _, envelope)| envelope["data"].clone())
            .collect()
    }
}
