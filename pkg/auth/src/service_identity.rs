//! Service-to-service authentication on gRPC: which service is calling, proven by a signed
//! short-lived token or by a client certificate.
//!
//! - **Tokens** (`INTERNAL_AUTH_SECRET`): HS256 JWTs with `iss` = the calling service, `aud` =
//!   the called service, `iat`, and `exp` [`TOKEN_LIFETIME`] later, sent as
//!   `authorization: Bearer …` metadata. A client keeps one per callee and re-mints it once
//!   half its lifetime has passed ([`ServiceToken`]), so nothing is signed per call. For
//!   `platform up` (one generated secret shared in the process) and for meshes that terminate
//!   mutual TLS themselves.
//! - **Mutual TLS** (`INTERNAL_TLS_CA`, `INTERNAL_TLS_CERT`, `INTERNAL_TLS_KEY`): the gRPC
//!   server verifies client certificates against the CA; a caller is the first DNS name among
//!   its certificate's subject alternative names that is a service name (else its common
//!   name). Clients present their certificate and accept only a server certificate that names
//!   the service they meant to call. For when no mesh does it.
//!
//! A call over a verified client certificate is that certificate's service; any other call is
//! its token's. [`ServiceIdentity`] is both sides: the kit's guard asks it who is calling
//! (`platform_http::grpc_guard`), clients get their credentials from it.
//!
//! Identities are service names (`SERVICE_NAME`, a DNS name): tokens' `iss`/`aud`,
//! certificates' DNS names, and what services' access policies list.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use platform_config::{Env, Environment, ExposeSecret, SecretString};
use platform_http::grpc_guard::{CallerAuthenticator, CredentialError, Unauthenticated};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::MIN_SECRET_BYTES;

/// How long a service token is valid. Short, so a leaked one is soon useless; clients re-mint
/// at half of it, so a token never arrives with less than half left (clock skew up to that is
/// harmless).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A service's name: a lowercase DNS name (`order-service`, `orders.shop`), so it can be a
/// certificate's DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceName(Arc<str>);

/// Not a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a service name (a DNS name: dot-separated labels of lowercase letters, digits and `-`)"
)]
pub struct InvalidServiceName(String);

impl ServiceName {
    pub fn parse(raw: &str) -> Result<Self, InvalidServiceName> {
        let label = |label: &str| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        let valid = raw.len() <= 253
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw.split('.').all(label);
        if valid {
            Ok(Self(Arc::from(raw)))
        } else {
            Err(InvalidServiceName(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `INTERNAL_TLS_CA`, `INTERNAL_TLS_CERT` and `INTERNAL_TLS_KEY` (PEM files): all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTlsFiles {
    /// The CA that signs every service's certificate.
    pub ca: PathBuf,
    /// This service's certificate chain: its DNS name is the service's name; it serves it
    /// and presents it as a client.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl InternalTlsFiles {
    fn from_env(env: &mut Env) -> Option<Self> {
        const VARS: [&str; 3] = ["INTERNAL_TLS_CA", "INTERNAL_TLS_CERT", "INTERNAL_TLS_KEY"];
        let [ca, cert, key] = VARS.map(|var| env.optional::<PathBuf>(var));
        match (ca, cert, key) {
            (Some(ca), Some(cert), Some(key)) => Some(Self { ca, cert, key }),
            (None, None, None) => None,
            (ca, cert, key) => {
                for (var, value) in VARS.iter().zip([ca, cert, key]) {
                    if value.is_none() {
                        env.report(var, "a PEM file (INTERNAL_TLS_CA, INTERNAL_TLS_CERT and INTERNAL_TLS_KEY go together)");
                    }
                }
                None
            }
        }
    }
}

/// How this service proves itself to others and checks who calls it.
#[derive(Clone)]
pub struct ServiceAuthConfig {
    /// `INTERNAL_AUTH_SECRET`: the HS256 key of service tokens. `None` with mutual TLS and no
    /// secret: then only certificates identify callers.
    pub secret: Option<SecretString>,
    /// The secret was generated at start-up (development without either setting): other
    /// processes cannot call this one, nor it them.
    pub generated: bool,
    /// Mutual TLS on gRPC.
    pub tls: Option<InternalTlsFiles>,
}

impl fmt::Debug for ServiceAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAuthConfig")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("generated", &self.generated)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ServiceAuthConfig {
    /// Reads the settings. A secret, when set, must be at least [`MIN_SECRET_BYTES`]; in
    /// production a secret or mutual TLS is required. Elsewhere, with neither, a random
    /// secret is generated (see [`ServiceAuthConfig::generated`]).
    pub fn from_env(env: &mut Env, environment: Environment) -> Self {
        let secret = env.secret("INTERNAL_AUTH_SECRET");
        let tls = InternalTlsFiles::from_env(env);
        let expected = format!("a secret of at least {MIN_SECRET_BYTES} bytes");
        if secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < MIN_SECRET_BYTES)
        {
            env.report("INTERNAL_AUTH_SECRET", expected);
        } else if environment.is_production() && secret.is_none() && tls.is_none() {
            env.report(
                "INTERNAL_AUTH_SECRET",
                format!(
                    "{expected}, or INTERNAL_TLS_CA, INTERNAL_TLS_CERT and INTERNAL_TLS_KEY (one is required in production)"
                ),
            );
        }
        let generated = secret.is_none() && tls.is_none();
        Self {
            secret: match secret {
                Some(secret) => Some(secret),
                None if generated => Some(crate::random_secret()),
                None => None,
            },
            generated,
            tls,
        }
    }

    /// Tokens signed with a known secret (tests, `platform up` sharing one secret).
    pub fn with_secret(secret: impl Into<String>) -> Self {
        Self {
            secret: Some(SecretString::from(secret.into())),
            generated: false,
            tls: None,
        }
    }

    /// Mutual TLS only.
    pub fn with_tls(files: InternalTlsFiles) -> Self {
        Self {
            secret: None,
            generated: false,
            tls: Some(files),
        }
    }
}

/// The service identity could not be set up, or a credential not made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("SERVICE_NAME: {0}")]
    Name(#[from] InvalidServiceName),
    #[error("internal TLS: {0}")]
    Tls(String),
    #[error("cannot sign a service token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("no INTERNAL_AUTH_SECRET to sign service tokens with")]
    NoSecret,
    #[error("gRPC endpoint {url:?}: {reason}")]
    Endpoint { url: String, reason: String },
}

/// The claims of a service token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ServiceClaims {
    /// The calling service.
    iss: String,
    /// The called service.
    aud: String,
    iat: i64,
    exp: i64,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// What mutual TLS needs, read once at start-up.
struct TlsMaterial {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
}

/// This service's identity: mints its tokens, presents its certificate, and tells the kit
/// who is calling. Cheap to clone.
#[derive(Clone)]
pub struct ServiceIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    name: ServiceName,
    keys: Option<Keys>,
    tls: Option<TlsMaterial>,
}

impl fmt::Debug for ServiceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceIdentity")
            .field("name", &self.inner.name)
            .field("tokens", &self.inner.keys.is_some())
            .field("mutual_tls", &self.inner.tls.is_some())
            .finish()
    }
}

