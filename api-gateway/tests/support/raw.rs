//! A raw HTTP/1.1 upstream: the tests see exactly which bytes the gateway sends it, and it
//! answers in ways a framework would not (chunked with trailers, close-delimited, interim
//! answers, a stream that pauses).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every API request an upstream received: on which connection, and its bytes.
type Seen = Arc<Mutex<Vec<(usize, String)>>>;

/// An upstream speaking raw HTTP/1.1: answers by path, records every API request and the
/// connection it came on. `/close-after` answers and then closes the connection after 50 ms
/// idle without saying so (as keep-alive timeouts do).
pub struct RawUpstream {
    pub url: String,
    requests: Seen,
}

impl RawUpstream {
    pub async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Seen = Arc::default();
        let seen = requests.clone();
        tokio::spawn(async move {
            let count = AtomicUsize::new(0);
            while let Ok((stream, _)) = listener.accept().await {
                let connection = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_raw(stream, connection, seen.clone()));
            }
        });
        RawUpstream { url, requests }
    }

    pub fn requests(&self) -> Vec<String> {
        let seen = self.requests.lock().unwrap();
        seen.iter().map(|(_, request)| request.clone()).collect()
    }

    /// How many connections carried API requests.
    pub fn api_connections(&self) -> usize {
        let seen = self.requests.lock().unwrap();
        let mut connections: Vec<usize> = seen.iter().map(|(c, _)| *c).collect();
        connections.sort_unstable();
        connections.dedup();
        connections.len()
    }
}

/// The length of a complete request at the start of `buf` (a `Content-Length` body, or a
/// chunked one up to its empty last chunk), with its path.
fn complete_request(buf: &[u8]) -> Option<(usize, String)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = request.parse(buf).ok()? else {
        return None;
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).unwrap().to_owned())
    };
    let total = if header("transfer-encoding").is_some() {
        let end = buf[head_len..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        head_len + end + 5
    } else {
        head_len + header("content-length").map_or(0, |v| v.parse::<usize>().unwrap())
    };
    (buf.len() >= total).then(|| (total, request.path.unwrap().to_owned()))
}

async fn serve_raw(mut stream: TcpStream, connection: usize, seen: Seen) {
    let mut buf = Vec::new();
    loop {
        let (total, path) = loop {
            if let Some(complete) = complete_request(&buf) {
                break complete;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        // Health checks come on connections of their own; only API requests are recorded.
        if path != "/health" {
            seen.lock().unwrap().push((
                connection,
                String::from_utf8_lossy(&buf[..total]).into_owned(),
            ));
        }
        buf.drain(..total);
        if path == "/api/v1/users/paused" {
            // The first chunk, then nothing for two seconds: a relay that buffered the body
            // would hold the first chunk back until the end.
            let first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
            if stream.write_all(first).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            if stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.is_err() {
                return;
            }
            continue;
        }
        let response: &[u8] = match path.as_str() {
            "/api/v1/users/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Custom-Case: yes\r\n\r\n3;x=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-trailer: t\r\n\r\n"
            }
            "/api/v1/users/old" => b"HTTP/1.0 200 OK\r\nX-Custom-Case: yes\r\n\r\nuntil the end",
            "/api/v1/users/hints" => {
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            }
            _ => b"HTTP/1.1 200 OK\r\nX-Custom-Case: yes\r\nX-Request-Id: from-upstream\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\nok",
        };
        if stream.write_all(response).await.is_err() {
            return;
        }
        if path == "/api/v1/users/old" {
            return;
        }
        if path == "/api/v1/users/close-after" {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    }
}
