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

mod config;
mod grpc;
#[cfg(test)]
mod testing;
mod tls;
mod tokens;

use std::fmt;
use std::sync::Arc;

pub use config::{InternalTlsFiles, ServiceAuthConfig};
pub use grpc::ServiceToken;
use tls::TlsMaterial;
use tokens::Keys;
pub use tokens::TOKEN_LIFETIME;

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
    /// At most 253 bytes of dot-separated labels, each 1 to 63 lowercase letters, digits or
    /// `-` (not at either end), starting with a letter.
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

    /// The name, as tokens and certificates carry it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The service identity could not be set up, or a credential not made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The service's own name is not a DNS name.
    #[error("SERVICE_NAME: {0}")]
    Name(#[from] InvalidServiceName),
    /// An `INTERNAL_TLS_*` file is unreadable or holds no usable PEM, the key does not match
    /// the certificate, or the certificate does not name the service.
    #[error("internal TLS: {0}")]
    Tls(String),
    /// Signing a service token failed.
    #[error("cannot sign a service token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// A token was asked for, but mutual TLS is configured without `INTERNAL_AUTH_SECRET`.
    #[error("no INTERNAL_AUTH_SECRET to sign service tokens with")]
    NoSecret,
    /// A callee's URL does not make a gRPC endpoint.
    #[error("gRPC endpoint {url:?}: {reason}")]
    Endpoint {
        /// The URL as given.
        url: String,
        /// What tonic said of it.
        reason: String,
    },
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
        let keys = config.secret.as_ref().map(Keys::from_secret);
        let tls = config
            .tls
            .as_ref()
            .map(|files| TlsMaterial::load(files, &name))
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner { name, keys, tls }),
        })
    }

    /// This service's name: the `iss` of its tokens, the DNS name of its certificate.
    pub fn name(&self) -> &ServiceName {
        &self.inner.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
