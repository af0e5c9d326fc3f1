//! Response desync: an upstream that misbehaves (bytes after a response, two framings, bad
//! chunks) must never get its leftovers taken as the next client's answer.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::client::{Answer, read_answers};
use crate::support::{TestGateway, config};
use crate::upstream::Recorder;

/// GET `path` on a new connection; the answers.
async fn get_all(address: &str, path: &str) -> Vec<Answer> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: shop\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_answers(&mut stream, false).await.0
}

/// GET `path` on a new connection; its one answer.
async fn get(address: &str, path: &str) -> Answer {
    let mut answers = get_all(address, path).await;
    assert_eq!(answers.len(), 1, "{path}: {answers:?}");
    answers.remove(0)
}

async fn desync_probes(fast_path: bool) {
    let upstream = Recorder::start().await;
    let mut cfg = config(&[("product-service", upstream.url.as_str())]);
    cfg.fast_path = fast_path;
    let gateway = TestGateway::start(cfg).await;
    let address = gateway.address();
    for probe in [
        "/api/v1/products/desync-extra",
        "/api/v1/products/desync-later",
        "/api/v1/products/desync-clte",
        "/api/v1/products/desync-two-lengths",
        "/api/v1/products/desync-badchunk",
        "/api/v1/products/desync-hop",
    ] {
        if probe == "/api/v1/products/desync-badchunk" {
            // The body breaks after the upstream's head: before anything reached the client
            // the fast path still answers 502; hyper has sent the head already and cuts the
            // connection. Either way nothing more comes.
            let answers = get_all(&address, probe).await;
            assert!(answers.len() <= 1, "{answers:?}");
            if fast_path {
                assert_eq!(answers[0].status, 502, "{answers:?}");
            }
        } else {
            let answer = get(&address, probe).await;
            check_probe(probe, &answer);
        }
        // Whatever the upstream left on its connection, the next client gets its own answer.
        tokio::time::sleep(Duration::from_millis(30)).await;
        for _ in 0..3 {
            let next = get(&address, "/api/v1/products/next").await;
            assert_eq!(next.status, 200, "after {probe}");
            assert_eq!(
                next.body, b"GET /api/v1/products/next ",
                "after {probe}: another response leaked into this one"
            );
        }
    }
}

fn check_probe(probe: &str, answer: &Answer) {
    {
        match probe {
            "/api/v1/products/desync-clte" | "/api/v1/products/desync-two-lengths" => {
                assert_eq!(answer.status, 502, "{probe}: {answer:?}")
            }
            "/api/v1/products/desync-hop" => {
                assert_eq!(answer.status, 200);
                assert_eq!(answer.header("content-length"), Some("2"));
                assert_eq!(answer.body, b"ok");
            }
            _ => {
                assert_eq!(answer.status, 200, "{probe}");
                assert_eq!(answer.body, b"ok", "{probe}");
            }
        }
    }
}

#[tokio::test]
async fn a_misbehaving_upstream_never_answers_the_next_client_on_the_fast_path() {
    desync_probes(true).await;
}

#[tokio::test]
async fn a_misbehaving_upstream_never_answers_the_next_client_through_hyper() {
    desync_probes(false).await;
}
