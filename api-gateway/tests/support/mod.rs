//! Shared by the gateway suites: fake upstreams whose behaviour tests change at will, tokens,
//! and a gateway on a random port.
#![allow(dead_code)]

pub mod raw;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_gateway::routes::{self, FileConfig};
use api_gateway::{Application as Gateway, GatewayConfig};
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use platform_auth::Role;
use platform_http::{CancellationToken, Service};
use platform_resilience::BreakerConfig;
use platform_testing::TestApp;
use serde_json::{Value, json};

pub const SECRET: &str = "gateway-test-secret-0123456789abcdef";

/// A signed access token for `user` with `role`, as the user service would issue it.
pub fn token(role: Role, user: uuid::Uuid) -> String {
    platform_testing::http::token(user, role, SECRET)
}

pub fn user_token() -> String {
    token(Role::User, uuid::Uuid::now_v7())
}

/// How a fake upstream answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Status of every API answer.
    pub status: u16,
    /// Wait before answering.
    pub delay: Duration,
    /// Whether `/health` says 200 (else 503).
    pub healthy: bool,
}

/// An upstream that counts its API hits and echoes what it received as JSON.
pub struct Fake {
    pub name: String,
    pub url: String,
    hits: Arc<AtomicUsize>,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: CancellationToken,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Fake {
    pub async fn start(name: &str) -> Fake {
        let hits = Arc::new(AtomicUsize::new(0));
        let behaviour = Arc::new(Mutex::new(Behaviour {
            status: 200,
            delay: Duration::ZERO,
            healthy: true,
        }));
        let app = Router::new().fallback(any({
            let (hits, behaviour, name) = (hits.clone(), behaviour.clone(), name.to_owned());
            move |request: Request| {
                let (hits, behaviour, name) = (hits.clone(), behaviour.clone(), name.clone());
                async move { answer(&name, &hits, &behaviour, request).await }
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            }
        });
        Fake {
            name: name.to_owned(),
            url,
            hits,
            behaviour,
            stop,
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().unwrap());
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer(
    name: &str,
    hits: &AtomicUsize,
    behaviour: &Mutex<Behaviour>,
    request: Request,
) -> Response {
    let current = behaviour.lock().unwrap().clone();
    if request.uri().path() == "/health" {
        let status = if current.healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return (status, "health").into_response();
    }
    hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(current.delay).await;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
        .collect();
    let echo = json!({
        "server": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    (
        StatusCode::from_u16(current.status).unwrap(),
        axum::Json(echo),
    )
        .into_response()
}

/// A gateway configuration for tests: the built-in routes, the given services' URLs, fast
/// health checks and breakers.
pub fn config(upstreams: &[(&str, &str)]) -> GatewayConfig {
    let mut config = GatewayConfig::for_tests(upstreams, SECRET);
    config.health_check_interval = Duration::from_millis(100);
    config.breaker = BreakerConfig {
        window: Duration::from_secs(10),
        window_size: 20,
        min_requests: 5,
        failure_rate: 0.5,
        open_for: Duration::from_millis(300),
        half_open_probes: 2,
    };
    config.retry.backoff_base = Duration::from_millis(5);
    config.retry.backoff_max = Duration::from_millis(20);
    config
}

/// Replaces the route table with a TOML one.
pub fn with_routes(mut config: GatewayConfig, toml: &str) -> GatewayConfig {
    let (services, routes) = routes::build(&FileConfig::parse("test.toml", toml).unwrap()).unwrap();
    config.services = services;
    config.routes = routes;
    config
}

/// A gateway on a random port; calls go through its [`TestApp`] (`gateway.get(path)`).
pub struct TestGateway {
    http: TestApp,
    stop: CancellationToken,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::ops::Deref for TestGateway {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.http
    }
}

impl TestGateway {
    pub async fn start(config: GatewayConfig) -> TestGateway {
        let gateway = Gateway::build(config).await.unwrap();
        let http = TestApp::new(format!("http://{}", gateway.http_addr()));
        let stop = CancellationToken::new();
        tokio::spawn(gateway.run(stop.clone()));
        TestGateway { http, stop }
    }

    /// `host:port` it listens on, for raw connections.
    pub fn address(&self) -> String {
        self.base().trim_start_matches("http://").to_owned()
    }

    /// The base URL over TLS, by the name the test certificate is for.
    pub fn https(&self) -> String {
        self.base().replace("http://127.0.0.1", "https://localhost")
    }

    /// `/health` as an administrator (who sees each service's detail) sees it.
    pub async fn health(&self) -> Value {
        let admin = token(Role::Admin, uuid::Uuid::now_v7());
        self.get("/health").by(admin).await.json().await.unwrap()
    }
}

/// Serves `config` over TLS with a new self-signed certificate for `localhost` in `dir`;
/// returns the certificate's DER.
pub fn serve_tls(config: &mut GatewayConfig, dir: &std::path::Path) -> Vec<u8> {
    let der = certificate(dir);
    config.server.tls = Some(platform_http::tls::TlsConfig {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    });
    der
}

/// A self-signed certificate for `localhost`, as PEM files in `dir`; returns its DER.
pub fn certificate(dir: &std::path::Path) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    cert.der().to_vec()
}

/// A TLS connection to `addr` (as `localhost`, any certificate accepted) that offers
/// HTTP/1.1 by ALPN.
pub async fn tls_connect(addr: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    #[derive(Debug)]
    struct AcceptAll;
    impl rustls::client::danger::ServerCertVerifier for AcceptAll {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAll))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            stream,
        )
        .await
        .unwrap()
}
