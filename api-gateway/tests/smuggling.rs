//! Hostile requests on the wire, against both of the gateway's request paths.
//!
//! Each case of [`cases`] is a client's raw bytes; it states the statuses the client must get
//! (in order), whether the gateway then closes the connection, and exactly which requests a
//! recording upstream must receive. The upstream parses as an ordinary lenient HTTP/1.1
//! server does (a `Content-Length` body, else a chunked one), so any disagreement about where
//! a message ends — request smuggling — shows up as a request it received that the gateway
//! never admitted. Every case runs with the fast path on (the HTTP/1 engine, handing odd
//! requests to hyper) and off (everything through hyper and the kit's guard).
//!
//! The response-desync probes turn it around: the upstream misbehaves (bytes after a
//! response, two framings, bad chunks), and the next client must still get its own answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{TestGateway, config, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the upstream parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Parsed header fields as owned name-value pairs.
fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// The first value of `name` among `headers`.
fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }
}

/// An upstream that records every API request it parses and answers by path.
struct Recorder {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, log.clone()));
            }
        });
        Recorder { url, received }
    }

    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

/// Reads one request the way a lenient server would: a head, then a body by
/// `Transfer-Encoding: chunked` if the last coding says so, else by `Content-Length`.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = request.parse(buf) {
            let headers = owned(request.headers);
            let method = request.method.unwrap_or("").to_owned();
            let path = request.path.unwrap_or("").to_owned();
            let get = |name: &str| {
                headers
                    .iter()
                    .rfind(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let chunked = get("transfer-encoding")
                .is_some_and(|te| te.to_ascii_lowercase().trim().ends_with("chunked"));
            let length: usize = get("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            buf.drain(..head_len);
            let body = if chunked {
                read_chunked(stream, buf).await?
            } else {
                while buf.len() < length {
                    fill(stream, buf).await?;
                }
                buf.drain(..length).collect()
            };
            return Some(Received {
                method,
                path,
                headers,
                body,
            });
        }
        fill(stream, buf).await?;
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await.ok()?;
    if n == 0 {
        return None;
    }
    buf.extend_from_slice(&chunk[..n]);
    Some(())
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf[..end].to_vec();
            buf.drain(..end + 2);
            return Some(line);
        }
        fill(stream, buf).await?;
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size = String::from_utf8_lossy(&line);
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(stream, buf).await?.is_empty() {}
            return Some(body);
        }
        while buf.len() < size + 2 {
            fill(stream, buf).await?;
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buf).await {
        let path = request.path.clone();
        if path.starts_with("/api/") {
            log.lock().unwrap().push(request.clone());
        }
        let answer: Vec<u8> = match path.as_str() {
            // Bytes after the response, in the same write: a second, unasked-for answer.
            "/api/v1/products/desync-extra" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled".to_vec()
            }
            "/api/v1/products/desync-later" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled".to_vec()
            }
            "/api/v1/products/desync-clte" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()
            }
            "/api/v1/products/desync-two-lengths" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2, 8\r\n\r\nokokokok".to_vec()
            }
            "/api/v1/products/desync-badchunk" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n\r\n"
                    .to_vec()
            }
            "/api/v1/products/desync-hop" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length\r\n\r\nok"
                    .to_vec()
            }
            _ => {
                let body = format!(
                    "{} {} {}",
                    request.method,
                    request.path,
                    String::from_utf8_lossy(&request.body)
                );
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// One response as the client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }
}

/// Reads responses until the connection closes or nothing comes for a while; says whether
/// the gateway closed the connection.
async fn read_answers(stream: &mut TcpStream, head_only: bool) -> (Vec<Answer>, bool) {
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    let mut closed = false;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = response.parse(&buf) {
            let status = response.code.unwrap_or(0);
            let headers = owned(response.headers);
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let length = if head_only { 0 } else { length };
            if buf.len() >= head_len + length {
                let body = buf[head_len..head_len + length].to_vec();
                buf.drain(..head_len + length);
                answers.push(Answer {
                    status,
                    headers,
                    body,
                });
                continue;
            }
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_millis(700), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    (answers, closed)
}

/// A hostile (or control) exchange and what must come of it.
struct Case {
    name: &'static str,
    send: Vec<u8>,
    /// The statuses the client gets, in order.
    statuses: &'static [u16],
    /// The gateway closes the connection after them.
    closes: bool,
    /// What the upstream receives: method, path, body.
    upstream: &'static [(&'static str, &'static str, &'static [u8])],
    /// Further checks of what the upstream received.
    check: fn(&[Received]),
}

