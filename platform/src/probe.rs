//! `platform probe URL`: a health check for images with no shell and no curl. One HTTP/1.1
//! GET over plain TCP, succeeding on a 2xx status; anything else (refused, timed out, another
//! status, a malformed answer) is a failure with its reason.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("not an http:// URL with a host: {0:?}")]
    Url(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an HTTP response")]
    Malformed,
    #[error("status {0}")]
    Status(u16),
}

/// Where a probe goes: `http://host[:port][/path]`.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    authority: &'a str,
    host_port: String,
    path: &'a str,
}

fn parse(url: &str) -> Result<Target<'_>, ProbeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ProbeError::Url(url.to_owned()))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || ".-_:[]".contains(c);
    if authority.is_empty() || !authority.chars().all(valid) || path.contains(char::is_whitespace) {
        return Err(ProbeError::Url(url.to_owned()));
    }
    let has_port = match authority.rfind(':') {
        Some(colon) => !authority[colon..].contains(']'),
        None => false,
    };
    let host_port = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        authority,
        host_port,
        path,
    })
}

/// GETs `url` within `timeout`; `Ok` with the status when it is 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let target = parse(url)?;
    let deadline = Instant::now() + timeout;
    let addr = target
        .host_port
        .to_socket_addrs()
        .map_err(|_| ProbeError::Resolve(target.host_port.clone()))?
        .next()
        .ok_or_else(|| ProbeError::Resolve(target.host_port.clone()))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|source| ProbeError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    // One write: `write!` on a bare socket sends each piece as a segment of its own, and a
    // server that answers after the first may reset the connection over the unread rest.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: platform-probe\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes())?;
    // The status line is all we need: "HTTP/1.1 200 OK".
    let mut head = [0u8; 32];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    let status = std::str::from_utf8(&head[..read])
        .ok()
        .filter(|line| line.starts_with("HTTP/1."))
        .and_then(|line| line.get(9..12))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(ProbeError::Malformed)?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut socket, _)) = listener.accept() {
                // The whole request first: closing over unread bytes resets the connection.
                let mut request = Vec::new();
                let mut chunk = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = socket.write_all(answer);
            }
        });
        format!("http://{addr}/health")
    }

    #[test]
    fn urls_are_parsed_strictly() {
        let t = parse("http://127.0.0.1:8081/health").unwrap();
        assert_eq!(t.host_port, "127.0.0.1:8081");
        assert_eq!(t.path, "/health");
        assert_eq!(parse("http://localhost").unwrap().host_port, "localhost:80");
        assert_eq!(parse("http://[::1]/x").unwrap().host_port, "[::1]:80");
        for bad in [
            "https://x/",
            "x:1/",
            "http:///x",
            "http://a b/",
            "http://h/a b",
        ] {
            assert!(matches!(parse(bad), Err(ProbeError::Url(_))), "{bad}");
        }
    }

    #[test]
    fn a_2xx_passes_and_anything_else_fails() {
        let ok = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(probe(&ok, Duration::from_secs(2)).ok(), Some(200));
        let down = serve_once(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        assert!(matches!(
            probe(&down, Duration::from_secs(2)),
            Err(ProbeError::Status(503))
        ));
        let junk = serve_once(b"SSH-2.0-OpenSSH\r\n");
        assert!(matches!(
            probe(&junk, Duration::from_secs(2)),
            Err(ProbeError::Malformed)
        ));
    }

    #[test]
    fn a_closed_port_fails_with_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = probe(&format!("http://{addr}/"), Duration::from_secs(2))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(&addr.to_string()), "{error}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let result = probe(&format!("http://{addr}/"), Duration::from_millis(300));
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
