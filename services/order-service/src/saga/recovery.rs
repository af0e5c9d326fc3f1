//! Recovery of unfinished sagas: those whose process died, or that wait for a retry, are
//! picked up by any process's background scan.

use futures::StreamExt;
use platform_http::CancellationToken;

use super::Saga;
use crate::domain::now;
use crate::repo;

impl Saga {
    /// Finds sagas nobody drives (their process died, or they wait for a retry) and drives
    /// them, until `shutdown`.
    pub async fn recover(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.inner.config.scan_interval) => {}
            }
            let stalled = match repo::stalled(&self.inner.db, now(), 64).await {
                Ok(stalled) => stalled,
                Err(error) => {
                    tracing::warn!(%error, "cannot look for stalled sagas");
                    continue;
                }
            };
            futures::stream::iter(stalled)
                .for_each_concurrent(8, |id| {
                    let saga = self.clone();
                    async move {
                        if let Err(error) = saga.drive(id).await {
                            tracing::error!(order_id = %id, %error, "saga recovery failed");
                        }
                    }
                })
                .await;
        }
    }
}
