//! The forwarding handler behind every routed path.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use platform_proxy::{Proxy, Upstream};

/// What one route forwards to.
#[derive(Clone)]
pub struct Target {
    pub proxy: Proxy,
    pub upstream: Arc<Upstream>,
}

/// Forwards the request as it is (method, path, query, headers, streaming body) and streams
/// the answer back; upstream failures become 502/503/504 problems.
pub async fn forward(State(target): State<Target>, request: Request) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    match target
        .proxy
        .forward(&target.upstream, request, client)
        .await
    {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(service = %target.upstream.service, %error, "upstream request failed");
            error.to_problem().into_response()
        }
    }
}
