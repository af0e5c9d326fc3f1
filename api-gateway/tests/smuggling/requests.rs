//! Hostile requests: every case of the table, on a fresh connection, through the fast path
//! and through hyper; nothing the gateway refused may reach the upstream.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::cases::cases;
use crate::client::read_answers;
use crate::support::{TestGateway, config};
use crate::upstream::Recorder;

async fn run_cases(fast_path: bool) {
    let upstream = Recorder::start().await;
    let services = [
        "user-service",
        "product-service",
        "order-service",
        "payment-service",
        "notification-service",
        "event-store",
    ];
    let pairs: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (*s, upstream.url.as_str()))
        .collect();
    let mut cfg = config(&pairs);
    cfg.fast_path = fast_path;
    let gateway = TestGateway::start(cfg).await;
    let address = gateway.address();
    let cases = cases();
    assert!(cases.len() >= 30, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        upstream.take();
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(&case.send).await.unwrap();
        let (answers, closed) = read_answers(&mut stream, false).await;
        // Time for anything the upstream might still be sent.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let received = upstream.take();
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        let seen: Vec<(String, String, Vec<u8>)> = received
            .iter()
            .map(|r| (r.method.clone(), r.path.clone(), r.body.clone()))
            .collect();
        let expected: Vec<(String, String, Vec<u8>)> = case
            .upstream
            .iter()
            .map(|(m, p, b)| (m.to_string(), p.to_string(), b.to_vec()))
            .collect();
        let mut wrong = Vec::new();
        if statuses != case.statuses {
            wrong.push(format!(
                "statuses {statuses:?}, expected {:?}",
                case.statuses
            ));
        }
        if closed != case.closes {
            wrong.push(format!("closed: {closed}, expected {}", case.closes));
        }
        if seen != expected {
            wrong.push(format!("upstream saw {seen:?}"));
        }
        for answer in &answers {
            if answer.status >= 400 {
                let problem = answer.header("content-type");
                if problem != Some("application/problem+json") {
                    wrong.push(format!(
                        "a {} without a problem body: {problem:?}",
                        answer.status
                    ));
                }
            }
        }
        if case.closes && !answers.is_empty() {
            let last = answers.last().unwrap();
            if last.header("connection") != Some("close") {
                wrong.push("the last answer does not say `Connection: close`".to_owned());
            }
        }
        if wrong.is_empty() && seen == expected {
            let check = std::panic::catch_unwind(|| (case.check)(&received));
            if check.is_err() {
                wrong.push(format!(
                    "the upstream's view failed its check: {received:?}"
                ));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}", case.name, wrong.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "fast path {fast_path}:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn hostile_requests_are_refused_and_never_reach_the_upstream_on_the_fast_path() {
    run_cases(true).await;
}

#[tokio::test]
async fn hostile_requests_are_refused_and_never_reach_the_upstream_through_hyper() {
    run_cases(false).await;
}
