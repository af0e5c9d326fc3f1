//! The refusal every framing check ends in: a status and a reason that never echoes the
//! input, answerable as a problem through hyper or as raw bytes straight to a socket.

use std::fmt;

use http::StatusCode;

use crate::problem::{PROBLEM_JSON, Problem};

/// Why a request was refused before anything acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status to answer with: 400, or 405, 408, 414, 431, 503 (each its own problem
    /// type).
    pub status: u16,
    /// Says what was wrong, never echoing the input.
    pub reason: &'static str,
}

impl Refusal {
    /// A 400 for a malformed request.
    pub const fn bad(reason: &'static str) -> Self {
        Self {
            status: 400,
            reason,
        }
    }

    /// The refusal as the platform's one error body.
    pub fn problem(&self) -> Problem {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let kind = match self.status {
            405 => "method-not-allowed",
            408 => "request-timeout",
            414 => "uri-too-long",
            431 => "headers-too-large",
            503 => "too-many-connections",
            _ => "malformed-request",
        };
        let problem = Problem::new(status)
            .with_type(kind)
            .with_detail(self.reason);
        if self.status == 503 {
            problem.with_retry_after(1)
        } else {
            problem
        }
    }

    /// The whole response, written straight to a socket (no hyper behind it): the problem,
    /// and the connection closes after it (after a framing error nothing that follows on the
    /// connection can be trusted).
    pub fn response(&self) -> Vec<u8> {
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n",
            problem.status,
            problem.title,
            body.len()
        )
        .into_bytes();
        if let Some(seconds) = problem.retry_after {
            out.extend_from_slice(format!("retry-after: {seconds}\r\n").as_bytes());
        }
        if self.status == 405 {
            out.extend_from_slice(b"allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        out
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_complete_problem_responses_that_close() {
        let response = Refusal::bad("Conflicting Content-Length values.").response();
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["detail"], "Conflicting Content-Length values.");
    }
}
