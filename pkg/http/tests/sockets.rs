//! What every listener of the kit does with sockets that misbehave: a client trickling its
//! head is cut off at the header-read timeout (HTTP, HTTPS, gRPC, metrics), an idle keep-alive
//! connection is closed at the idle timeout, and a connection past `MAX_CONNECTIONS` is
//! refused at once (a 503 problem on HTTP, a close elsewhere); and a TLS client coming back
//! resumes its session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use platform_http::grpc_guard::{CredentialError, Unauthenticated};
use platform_http::{
    CallerAuthenticator, GrpcAccess, GrpcApi, HttpApi, Metrics, Readiness, Server, ServerConfig,
    ServiceParts,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Recognises no caller (health, which these tests use, needs none).
struct Nobody;

impl CallerAuthenticator for Nobody {
    fn authenticate(
        &self,
        _: &http::HeaderMap,
        _: Option<&[rustls_pki_types::CertificateDer<'static>]>,
    ) -> Result<Arc<str>, Unauthenticated> {
        Err(Unauthenticated::new(CredentialError::Missing))
    }

    fn server_tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        None
    }
}

struct Listeners {
    http: SocketAddr,
    grpc: SocketAddr,
    metrics: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Listeners {
    let mut config = ServerConfig::for_tests("sockets-test");
    config.metrics_port = Some(0);
    configure(&mut config);
    let server = Server::bind(
        &config,
        ServiceParts {
            http: HttpApi {
                router: Router::new().route("/hello", get(|| async { "hello" })),
                openapi: None,
                own_health: false,
            },
            grpc: Some(GrpcApi {
                // The kit adds the health service itself.
                routes: tonic::service::RoutesBuilder::default().routes(),
                authenticator: Arc::new(Nobody),
                access: GrpcAccess::new(),
                file_descriptor_set: tonic_health::pb::FILE_DESCRIPTOR_SET,
                services: vec![],
            }),
            readiness: Readiness::new(),
            metrics: Metrics::new("sockets-test"),
            audit: platform_http::audit::Audit::new("sockets-test"),
        },
    )
    .await
    .unwrap();
    let listeners = Listeners {
        http: server.http_addr(),
        grpc: server.grpc_addr().unwrap(),
        metrics: server.metrics_addr().unwrap(),
        stop: CancellationToken::new(),
    };
    tokio::spawn(server.run(listeners.stop.clone()));
    listeners
}

/// Sends `bytes` one every `pace` until the server closes the connection; returns how long
/// that took and everything it sent back.
async fn trickle(addr: SocketAddr, bytes: &[u8], pace: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        answer
    });
    for byte in bytes.iter().cycle().take(200) {
        if reader.is_finished() || write.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(pace).await;
    }
    let answer = reader.await.unwrap();
    (started.elapsed(), answer)
}

#[tokio::test]
async fn a_client_trickling_its_head_is_cut_off_on_every_listener() {
    let listeners = start(|config| {
        config.connections.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let head = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890\r\n\r\n";
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let pace = Duration::from_millis(250);
    let (http, grpc, metrics) = tokio::join!(
        trickle(listeners.http, head, pace),
        trickle(listeners.grpc, preface, pace),
        trickle(listeners.metrics, head, pace),
    );
    for (name, (elapsed, answer), http) in [
        ("http", http, true),
        ("grpc", grpc, false),
        ("metrics", metrics, true),
    ] {
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
            "{name}: cut off after {elapsed:?}"
        );
        if http {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 408 "), "{name}: {text}");
            assert!(text.contains("application/problem+json"), "{name}: {text}");
        }
    }
}

/// A self-signed certificate for `localhost` written to `dir`: the files to serve, and the
/// certificate for a client to trust.
fn self_signed(
    dir: &std::path::Path,
) -> (
    platform_http::tls::TlsConfig,
    rustls_pki_types::CertificateDer<'static>,
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let files = platform_http::tls::TlsConfig {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    };
    std::fs::write(&files.cert_file, cert.pem()).unwrap();
    std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
    (files, cert.der().clone())
}

#[tokio::test]
async fn a_trickled_tls_handshake_is_cut_off_too() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = self_signed(dir.path());
    let listeners = start(|config| {
        config.connections.header_read_timeout = Duration::from_secs(1);
        config.tls = Some(files);
    })
    .await;
    // The first bytes of a TLS ClientHello record, slowly.
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let (elapsed, _) = trickle(listeners.http, &hello, Duration::from_millis(250)).await;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "cut off after {elapsed:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let listeners = start(|config| {
        config.connections.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(listeners.http).await.unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    assert!(buf[..n].ends_with(b"hello"));
    let idle_from = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a word");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_millis(2500),
        "{idle:?}"
    );
}