impl ServiceIdentity {
    /// The identity of the service `name`; reads and checks the TLS files, so a bad one
    /// stops start-up.
    pub fn new(name: &str, config: &ServiceAuthConfig) -> Result<Self, IdentityError> {
        let name = ServiceName::parse(name)?;
        if config.generated {
            tracing::warn!(
                service = %name,
                "INTERNAL_AUTH_SECRET is not set: using a random one, so no other process can call this service's gRPC methods or be called by it"
            );
        }
        let keys = config.secret.as_ref().map(|secret| {
            let secret = secret.expose_secret().as_bytes();
            // Pinned to HS256. Expiry and audience are checked by hand after the signature, so
            // a refusal can say which it was and, the signature being good, who it was from.
            let mut validation = Validation::new(Algorithm::HS256);
            validation.validate_exp = false;
            validation.validate_aud = false;
            validation.required_spec_claims.clear();
            Keys {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
            }
        });
        let tls = config
            .tls
            .as_ref()
            .map(|files| TlsMaterial::load(files, &name))
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner { name, keys, tls }),
        })
    }

    pub fn name(&self) -> &ServiceName {
        &self.inner.name
    }

    /// A token for calling `audience`, valid for [`TOKEN_LIFETIME`].
    pub fn mint(&self, audience: &str) -> Result<String, IdentityError> {
        self.mint_valid_for(audience, TOKEN_LIFETIME)
    }

    /// A token valid for `lifetime` from now (tests make expired ones with a zero lifetime).
    #[doc(hidden)]
    pub fn mint_valid_for(
        &self,
        audience: &str,
        lifetime: Duration,
    ) -> Result<String, IdentityError> {
        let keys = self.inner.keys.as_ref().ok_or(IdentityError::NoSecret)?;
        let now = chrono::Utc::now().timestamp();
        let claims = ServiceClaims {
            iss: self.inner.name.to_string(),
            aud: audience.to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &keys.encoding,
        )?)
    }

    /// The calling service of a token meant for this one.
    pub fn verify(&self, token: &str) -> Result<ServiceName, Unauthenticated> {
        let invalid = || Unauthenticated::new(CredentialError::Invalid);
        let keys = self.inner.keys.as_ref().ok_or_else(invalid)?;
        let claims = jsonwebtoken::decode::<ServiceClaims>(token, &keys.decoding, &keys.validation)
            .map_err(|_| invalid())?
            .claims;
        let caller = ServiceName::parse(&claims.iss).map_err(|_| invalid())?;
        let refused = |error| Unauthenticated {
            error,
            claimed: Some(Arc::clone(&caller.0)),
        };
        // No leeway: clients re-mint at half-life, so a live client never sends a token
        // this close to its end.
        if claims.exp <= chrono::Utc::now().timestamp() {
            return Err(refused(CredentialError::Expired));
        }
        if claims.aud != self.inner.name.as_str() {
            return Err(refused(CredentialError::WrongAudience));
        }
        Ok(caller)
    }

    /// The credential to attach to calls to `callee`.
    pub fn token_for(&self, callee: &str) -> ServiceToken {
        ServiceToken {
            identity: self.clone(),
            audience: Arc::from(callee),
            cached: Arc::new(Mutex::new(None)),
        }
    }

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

