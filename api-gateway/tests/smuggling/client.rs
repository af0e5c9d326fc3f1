//! The client's side of the wire: responses read back off a raw connection, and whether the
//! gateway closed it after them.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::upstream::{header_of, owned};

/// One response as the client read it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }
}

/// Reads responses until the connection closes or nothing comes for a while; says whether
/// the gateway closed the connection.
pub(crate) async fn read_answers(stream: &mut TcpStream, head_only: bool) -> (Vec<Answer>, bool) {
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
