//! `spawn_app`: the real payment service on random ports, over a private database, with the
//! sandbox provider (see `providers/sandbox.rs` for its test tokens).

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
use platform_testing::{Backend, Call, TestDatabase};
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
    /// The service's HTTP API: `app.get(path).by(&actor).await` and the other verbs.
    http: platform_testing::TestApp,
    pub grpc: SocketAddr,
    /// The service's event bus (its audit records are there).
    pub events: EventsConfig,
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

/// The service with default test settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// The service with settings adjusted by `customize`, over a fresh database.
pub async fn spawn_with(
    backend: Backend,
    customize: impl FnOnce(&mut PaymentServiceConfig),
) -> TestApp {
    let db = Arc::new(TestDatabase::create(backend).await);
    let mut config = PaymentServiceConfig::for_tests(db.config.clone(), JWT_SECRET);
    let orders = FakeOrders::default();
    config.order_url = orders.serve().await;
    customize(&mut config);
    let service_name = config.server.service_name.clone();
    let events = config.events.clone();
    let service = platform_testing::spawn::<Application>(config).await;
    let grpc = service.grpc.expect("gRPC is served");
    TestApp {
        http: service.app(),
        grpc,
        events,
        db,
        service_name,
        admin: actor(Role::Admin),
        user: actor(Role::User),
        orders,
        _service: service,
    }
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

impl std::ops::Deref for TestApp {
    type Target = platform_testing::TestApp;

    fn deref(&self) -> &Self::Target {
        &self.http
    }
}

impl TestApp {
    /// `POST /api/v1/payments` under the idempotency key `key`: add `.by(..)` and `.json(..)`.
    pub fn post_charge(&self, key: &str) -> Call {
        self.post("/api/v1/payments").header("Idempotency-Key", key)
    }

    /// A direct charge of `amount` `currency` with `tok_visa` naming `order`, under a fresh key:
    /// add `.by(..)`.
    pub fn charge_order(&self, order: impl std::fmt::Display, amount: i64, currency: &str) -> Call {
        let mut body = charge_body("tok_visa", amount, currency);
        body["order_id"] = order.to_string().into();
        self.post_charge(&new_key()).json(&body)
    }

    /// Charges `amount` EUR to `card_token` as `who` under a fresh key; asserts 201.
    pub async fn charge(&self, who: &Actor, card_token: &str, amount: i64) -> Value {
        self.charge_body(who, &charge_body(card_token, amount, "EUR"))
            .await
    }

    /// Charges `body` as `who` under a fresh key; asserts 201.
    pub async fn charge_body(&self, who: &Actor, body: &Value) -> Value {
        json_of(self.post_charge(&new_key()).by(who).json(body).await, 201).await
    }

    /// `POST /api/v1/payments/{id}/refund` under the idempotency key `key`: add `.by(..)` and
    /// `.json(..)`.
    pub fn post_refund(&self, id: &str, key: &str) -> Call {
        self.post(&format!("/api/v1/payments/{id}/refund"))
            .header("Idempotency-Key", key)
    }

    /// Refunds `amount` EUR (everything left when `None`) under a fresh key; asserts 200.
    pub async fn refund(&self, who: &Actor, id: &str, amount: Option<i64>) -> Value {
        let body = match amount {
            Some(amount) => {
                json!({"amount": {"amount": amount, "currency": "EUR"}, "reason": "returned"})
            }
            None => json!({"reason": "returned"}),
        };
        json_of(
            self.post_refund(id, &new_key()).by(who).json(&body).await,
            200,
        )
        .await
    }

    /// `GET /api/v1/payments/{id}` as `who`; asserts 200.
    pub async fn payment(&self, who: &Actor, id: &str) -> Value {
        let response = self.get(&format!("/api/v1/payments/{id}")).by(who).await;
        json_of(response, 200).await
    }

    /// `GET /api/v1/payments?…` as `who`; asserts 200.
    pub async fn list(&self, who: &Actor, query: &[(&str, &str)]) -> Value {
        json_of(self.get("/api/v1/payments").by(who).query(query).await, 200).await
    }

    /// Posts `body` to the webhook of `provider` with the `Sandbox-Signature` given.
    pub fn webhook(
        &self,
        provider: &str,
        body: impl Into<Vec<u8>>,
        signature: Option<&str>,
    ) -> Call {
        let call = self
            .post(&format!("/api/v1/webhooks/payments/{provider}"))
            .header("content-type", "application/json")
            .body(body.into());
        match signature {
            Some(signature) => call.header(sandbox::SIGNATURE_HEADER, signature),
            None => call,
        }
    }

    /// Sends `event` as a correctly signed sandbox webhook.
    pub async fn sandbox_webhook(&self, event: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(event).unwrap();
        let signature = signed(&body);
        self.webhook("sandbox", body, Some(&signature)).await
    }

    /// A gRPC client calling as the order service, the one caller of the saga's methods.
    pub async fn grpc_client(&self) -> PaymentServiceClient<Caller> {
        PaymentServiceClient::new(self.grpc_as("order-service"))
    }

    /// A gRPC channel calling as `service`, with tokens meant for this service (its name).
    pub fn grpc_as(&self, service: &str) -> Caller {
        platform_testing::grpc::as_service(self.grpc, service, &self.service_name, JWT_SECRET)
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
