//! The reservation sweeper: the background task that gives back the stock of reservations
//! nobody committed or released in time.

use std::time::Duration;

use platform_http::CancellationToken;

use crate::service::Catalog;

/// Releases reservations past their expiry, every `interval`, until `shutdown`.
pub async fn run(catalog: Catalog, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Batches until none are left, so a backlog clears in one round.
        loop {
            match catalog.release_expired(100).await {
                Ok(100) => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "releasing expired reservations failed");
                    break;
                }
            }
        }
    }
}