fn no_check(_: &[Received]) {}

const LOGIN: &str = "POST /api/v1/auth/login HTTP/1.1\r\nHost: shop\r\n";

fn raw(parts: &[&str]) -> Vec<u8> {
    parts.concat().into_bytes()
}

fn cases() -> Vec<Case> {
    let admin = token("admin", uuid::Uuid::now_v7());
    let smuggled_register =
        "POST /api/v1/users HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\n{}";
    let mut long_line = "GET /api/v1/products?q=".to_owned();
    long_line.push_str(&"a".repeat(9 * 1024));
    long_line.push_str(" HTTP/1.1\r\nHost: shop\r\n\r\n");
    let mut big_head = "GET /api/v1/products HTTP/1.1\r\nHost: shop\r\n".to_owned();
    for i in 0..400 {
        big_head.push_str(&format!(
            "X-Pad-{i}: 0123456789012345678901234567890123\r\n"
        ));
    }
    big_head.push_str("\r\n");
    vec![
        // --- Controls: what must pass, exactly once.
        Case {
            name: "plain GET",
            send: raw(&["GET /api/v1/products/a HTTP/1.1\r\nHost: shop\r\n\r\n"]),
            statuses: &[200],
            closes: false,
            upstream: &[("GET", "/api/v1/products/a", b"")],
            check: no_check,
        },
        Case {
            name: "POST with a length",
            send: raw(&[LOGIN, "Content-Length: 5\r\n\r\nhello"]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"hello")],
            check: |r| assert_eq!(r[0].header("content-length"), Some("5")),
        },
        Case {
            name: "chunked POST (case-insensitive coding)",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"hello")],
            check: no_check,
        },
        Case {
            name: "equal repeated lengths are one length",
            send: raw(&[
                LOGIN,
                "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"hello")],
            check: |r| assert_eq!(r[0].header("content-length"), Some("5")),
        },
        Case {
            name: "pipelined requests are answered in order",
            send: raw(&[
                LOGIN,
                "Content-Length: 3\r\n\r\nonePOST /api/v1/auth/login HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\n\r\ntwoGET /api/v1/products/3 HTTP/1.1\r\nHost: shop\r\n\r\n",
            ]),
            statuses: &[200, 200, 200],
            closes: false,
            upstream: &[
                ("POST", "/api/v1/auth/login", b"one"),
                ("POST", "/api/v1/auth/login", b"two"),
                ("GET", "/api/v1/products/3", b""),
            ],
            check: no_check,
        },
        Case {
            name: "Connection: close is echoed and honoured",
            send: raw(&[
                "GET /api/v1/products/a HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\nGET /api/v1/products/b HTTP/1.1\r\nHost: shop\r\n\r\n",
            ]),
            statuses: &[200],
            closes: true,
            upstream: &[("GET", "/api/v1/products/a", b"")],
            check: no_check,
        },
        // --- CL.TE, TE.CL, TE.TE.
        Case {
            name: "CL.TE: Content-Length and chunked",
            send: raw(&[
                LOGIN,
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.CL: chunked then Content-Length",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST /api/v1/users HTTP/1.1\r\nHost: shop\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: a second, unknown coding",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: coding list ending in chunked",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: chunked twice",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: xchunked",
            send: raw(&[LOGIN, "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: whitespace before the colon",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: tab before the colon",
            send: raw(&[LOGIN, "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: obs-fold hides the coding",
            send: raw(&[
                LOGIN,
                "Content-Length: 3\r\nX-Pad: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "Transfer-Encoding on HTTP/1.0",
            send: raw(&[
                "POST /api/v1/auth/login HTTP/1.0\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        // --- Lengths.
        Case {
            name: "two different Content-Lengths",
            send: raw(&[
                LOGIN,
                "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a Content-Length list with different values",
            send: raw(&[LOGIN, "Content-Length: 5, 6\r\n\r\nhello!"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a Content-Length list, even of equal values",
            send: raw(&[LOGIN, "Content-Length: 5, 5\r\n\r\nhello"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "Content-Length with a sign",
            send: raw(&[LOGIN, "Content-Length: +5\r\n\r\nhello"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "negative Content-Length",
            send: raw(&[LOGIN, "Content-Length: -1\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "hexadecimal Content-Length",
            send: raw(&[LOGIN, "Content-Length: 0x5\r\n\r\nhello"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "empty Content-Length",
            send: raw(&[LOGIN, "Content-Length: \r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        // --- Connection naming framing headers (the hole this suite was written for).
        Case {
            name: "Connection names Content-Length around a smuggled request",
            send: raw(&[
                LOGIN,
                &format!(
                    "Connection: Content-Length\r\nContent-Length: {}\r\n\r\n{smuggled_register}",
                    smuggled_register.len()
                ),
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"POST /api/v1/users HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\n{}")],
            check: |r| {
                let length = r[0].body.len().to_string();
                assert_eq!(r[0].header("content-length"), Some(length.as_str()));
            },
        },
        Case {
            name: "Connection names Transfer-Encoding on a chunked body",
            send: raw(&[
                LOGIN,
                "Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"abc")],
            check: no_check,
        },
        Case {
            name: "Connection names Host and the identity headers",
            send: raw(&[
                "GET /api/v1/products/x HTTP/1.1\r\nHost: shop\r\nConnection: host, x-request-id, x-forwarded-for\r\nX-Request-Id: mine-1\r\n\r\n",
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("GET", "/api/v1/products/x", b"")],
            check: |r| {
                assert!(r[0].header("host").is_some());
                assert_eq!(r[0].header("x-request-id"), Some("mine-1"));
                assert_eq!(r[0].header("x-forwarded-for"), Some("127.0.0.1"));
            },
        },
        Case {
            name: "Connection names Authorization on an admin route",
            send: format!(
                "GET /api/v1/admin/products/x HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {admin}\r\nConnection: authorization, x-user-role\r\n\r\n"
            )
            .into_bytes(),
            statuses: &[200],
            closes: false,
            upstream: &[("GET", "/api/v1/admin/products/x", b"")],
            check: |r| {
                assert!(r[0].header("authorization").is_some_and(|a| a.starts_with("Bearer ")));
                assert_eq!(r[0].header("x-user-role"), Some("admin"));
            },
        },
        // --- Heads that parse two ways.
        Case {
            name: "bare LF line endings",
            send: raw(&["GET /api/v1/products HTTP/1.1\nHost: shop\n\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a bare LF inside the head",
            send: raw(&[
                "GET /api/v1/products HTTP/1.1\r\nHost: shop\nTransfer-Encoding: chunked\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a bare CR inside the head",
            send: raw(&[
                "GET /api/v1/products HTTP/1.1\r\nHost: shop\rX: 1\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "no Host on HTTP/1.1",
            send: raw(&["GET /api/v1/products HTTP/1.1\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "two Hosts",
            send: raw(&[
                "GET /api/v1/products HTTP/1.1\r\nHost: shop\r\nHost: evil\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a NUL in a header value",
            send: raw(&[
                "GET /api/v1/products HTTP/1.1\r\nHost: shop\r\nX-A: a\0b\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a request line over the limit",
            send: long_line.into_bytes(),
            statuses: &[414],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a head over the limit",
            send: big_head.into_bytes(),
            statuses: &[431],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "CONNECT",
            send: raw(&["CONNECT shop:443 HTTP/1.1\r\nHost: shop:443\r\n\r\n"]),
            statuses: &[405],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        // --- Chunked bodies (streamed to the upstream, so it may see a cut-off request,
        // never a complete one).
        Case {
            name: "a chunk size that is not hex",
            send: raw(&[LOGIN, "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a chunk size over 16 hex digits",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a chunk extension with a bare LF",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "chunk data not followed by CRLF",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        // --- Pipelines with a hostile request behind a good one.
        Case {
            name: "a good request, then CL.TE",
            send: raw(&[
                "GET /api/v1/products/first HTTP/1.1\r\nHost: shop\r\n\r\n",
                LOGIN,
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            ]),
            statuses: &[200, 400],
            closes: true,
            upstream: &[("GET", "/api/v1/products/first", b"")],
            check: no_check,
        },
        Case {
            name: "a good chunked request, then a bare-LF one",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nGET /api/v1/products HTTP/1.1\nHost: shop\n\n",
            ]),
            statuses: &[200, 400],
            closes: true,
            upstream: &[("POST", "/api/v1/auth/login", b"ok")],
            check: no_check,
        },
    ]
}

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
    let address = gateway.base.trim_start_matches("http://").to_owned();
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
    let address = gateway.base.trim_start_matches("http://").to_owned();
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
