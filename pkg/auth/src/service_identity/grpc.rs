//! Where the identity meets gRPC: the kit's guard asks it who is calling (a verified client
//! certificate, else a token), and clients attach a cached token to every call through a
//! tonic interceptor.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use platform_http::grpc_guard::{CallerAuthenticator, CredentialError, Unauthenticated};
use rustls_pki_types::CertificateDer;

use super::tls::certificate_identity;
use super::{ServiceIdentity, TOKEN_LIFETIME};

impl ServiceIdentity {
    /// The credential to attach to calls to `callee`.
    pub fn token_for(&self, callee: &str) -> ServiceToken {
        ServiceToken {
            identity: self.clone(),
            audience: Arc::from(callee),
            cached: Arc::new(Mutex::new(None)),
        }
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
    use std::time::Duration;

    use super::*;
    use crate::service_identity::testing::{identity, refusal};

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
}
