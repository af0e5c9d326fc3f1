//! Helpers for `scripts/bench-gateway.sh`:
//! - `bench_tools serve PORT`: a minimal, fast upstream answering every request with a small
//!   JSON body (the thing being proxied, so it must never be the bottleneck);
//! - `bench_tools token SECRET`: prints an access token signed with `SECRET`, so the benchmark
//!   exercises edge authentication;
//! - `bench_tools bare-proxy PORT UPSTREAM_PORT`: the least a hyper reverse proxy can do (one
//!   pooled client per core, no auth, limits, metrics or header rewriting). It is the floor the
//!   gateway's own cost is measured against: gateway/bare-proxy is the price of its features.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

const BODY: &[u8] = br#"{"id":"0191e3b0-7c3e-7d4a-9a4e-000000000001","name":"benchmark","price":{"amount":1999,"currency":"EUR"}}"#;

/// One current-thread runtime per core, all accepting on one shared socket: the same shape as
/// the gateway's serving loop, without any of its work.
fn bare_proxy(port: u16, upstream: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let listener = listener.try_clone().unwrap();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(bare_proxy_loop(listener, upstream));
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}

async fn bare_proxy_loop(listener: std::net::TcpListener, upstream: u16) {
    use hyper_util::client::legacy::Client;
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, hyper::body::Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let base = format!("http://127.0.0.1:{upstream}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let client = client.clone();
                let uri = format!(
                    "{base}{}",
                    request.uri().path_and_query().map_or("/", |p| p.as_str())
                );
                async move {
                    let (mut parts, body) = request.into_parts();
                    parts.uri = uri.parse().unwrap();
                    let response = client.request(Request::from_parts(parts, body)).await;
                    Ok::<_, Infallible>(match response {
                        Ok(response) => response.map(http_body_util::Either::Left),
                        Err(_) => Response::builder()
                            .status(502)
                            .body(http_body_util::Either::Right(Full::new(Bytes::new())))
                            .unwrap(),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn serve(port: u16) {
    // A deep accept queue: a proxy opening hundreds of upstream connections at once must not
    // meet tokio's default of 128 (dropped handshakes, one-second stalls in every figure).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    let listener = socket.listen(4096).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(BODY)))
                        .unwrap(),
                )
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let port: u16 = args
                .get(2)
                .and_then(|p| p.parse().ok())
                .expect("serve PORT");
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(serve(port));
        }
        Some("bare-proxy") => {
            let port = |i: usize| -> u16 {
                args.get(i)
                    .and_then(|p| p.parse().ok())
                    .expect("bare-proxy PORT UPSTREAM_PORT")
            };
            bare_proxy(port(2), port(3));
        }
        Some("token") => {
            let secret = args.get(2).expect("token SECRET");
            let jwt = platform_auth::Jwt::new(platform_auth::JwtConfig {
                expiration: std::time::Duration::from_secs(3600),
                ..platform_auth::JwtConfig::with_secret(secret.as_str())
            });
            let token = jwt
                .issue(platform_auth::UserId::generate(), platform_auth::Role::User)
                .unwrap();
            println!("{}", token.token);
        }
        _ => {
            eprintln!(
                "usage: bench_tools serve PORT | token SECRET | bare-proxy PORT UPSTREAM_PORT"
            );

            std::process::exit(2);
        }
    }
}
