//! One request/response exchange with an upstream: the request sent, the response head read
//! and rewritten, and a failure told apart by whether a pooled connection may just have been
//! stale.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::UpstreamConnection;
use super::response::{ResponseHead, take_head};
use crate::ProxyError;

/// Why an exchange with an upstream failed, and whether the upstream can have seen it.
#[derive(Debug)]
pub enum ExchangeError {
    /// Nothing came back and the connection was a pooled one that may have been closed
    /// before the request arrived: safe to try again on a fresh connection when the request
    /// may be repeated.
    Stale(ProxyError),
    /// Any other failure (a fresh connection, or the upstream may have seen the request):
    /// answered with the error, not retried.
    Failed(ProxyError),
}

impl UpstreamConnection {
    /// Sends `request` (head and body, already encoded) and reads the response head,
    /// rewriting it into `out` for the client: hop-by-hop headers and those in `replaced`
    /// dropped, `connection: close` added when `close` (the client connection ends after
    /// this exchange), `extra` called to append the caller's own headers.
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange(
        &mut self,
        service: &str,
        request: &[u8],
        head_only: bool,
        close: bool,
        out: &mut Vec<u8>,
        replaced: &[&str],
        extra: impl FnOnce(&mut Vec<u8>),
    ) -> Result<ResponseHead, ExchangeError> {
        let broken = |reason: String| ProxyError::Broken {
            service: service.to_owned(),
            reason,
        };
        if let Err(error) = self.stream.write_all(request).await {
            let error = broken(error.to_string());
            return Err(if self.reused {
                ExchangeError::Stale(error)
            } else {
                ExchangeError::Failed(error)
            });
        }
        let mut extra = Some(extra);
        loop {
            match take_head(&mut self.buf, head_only, close, out, replaced, &mut extra) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(reason) => return Err(ExchangeError::Failed(broken(reason))),
            }
            if self.buf.len() > 64 * 1024 {
                return Err(ExchangeError::Failed(broken(
                    "response head too large".to_owned(),
                )));
            }
            let nothing_yet = self.buf.is_empty();
            let read = self.stream.read_buf(&mut self.buf).await;
            match read {
                Ok(n) if n > 0 => {}
                Ok(_) | Err(_) => {
                    let reason = match read {
                        Err(error) => error.to_string(),
                        Ok(_) => "connection closed before a response".to_owned(),
                    };
                    let error = broken(reason);
                    return Err(if self.reused && nothing_yet {
                        ExchangeError::Stale(error)
                    } else {
                        ExchangeError::Failed(error)
                    });
                }
            }
        }
    }
}
