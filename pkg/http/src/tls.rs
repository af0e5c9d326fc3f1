//! TLS termination: rustls with aws-lc-rs, HTTP/1.1 and HTTP/2 by ALPN, and certificate reload
//! on SIGHUP or when the files change, without dropping connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use platform_config::Env;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM): both or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `TLS_CERT_FILE`: the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// `TLS_KEY_FILE`: the leaf certificate's private key.
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// `None` when neither variable is set (plain HTTP); one without the other is recorded in
    /// `env`.
    pub fn from_env(env: &mut Env) -> Option<Self> {
        let cert = env.optional::<PathBuf>("TLS_CERT_FILE");
        let key = env.optional::<PathBuf>("TLS_KEY_FILE");
        match (cert, key) {
            (Some(cert_file), Some(key_file)) => Some(Self {
                cert_file,
                key_file,
            }),
            (Some(_), None) => {
                env.report(
                    "TLS_KEY_FILE",
                    "a PEM private key file (required with TLS_CERT_FILE)",
                );
                None
            }
            (None, Some(_)) => {
                env.report(
                    "TLS_CERT_FILE",
                    "a PEM certificate file (required with TLS_KEY_FILE)",
                );
                None
            }
            (None, None) => None,
        }
    }
}

/// The certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// Reads the files and builds a rustls server configuration (aws-lc-rs, TLS 1.2 and 1.3,
/// ALPN `h2` then `http/1.1`).
pub fn load(config: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(&config.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            TlsError(format!(
                "cannot read certificates from {}: {e}",
                config.cert_file.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "no certificate in {}",
            config.cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| {
        TlsError(format!(
            "cannot read the private key from {}: {e}",
            config.key_file.display()
        ))
    })?;
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| TlsError(format!("certificate and key do not match: {e}")))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless session tickets: a returning client resumes without a full handshake (no
    // certificate signature), on whichever HTTP thread accepts it, with no shared cache to
    // lock or outgrow. Keys rotate every 6 hours; a reloaded certificate starts new keys.
    server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| TlsError(format!("cannot make session tickets: {e}")))?;
    Ok(Arc::new(server))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the certificate into `live` on SIGHUP, or when either file changes (checked every
/// `poll`), until `shutdown`. A reload that fails keeps the previous certificate.
pub async fn reload_until(
    config: TlsConfig,
    live: crate::serve::LiveTls,
    poll: Duration,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = (modified(&config.cert_file), modified(&config.key_file));
    loop {
        #[cfg(unix)]
        let signal = async {
            match hangup.as_mut() {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signal = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = signal => true,
            _ = tokio::time::sleep(poll) => false,
        };
        let now = (modified(&config.cert_file), modified(&config.key_file));
        if !forced && now == seen {
            continue;
        }
        seen = now;
        match load(&config) {
            Ok(server) => {
                live.replace(server);
                tracing::info!(cert = %config.cert_file.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificate reload failed; keeping the previous one")
            }
        }
    }
}
