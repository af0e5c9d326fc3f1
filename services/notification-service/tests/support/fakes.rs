//! Fake providers shared by the test binaries: an SMTP server spoken to over a real socket,
//! and an HTTP server standing in for Twilio and FCM that records every request and answers
//! with scripted statuses.
// Each test binary uses part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// SMTP

/// One mail transaction as the fake server saw it.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

/// What an SMTP fake received.
pub type Mailbox = Arc<Mutex<Vec<Transaction>>>;

/// A minimal SMTP server: no extensions (so no STARTTLS, no AUTH), answers RCPT with
/// `rcpt_reply`, and records every transaction.
pub async fn fake_smtp(rcpt_reply: &'static str) -> (SocketAddr, Mailbox) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Transaction>::new()));
    let recorded = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&recorded);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read);
                if write.write_all(b"220 fake.test ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut current = Transaction::default();
                loop {
                    let mut line = String::new();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let command = line.trim_end().to_owned();
                    let verb = command.to_ascii_uppercase();
                    let reply: &str = if verb.starts_with("EHLO") || verb.starts_with("HELO") {
                        "250 fake.test\r\n"
                    } else if verb.starts_with("MAIL FROM:") {
                        current = Transaction {
                            mail_from: command,
                            ..Transaction::default()
                        };
                        "250 2.1.0 Ok\r\n"
                    } else if verb.starts_with("RCPT TO:") {
                        current.rcpt_to.push(command);
                        rcpt_reply
                    } else if verb == "DATA" {
                        if write
                            .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                        let mut data = String::new();
                        loop {
                            let mut line = String::new();
                            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        current.data = data;
                        seen.lock().unwrap().push(std::mem::take(&mut current));
                        "250 2.0.0 Ok: queued as FAKE123\r\n"
                    } else if verb == "RSET" || verb == "NOOP" {
                        "250 2.0.0 Ok\r\n"
                    } else if verb == "QUIT" {
                        let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                        return;
                    } else {
                        "502 5.5.2 Command not recognized\r\n"
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, seen)
}

/// A port nothing listens on: bound, then released.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// HTTP providers

#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What an HTTP fake received.
pub type Requests = Arc<Mutex<Vec<Request>>>;

#[derive(Clone)]
struct Script {
    /// Answers in turn; the last one repeats.
    answers: Arc<Vec<(StatusCode, Value)>>,
    delay: Duration,
    seen: Requests,
}

async fn answer(
    State(script): State<Script>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let n = {
        let mut seen = script.seen.lock().unwrap();
        seen.push(Request {
            method,
            path: uri.path().to_owned(),
            headers,
            body,
        });
        seen.len()
    };
    tokio::time::sleep(script.delay).await;
    let (status, body) = script.answers[(n - 1).min(script.answers.len() - 1)].clone();
    (status, axum::Json(body))
}

/// A server answering every request with `status` and `body` after `delay`; returns its base
/// URL and what it received.
pub async fn fake_api(status: u16, body: Value, delay: Duration) -> (String, Requests) {
    fake_api_script(vec![(status, body)], delay).await
}

/// A server answering the n-th request with the n-th of `answers` (the last one repeating).
pub async fn fake_api_script(answers: Vec<(u16, Value)>, delay: Duration) -> (String, Requests) {
    assert!(!answers.is_empty());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Script {
        answers: Arc::new(
            answers
                .into_iter()
                .map(|(status, body)| (StatusCode::from_u16(status).unwrap(), body))
                .collect(),
        ),
        delay,
        seen: Arc::clone(&seen),
    };
    let router = Router::new().fallback(answer).with_state(script);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}"), seen)
}

pub fn only_request(seen: &Requests) -> Request {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen[0].clone()
}

pub fn header<'h>(request: &'h Request, name: &str) -> &'h str {
    request.headers.get(name).unwrap().to_str().unwrap()
}
