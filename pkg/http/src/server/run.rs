//! Serving and stopping: every listener served until the token fires, then in-flight requests
//! drained for at most the shutdown timeout, on the shared runtime or one thread per core.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Listeners, Server, ServerError};
use crate::serve::{HttpListener, LiveTls, MAX_REFUSING, grpc_incoming, serve_http};

impl Server {
    /// Serves until `shutdown`, then waits for the service's background `tasks` (relays,
    /// consumers, sweepers: each stops on the same token), so none is cut off mid-write
    /// before the service closes its database.
    pub async fn run_with(
        self,
        shutdown: CancellationToken,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(), ServerError> {
        let served = self.run(shutdown).await;
        for task in tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a background task ended abnormally");
            }
        }
        served
    }

    /// Serves until `shutdown` fires, then drains in-flight requests for at most the
    /// configured shutdown timeout.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server {
            name,
            http_listener,
            router,
            grpc,
            metrics_listener,
            shutdown_timeout,
            request_timeout,
            connections,
            metrics,
            tls,
            front,
        } = self;

        // Histogram samples are drained into buckets here even if nobody scrapes /metrics.
        let upkeep = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tick.tick() => metrics.run_upkeep(),
                    }
                }
            }
        });

        let live_tls = match tls {
            Some((files, server_config)) => {
                let live = LiveTls::new(server_config);
                tokio::spawn(crate::tls::reload_until(
                    files,
                    live.clone(),
                    Duration::from_secs(2),
                    shutdown.clone(),
                ));
                Some(live)
            }
            None => None,
        };
        let shared = Arc::new(HttpListener {
            router,
            front,
            tls: live_tls,
            guard: connections.guard(),
            slots: Arc::new(Semaphore::new(connections.max_connections)),
            refusals: Arc::new(Semaphore::new(MAX_REFUSING)),
            shutdown: shutdown.clone(),
        });
        let http = async {
            match http_listener {
                Listeners::PerCore(listeners) => serve_per_core(&name, listeners, shared).await,
                Listeners::Shared(listener) => serve_http(listener, shared)
                    .await
                    .map_err(|e| ServerError::Serve(e.to_string())),
            }
        };
        let metrics_only = async {
            let Some((listener, router)) = metrics_listener else {
                return Ok(());
            };
            let shared = Arc::new(HttpListener {
                router,
                front: None,
                tls: None,
                guard: connections.guard(),
                slots: Arc::new(Semaphore::new(connections.max_connections)),
                refusals: Arc::new(Semaphore::new(MAX_REFUSING)),
                shutdown: shutdown.clone(),
            });
            serve_http(listener, shared)
                .await
                .map_err(|e| ServerError::Serve(e.to_string()))
        };
        let grpc = async {
            let Some((listener, routes, tls)) = grpc else {
                return Ok(());
            };
            let server = tonic::transport::Server::builder()
                .timeout(request_timeout)
                // Peers that vanish without closing are found and dropped.
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_routes(routes);
            let stop = shutdown.clone().cancelled_owned();
            let slots = Arc::new(Semaphore::new(connections.max_connections));
            let incoming = grpc_incoming(listener, slots, connections.guard());
            match tls {
                Some(tls) => {
                    server
                        .serve_with_incoming_shutdown(tls.incoming(incoming), stop)
                        .await
                }
                None => server.serve_with_incoming_shutdown(incoming, stop).await,
            }
            .map_err(|e| ServerError::Serve(e.to_string()))
        };
        let serving = async { tokio::try_join!(http, metrics_only, grpc).map(|_| ()) };
        let grace = async {
            shutdown.cancelled().await;
            tracing::info!(service = %name, "shutting down: draining in-flight requests");
            tokio::time::sleep(shutdown_timeout).await;
        };
        let result = tokio::select! {
            result = serving => result,
            _ = grace => {
                tracing::warn!(
                    service = %name,
                    timeout_s = shutdown_timeout.as_secs(),
                    "in-flight requests still running after the shutdown timeout; dropping them"
                );
                Ok(())
            }
        };
        upkeep.abort();
        tracing::info!(service = %name, "stopped");
        result
    }
}

/// Serves on one thread per listener, each with a single-threaded runtime; the port's
/// connection slots are shared by all of them.
async fn serve_per_core(
    name: &str,
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<HttpListener>,
) -> Result<(), ServerError> {
    let mut done = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let (finished, result) = tokio::sync::oneshot::channel();
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("{name}-http-{index}"))
            .spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            serve_http(TcpListener::from_std(listener)?, shared).await
                        })
                    });
                let _ = finished.send(outcome);
            })
            .map_err(|e| ServerError::Serve(e.to_string()))?;
        done.push(result);
    }
    for result in done {
        match result.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(ServerError::Serve(error.to_string())),
            Err(_) => {
                return Err(ServerError::Serve(
                    "an HTTP thread ended abnormally".to_owned(),
                ));
            }
        }
    }
    Ok(())
}