/// How a new connection to `addr` is met, within a short wait: refused (an answer or a
/// close) or held open.
async fn met(addr: SocketAddr) -> (TcpStream, Option<Vec<u8>>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 503") => (stream, Some(buf[..n].to_vec())),
        Ok(Ok(0)) | Ok(Err(_)) => (stream, Some(Vec::new())),
        // Held open (a gRPC server may greet first with its settings).
        _ => (stream, None),
    }
}

#[tokio::test]
async fn connections_past_the_limit_are_refused_at_once_on_every_listener() {
    let listeners = start(|config| {
        config.connections.max_connections = 3;
        config.connections.header_read_timeout = Duration::from_secs(5);
    })
    .await;
    for (name, addr, http) in [
        ("http", listeners.http, true),
        ("grpc", listeners.grpc, false),
        ("metrics", listeners.metrics, true),
    ] {
        let mut held = Vec::new();
        for _ in 0..3 {
            let (stream, refusal) = met(addr).await;
            assert!(refusal.is_none(), "{name}: refused below the limit");
            held.push(stream);
        }
        let started = Instant::now();
        let (_, refusal) = met(addr).await;
        let refusal = refusal.unwrap_or_else(|| panic!("{name}: the fourth was held open"));
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{name}: at once"
        );
        if http {
            let text = String::from_utf8_lossy(&refusal);
            assert!(text.contains("application/problem+json"), "{name}: {text}");
            assert!(text.contains("retry-after: 1"), "{name}: {text}");
        }
        // A slot freed is a slot taken again.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, refusal) = met(addr).await;
        assert!(refusal.is_none(), "{name}: a freed slot is not reused");
    }
}

#[tokio::test]
async fn metrics_move_to_their_own_port() {
    let listeners = start(|_| {}).await;
    let client = reqwest::Client::new();
    let main = client
        .get(format!("http://{}/metrics", listeners.http))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404, "not on the main listener any more");
    let metrics = client
        .get(format!("http://{}/metrics", listeners.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let hello = client
        .get(format!("http://{}/hello", listeners.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 404, "the metrics port serves metrics only");
}

/// A returning client resumes its session (an abbreviated handshake) even after many other
/// clients came and went: tickets are stateless, where rustls's default session cache
/// keeps 256 and forgets the rest.
#[tokio::test]
async fn returning_clients_resume_their_sessions_after_many_others() {
    let dir = tempfile::tempdir().unwrap();
    let (files, cert) = self_signed(dir.path());
    let server = platform_http::tls::load(&files).unwrap();
    assert!(server.ticketer.enabled());
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.write_all(b"ok").await;
                let _ = tls.shutdown().await;
            }
        }
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    // Each client keeps its own sessions.
    let client = || {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let visit = |connector: tokio_rustls::TlsConnector| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        // Reading takes in the tickets the server sends after the handshake.
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"ok");
        tls.get_ref().1.handshake_kind()
    };
    let returning = client();
    assert_eq!(
        visit(returning.clone()).await,
        Some(rustls::HandshakeKind::Full)
    );
    for _ in 0..300 {
        visit(client()).await;
    }
    assert_eq!(visit(returning).await, Some(rustls::HandshakeKind::Resumed));
}
