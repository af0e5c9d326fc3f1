//! Every listener of the platform, HTTP and gRPC alike, defends itself the same way: slow
//! clients are cut off and connections past the limit are refused.

use std::time::Duration;

use platform_config::Env;
use platform_http::CancellationToken;
use platform_testing::{Backend, TestDatabase};

use crate::env_for;

/// Sends `bytes` one every 400 ms until the server closes; how long that took and what came
/// back.
async fn trickle(addr: std::net::SocketAddr, bytes: &'static [u8]) -> (Duration, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        answer
    });
    for byte in bytes.iter().cycle().take(100) {
        if reader.is_finished() || write.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    (started.elapsed(), reader.await.unwrap())
}

/// Opens connections to `addr` and holds them until one is refused: how many were held.
async fn connections_until_refused(addr: std::net::SocketAddr, http: bool) -> usize {
    use tokio::io::AsyncReadExt;
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 2048];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 503") => {
                assert!(http, "an HTTP answer on a gRPC port");
                return held.len();
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                assert!(
                    !http,
                    "an HTTP listener refuses with a 503 problem, not a close"
                );
                return held.len();
            }
            _ => held.push(stream),
        }
    }
    panic!("{addr}: 40 connections and none refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_cuts_off_trickling_clients_and_refuses_connections_past_the_limit() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut env = env_for(&db);
    env.push(("HEADER_READ_TIMEOUT".to_owned(), "2s".to_owned()));
    env.push(("MAX_CONNECTIONS".to_owned(), "8".to_owned()));
    let stop = CancellationToken::new();
    let running = platform::up(&Env::from_pairs(env), stop.clone())
        .await
        .unwrap();
    let mut listeners = Vec::new();
    for endpoint in &running.endpoints {
        listeners.push((format!("{} http", endpoint.service), endpoint.http, true));
        if let Some(grpc) = endpoint.grpc {
            listeners.push((format!("{} grpc", endpoint.service), grpc, false));
        }
    }
    assert!(listeners.len() >= 10, "{listeners:?}");

    let head: &'static [u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789\r\n\r\n";
    let preface: &'static [u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let trickled = futures::future::join_all(
        listeners
            .iter()
            .map(|(_, addr, http)| trickle(*addr, if *http { head } else { preface })),
    )
    .await;
    for ((name, _, http), (elapsed, answer)) in listeners.iter().zip(trickled) {
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
            "{name}: cut off after {elapsed:?}"
        );
        if *http {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 408 "), "{name}: {text}");
        }
    }

    // Others may hold a few connections of their own (the gateway's pools, its health
    // checks), so the count held here is at most the limit, and not far below it.
    for (name, addr, http) in &listeners {
        let held = connections_until_refused(*addr, *http).await;
        assert!((5..=8).contains(&held), "{name}: refused after {held}");
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), running.wait())
        .await
        .expect("everything stops")
        .unwrap();
}
