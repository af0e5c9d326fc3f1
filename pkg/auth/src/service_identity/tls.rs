//! Mutual TLS between services: the PEM files read and checked once at start-up, the gRPC
//! listener's server configuration, the client endpoints that present this service's
//! certificate, and how a verified certificate names its service.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::{IdentityError, InternalTlsFiles, ServiceIdentity, ServiceName};

/// What mutual TLS needs, read once at start-up.
pub(super) struct TlsMaterial {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    pub(super) server: Arc<rustls::ServerConfig>,
}

impl ServiceIdentity {
    /// A channel endpoint for calling `callee` at `url`: over mutual TLS when configured
    /// (whatever the URL's scheme says: tonic speaks TLS to `https` URLs only, and with
    /// internal TLS every call must), presenting this service's certificate and accepting
    /// only a server certificate that names `callee`.
    pub fn endpoint(&self, url: &str, callee: &str) -> Result<Endpoint, IdentityError> {
        let failed = |reason: String| IdentityError::Endpoint {
            url: url.to_owned(),
            reason,
        };
        let Some(tls) = &self.inner.tls else {
            return Endpoint::from_shared(url.to_owned()).map_err(|e| failed(e.to_string()));
        };
        let url = match url.strip_prefix("http://") {
            Some(rest) => format!("https://{rest}"),
            None => url.to_owned(),
        };
        Endpoint::from_shared(url)
            .and_then(|endpoint| {
                endpoint.tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&tls.ca))
                        .identity(Identity::from_pem(&tls.cert, &tls.key))
                        .domain_name(callee),
                )
            })
            .map_err(|e| failed(e.to_string()))
    }
}

/// The DNS names of a certificate's subject alternative names, then its common names.
fn certificate_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.extend(
        parsed
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned)),
    );
    names
}

/// The service a certificate belongs to: its first name that is a service name.
pub(super) fn certificate_identity(certificate: &CertificateDer<'_>) -> Option<ServiceName> {
    certificate_names(certificate)
        .iter()
        .find_map(|name| ServiceName::parse(name).ok())
}

impl TlsMaterial {
    pub(super) fn load(
        files: &InternalTlsFiles,
        name: &ServiceName,
    ) -> Result<Self, IdentityError> {
        let read = |path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| IdentityError::Tls(format!("cannot read {}: {e}", path.display())))
        };
        let (ca, cert, key) = (read(&files.ca)?, read(&files.cert)?, read(&files.key)?);
        let pem_error = |what: &str, path: &PathBuf, e: &dyn fmt::Display| {
            IdentityError::Tls(format!("{what} in {}: {e}", path.display()))
        };
        let roots = CertificateDer::pem_slice_iter(&ca)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("no CA certificate", &files.ca, &e))?;
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("no certificate", &files.cert, &e))?;
        let private_key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| pem_error("no private key", &files.key, &e))?;
        let leaf = chain.first().ok_or_else(|| {
            IdentityError::Tls(format!("no certificate in {}", files.cert.display()))
        })?;
        // Clients check that the server's certificate names the service they call.
        if !certificate_names(leaf).iter().any(|n| n == name.as_str()) {
            return Err(IdentityError::Tls(format!(
                "the certificate in {} does not name {name} (a DNS subject alternative name)",
                files.cert.display()
            )));
        }
        let server = server_config(roots, chain, private_key)?;
        Ok(Self {
            ca,
            cert,
            key,
            server,
        })
    }
}

/// The gRPC listener's TLS: this service's certificate, client certificates verified against
/// the CA. They are optional at the handshake so a TLS health probe without one works; the
/// kit's guard refuses any other call without one (or a token).
fn server_config(
    roots: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, IdentityError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store
            .add(root)
            .map_err(|e| IdentityError::Tls(format!("INTERNAL_TLS_CA: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(store),
        Arc::clone(&provider),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| IdentityError::Tls(format!("INTERNAL_TLS_CA: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| IdentityError::Tls(format!("certificate and key do not match: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use platform_http::grpc_guard::CallerAuthenticator;

    use super::*;
    use crate::service_identity::ServiceAuthConfig;
    use crate::service_identity::testing::identity;

    /// A CA and a certificate it signed for `names`, as PEM files in `dir`.
    fn pki(dir: &std::path::Path, names: &[&str]) -> InternalTlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let files = InternalTlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.ca, issuer.pem()).unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_certificate_names_the_service_by_its_first_dns_name_that_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = pki(
            dir.path(),
            &["Not_A_Service", "order-service", "payment-service"],
        );
        let der = CertificateDer::from_pem_file(&files.cert).unwrap();
        assert_eq!(
            certificate_identity(&der).map(|n| n.to_string()).as_deref(),
            Some("order-service")
        );
        let identity =
            ServiceIdentity::new("order-service", &ServiceAuthConfig::with_tls(files)).unwrap();
        let caller = identity
            .authenticate(&axum::http::HeaderMap::new(), Some(&[der]))
            .unwrap();
        assert_eq!(
            &*caller, "order-service",
            "the certificate wins, no token needed"
        );
        assert!(identity.server_tls().is_some());
        assert!(
            identity.token_for("payment-service").header().is_none(),
            "no secret: no tokens"
        );
    }

    #[test]
    fn a_certificate_that_does_not_name_the_service_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let files = pki(dir.path(), &["payment-service"]);
        let error = ServiceIdentity::new("order-service", &ServiceAuthConfig::with_tls(files))
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not name order-service"), "{error}");
    }

    #[test]
    fn with_mutual_tls_clients_dial_tls_whatever_the_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let files = pki(dir.path(), &["order-service"]);
        let over_tls =
            ServiceIdentity::new("order-service", &ServiceAuthConfig::with_tls(files)).unwrap();
        let endpoint = over_tls
            .endpoint("http://127.0.0.1:9082", "product-service")
            .unwrap();
        assert_eq!(endpoint.uri().scheme_str(), Some("https"));
        let plain = identity("order-service")
            .endpoint("http://127.0.0.1:9082", "product-service")
            .unwrap();
        assert_eq!(plain.uri().scheme_str(), Some("http"));
    }
}
