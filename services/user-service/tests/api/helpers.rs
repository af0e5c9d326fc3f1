//! `spawn_app`: the real user service on random ports, over a private database.

use std::net::SocketAddr;
use std::ops::Deref;

use platform_testing::{Backend, Call, TestDatabase};
use serde_json::{Value, json};
use user_service::config::AdminSeed;
use user_service::domain::{Email, Password, UserName};
use user_service::{Application, UserServiceConfig};

pub use platform_testing::http::problem;

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "correct horse battery";

/// The service under test; derefs to the shared HTTP client (`app.get(path).by(&token)`).
pub struct TestApp {
    /// First, so it is dropped first: the service stops before its database goes.
    _service: platform_testing::Spawned,
    http: platform_testing::TestApp,
    pub grpc: SocketAddr,
    pub db: TestDatabase,
}

impl Deref for TestApp {
    type Target = platform_testing::TestApp;

    fn deref(&self) -> &Self::Target {
        &self.http
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// The service with default test settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// The service with settings adjusted by `customize`.
pub async fn spawn_with(
    backend: Backend,
    customize: impl FnOnce(&mut UserServiceConfig),
) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let mut config = UserServiceConfig::for_tests(db.config.clone(), JWT_SECRET);
    config.admin = Some(AdminSeed {
        email: Email::parse(ADMIN_EMAIL).unwrap(),
        name: UserName::administrator(),
        password: Password::parse(ADMIN_PASSWORD).unwrap(),
    });
    customize(&mut config);
    let service = platform_testing::spawn::<Application>(config).await;
    TestApp {
        http: service.app(),
        grpc: service.grpc.expect("gRPC is served"),
        db,
        _service: service,
    }
}

/// A unique email for this test run.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    /// `POST /api/v1/users`.
    pub fn register(&self, email: &str, password: &str, name: &str) -> Call {
        self.post("/api/v1/users")
            .json(&json!({"email": email, "password": password, "name": name}))
    }

    /// `POST /api/v1/auth/login`; `tokio::spawn(app.login(..).into_future())` sends it from a
    /// task of its own, so that many can be in flight at once.
    pub fn login(&self, email: &str, password: &str) -> Call {
        self.post("/api/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
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

    /// `POST /api/v1/auth/refresh`.
    pub fn refresh(&self, refresh_token: &str) -> Call {
        self.post("/api/v1/auth/refresh")
            .json(&json!({"refresh_token": refresh_token}))
    }

    /// `POST /api/v1/auth/logout`.
    pub fn logout(&self, refresh_token: &str) -> Call {
        self.post("/api/v1/auth/logout")
            .json(&json!({"refresh_token": refresh_token}))
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
