//! `spawn_app`: the real user service on random ports, over a private database.

use platform_testing::http::Documented as _;
use std::net::SocketAddr;

use platform_testing::{Backend, TestDatabase};
use serde_json::{Value, json};
use user_service::config::AdminSeed;
use user_service::domain::{Email, Password, UserName};
use user_service::{Application, UserServiceConfig};

pub use platform_testing::http::problem;

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    /// First, so it is dropped first: the service stops before its database goes.
    _service: platform_testing::Spawned,
    pub base: String,
    pub grpc: SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDatabase,
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// The service with default test settings, or `None` when `backend` is not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_with(backend, |_| {}).await
}

/// The service with settings adjusted by `customize`.
pub async fn spawn_with(
    backend: Backend,
    customize: impl FnOnce(&mut UserServiceConfig),
) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let mut config = UserServiceConfig::for_tests(db.config.clone(), JWT_SECRET);
    config.admin = Some(AdminSeed {
        email: Email::parse(ADMIN_EMAIL).unwrap(),
        name: UserName::administrator(),
        password: Password::parse(ADMIN_PASSWORD).unwrap(),
    });
    customize(&mut config);
    let service = platform_testing::spawn::<Application>(config).await;
    let base = service.base.clone();
    let grpc = service.grpc.expect("gRPC is served");
    Some(TestApp {
        base,
        grpc,
        client: reqwest::Client::new(),
        db,
        _service: service,
    })
}

/// A unique email for this test run.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
            .documented()
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .documented()
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
            .documented()
    }

    /// `PUT /api/v1/users/{id}` with `body`.
    pub async fn update_user(&self, id: &str, token: &str, body: &Value) -> reqwest::Response {
        self.put(&format!("/api/v1/users/{id}"), token, body).await
    }

    /// The status `GET /api/v1/users/me` answers `token` with.
    pub async fn me_status(&self, token: &str) -> u16 {
        self.get("/api/v1/users/me", token).await.status().as_u16()
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .documented()
    }

    pub async fn register(&self, email: &str, password: &str, name: &str) -> reqwest::Response {
        self.post(
            "/api/v1/users",
            &json!({"email": email, "password": password, "name": name}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// A login sent from a task of its own, so that many can be in flight at once.
    pub fn login_in_background(
        &self,
        email: &str,
        password: &str,
    ) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        let request = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}));
        tokio::spawn(request.send())
    }

    pub async fn login_ok(&self, email: &str, password: &str) -> Tokens {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), 200, "login of {email} succeeds");
        let body: Value = response.json().await.unwrap();
        Tokens {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// Registers a fresh user and logs in: (user JSON, tokens).
    pub async fn new_user(&self) -> (Value, Tokens) {
        let email = unique_email();
        let response = self.register(&email, PASSWORD, "Test User").await;
        assert_eq!(response.status(), 201);
        let user: Value = response.json().await.unwrap();
        let tokens = self.login_ok(&email, PASSWORD).await;
        (user, tokens)
    }

    pub async fn admin(&self) -> Tokens {
        self.login_ok(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Event types in the outbox, in publication order.
    pub async fn outbox_types(&self) -> Vec<(String, String)> {
        platform_testing::outbox(&self.db.config, "user-service")
            .await
            .into_iter()
            .map(|(kind, subject, _)| (kind, subject))
            .collect()
    }
}