impl CallerAuthenticator for ServiceIdentity {
    fn authenticate(
        &self,
        metadata: &axum::http::HeaderMap,
        peer_certificates: Option<&[CertificateDer<'static>]>,
    ) -> Result<Arc<str>, Unauthenticated> {
        // Only the kit's TLS listener puts certificates here, after verifying them against
        // INTERNAL_TLS_CA during the handshake.
        if let Some(leaf) = peer_certificates.and_then(<[_]>::first) {
            return certificate_identity(leaf)
                .map(|name| name.0)
                .ok_or_else(|| Unauthenticated::new(CredentialError::Invalid));
        }
        let token = metadata
            .get(AUTHORIZATION)
            .ok_or_else(|| Unauthenticated::new(CredentialError::Missing))?
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| Unauthenticated::new(CredentialError::Invalid))?;
        self.verify(token.trim()).map(|name| name.0)
    }

    fn server_tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.inner.tls.as_ref().map(|tls| Arc::clone(&tls.server))
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
fn certificate_identity(certificate: &CertificateDer<'_>) -> Option<ServiceName> {
    certificate_names(certificate)
        .iter()
        .find_map(|name| ServiceName::parse(name).ok())
}

impl TlsMaterial {
    fn load(files: &InternalTlsFiles, name: &ServiceName) -> Result<Self, IdentityError> {
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

/// A client's credential for one callee: the `authorization` value of its calls, minted
/// once per half [`TOKEN_LIFETIME`] and shared by clones. Also a tonic interceptor.
#[derive(Clone)]
pub struct ServiceToken {
    identity: ServiceIdentity,
    audience: Arc<str>,
    /// The current value and when to replace it.
    cached: Arc<Mutex<Option<(HeaderValue, Instant)>>>,
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceToken")
            .field("from", &self.identity.inner.name)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ServiceToken {
    /// `Bearer <token>` for the next call; `None` without a secret (mutual TLS alone), or if
    /// signing failed (logged: the call then goes without and is refused as unauthenticated,
    /// which the caller sees like any refusal).
    pub fn header(&self) -> Option<HeaderValue> {
        self.identity.inner.keys.as_ref()?;
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some((value, renew_at)) = cached.as_ref()
            && now < *renew_at
        {
            return Some(value.clone());
        }
        let fresh = self
            .identity
            .mint(&self.audience)
            .map_err(|error| tracing::error!(%error, "cannot mint a service token"))
            .ok()
            .and_then(|token| HeaderValue::try_from(format!("Bearer {token}")).ok())?;
        *cached = Some((fresh.clone(), now + TOKEN_LIFETIME / 2));
        Some(fresh)
    }

    /// Adds the credential to an outgoing call.
    pub fn authorize<B>(&self, request: &mut axum::http::Request<B>) {
        if let Some(value) = self.header() {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
    }
}

impl tonic::service::Interceptor for ServiceToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = self
            .header()
            .and_then(|v| v.to_str().ok().and_then(|v| v.parse().ok()))
        {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "internal-secret-0123456789abcdef0123";

    fn identity(name: &str) -> ServiceIdentity {
        ServiceIdentity::new(name, &ServiceAuthConfig::with_secret(SECRET)).unwrap()
    }

    fn bearer(token: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    fn refusal(result: Result<Arc<str>, Unauthenticated>) -> (CredentialError, Option<String>) {
        let refused = result.unwrap_err();
        (refused.error, refused.claimed.map(|c| c.to_string()))
    }

    #[test]
    fn service_names_are_dns_names() {
        for good in ["order-service", "a", "svc2", "test-1f.order-service"] {
            assert!(ServiceName::parse(good).is_ok(), "{good}");
        }
        let long = "x".repeat(64);
        for bad in [
            "",
            "Order",
            "order_service",
            "-x",
            "x-",
            "2x",
            "a..b",
            "a.",
            &long,
        ] {
            assert!(ServiceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_names_its_issuer_to_the_service_it_was_minted_for() {
        let orders = identity("order-service");
        let products = identity("product-service");
        let token = orders.mint("product-service").unwrap();
        let caller = products.authenticate(&bearer(&token), None).unwrap();
        assert_eq!(&*caller, "order-service");
    }

    #[test]
    fn a_token_for_another_service_is_refused_naming_its_issuer() {
        let token = identity("order-service").mint("payment-service").unwrap();
        let result = identity("product-service").authenticate(&bearer(&token), None);
        assert_eq!(
            refusal(result),
            (
                CredentialError::WrongAudience,
                Some("order-service".to_owned())
            )
        );
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let token = identity("order-service")
            .mint_valid_for("product-service", Duration::ZERO)
            .unwrap();
        let result = identity("product-service").authenticate(&bearer(&token), None);
        assert_eq!(
            refusal(result),
            (CredentialError::Expired, Some("order-service".to_owned()))
        );
    }

    #[test]
    fn tokens_signed_otherwise_or_malformed_are_invalid_and_name_nobody() {
        let products = identity("product-service");
        let other = ServiceIdentity::new(
            "order-service",
            &ServiceAuthConfig::with_secret("another-secret-another-secret-xyz"),
        )
        .unwrap();
        let forged = other.mint("product-service").unwrap();
        // `alg: none` with the claims of a good token.
        let good = identity("order-service").mint("product-service").unwrap();
        let claims = good.split('.').nth(1).unwrap();
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
        for token in [forged.as_str(), unsigned.as_str(), "garbage", ""] {
            let result = products.authenticate(&bearer(token), None);
            assert_eq!(refusal(result), (CredentialError::Invalid, None), "{token}");
        }
        let mut basic = axum::http::HeaderMap::new();
        basic.insert(AUTHORIZATION, "Basic b3JkZXI6eA==".parse().unwrap());
        assert_eq!(
            refusal(products.authenticate(&basic, None)),
            (CredentialError::Invalid, None)
        );
    }

    #[test]
    fn a_call_without_a_credential_is_refused_as_missing() {
        let result = identity("product-service").authenticate(&axum::http::HeaderMap::new(), None);
        assert_eq!(refusal(result), (CredentialError::Missing, None));
    }

    #[test]
    fn clients_reuse_a_token_until_half_its_lifetime_has_passed() {
        let token = identity("order-service").token_for("product-service");
        let first = token.header().unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(token.clone().header().unwrap(), first, "shared and reused");
        *token.cached.lock().unwrap() = Some((first.clone(), Instant::now()));
        let renewed = token.header().unwrap();
        assert_ne!(renewed, first, "re-minted once due");
        let mut request = axum::http::Request::new(());
        token.authorize(&mut request);
        assert_eq!(request.headers()[AUTHORIZATION], renewed);
    }

    #[test]
    fn production_needs_a_long_secret_or_mutual_tls() {
        let issues = |pairs: &[(&str, &str)], environment| {
            let mut env = Env::from_pairs(pairs.iter().copied());
            let config = ServiceAuthConfig::from_env(&mut env, environment);
            let vars: Vec<String> = env.issues().iter().map(|i| i.variable.clone()).collect();
            (config, vars)
        };
        let (_, vars) = issues(&[], Environment::Production);
        assert_eq!(vars, ["INTERNAL_AUTH_SECRET"]);
        let (_, vars) = issues(
            &[("INTERNAL_AUTH_SECRET", "short")],
            Environment::Production,
        );
        assert_eq!(vars, ["INTERNAL_AUTH_SECRET"]);
        let (_, vars) = issues(
            &[("INTERNAL_AUTH_SECRET", "short")],
            Environment::Development,
        );
        assert_eq!(vars, ["INTERNAL_AUTH_SECRET"], "short is refused anywhere");
        let (config, vars) = issues(&[("INTERNAL_AUTH_SECRET", SECRET)], Environment::Production);
        assert!(vars.is_empty() && !config.generated);
        let tls = [
            ("INTERNAL_TLS_CA", "ca.pem"),
            ("INTERNAL_TLS_CERT", "cert.pem"),
            ("INTERNAL_TLS_KEY", "key.pem"),
        ];
        let (config, vars) = issues(&tls, Environment::Production);
        assert!(vars.is_empty(), "{vars:?}");
        assert!(config.secret.is_none() && config.tls.is_some());
        let (_, vars) = issues(&tls[..2], Environment::Development);
        assert_eq!(vars, ["INTERNAL_TLS_KEY"], "all three or none");
        let (config, vars) = issues(&[], Environment::Development);
        assert!(vars.is_empty() && config.generated);
        assert!(config.secret.unwrap().expose_secret().len() >= MIN_SECRET_BYTES);
    }

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
