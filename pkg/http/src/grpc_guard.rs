//! Who may call a service's gRPC methods: the kit puts this guard in front of every gRPC
//! server, so no service can forget it.
//!
//! Each call is authenticated by the service's [`CallerAuthenticator`] (platform-auth's
//! service identity: a client certificate or a signed service token; the kit knows neither
//! format), then checked against the service's [`GrpcAccess`] policy. A call without a usable
//! credential gets `UNAUTHENTICATED`, an identified service the policy does not name
//! `PERMISSION_DENIED`; each refusal is an audit record (`auth.token_rejected` with the reason,
//! `auth.access_denied`), with the caller when it is known and the method as the target.
//!
//! Open to anyone: the standard health service (probes carry no credentials) and, when an
//! operator turns it on (`GRPC_REFLECTION`), reflection — it describes methods, and calling
//! any of them still needs a credential.
//!
//! With mutual TLS the kit terminates TLS itself ([`MutualTls`]) rather than through tonic, so
//! that a certificate refused during the handshake (another CA, expired) is audited too.
//! Client certificates are optional at the handshake, so a TLS health probe without one still
//! works; a call without one (and without a token) is refused by the guard as `missing`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::{Stream, StreamExt};
use rustls_pki_types::CertificateDer;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::Instrument;

use crate::audit::{Action, Actor, Audit, AuditContext, AuditEvent, Outcome};
use crate::middleware::REQUEST_ID;
use crate::serve::GrpcConnection;

/// Why a call's credential was refused; [`CredentialError::reason`] is the audit reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Neither a client certificate nor an `authorization` header.
    #[error("a service credential is required")]
    Missing,
    /// Present, but malformed, not verifiable, or naming no valid service.
    #[error("the service credential is invalid")]
    Invalid,
    /// A verified credential meant for calls to another service.
    #[error("the service credential is meant for another service")]
    WrongAudience,
    /// A verified credential past its expiry.
    #[error("the service credential has expired")]
    Expired,
}

impl CredentialError {
    /// The reason class of the `auth.token_rejected` audit record (`missing`, `invalid`,
    /// `wrong_audience`, `expired`).
    pub fn reason(self) -> &'static str {
        match self {
            CredentialError::Missing => "missing",
            CredentialError::Invalid => "invalid",
            CredentialError::WrongAudience => "wrong_audience",
            CredentialError::Expired => "expired",
        }
    }
}

/// A refused credential, and the service it named when that much is trustworthy (its
/// signature checked out, but it was expired or meant for another service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthenticated {
    /// What was wrong with the credential.
    pub error: CredentialError,
    /// The calling service the credential names, only when its signature checked out; the
    /// audit record's actor.
    pub claimed: Option<Arc<str>>,
}

impl Unauthenticated {
    /// A refusal that names no caller.
    pub fn new(error: CredentialError) -> Self {
        Self {
            error,
            claimed: None,
        }
    }
}

/// Establishes which service is calling; implemented by platform-auth's service identity.
pub trait CallerAuthenticator: Send + Sync + 'static {
    /// The caller of one call, from its metadata and, over mutual TLS, the client certificate
    /// chain the handshake verified (leaf first).
    fn authenticate(
        &self,
        metadata: &http::HeaderMap,
        peer_certificates: Option<&[CertificateDer<'static>]>,
    ) -> Result<Arc<str>, Unauthenticated>;

    /// The TLS the gRPC listener serves when mutual TLS is configured: the service's
    /// certificate and a verifier of client certificates.
    fn server_tls(&self) -> Option<Arc<rustls::ServerConfig>>;
}

/// The service a call was authenticated as, in the request's extensions for handlers that
/// record what a service did (a refund by the order service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCaller(pub Arc<str>);

/// Who may call what.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Callers {
    /// Any authenticated service of the platform.
    AnyService,
    Only(Vec<Arc<str>>),
}

/// Which services may call which methods. Fails closed: a method the policy does not name is
/// refused to every caller, so a new method is unreachable until someone decides who may
/// call it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcAccess {
    /// Full method paths (`/product.v1.ProductService/Reserve`) and their callers.
    rules: Vec<(String, Callers)>,
}

impl GrpcAccess {
    /// A policy that allows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `service` (the tonic server's `NamedService::NAME`)'s `method` may be called by these
    /// services only.
    pub fn allow(mut self, service: &str, method: &str, callers: &[&str]) -> Self {
        self.rules.push((
            path(service, method),
            Callers::Only(callers.iter().map(|c| Arc::from(*c)).collect()),
        ));
        self
    }

    /// `service`'s `method` may be called by any authenticated service.
    pub fn allow_any_service(mut self, service: &str, method: &str) -> Self {
        self.rules
            .push((path(service, method), Callers::AnyService));
        self
    }

    /// Whether `caller` may call the method at `path`.
    pub fn permits(&self, path: &str, caller: &str) -> bool {
        self.rules
            .iter()
            .find(|(method, _)| method == path)
            .is_some_and(|(_, callers)| match callers {
                Callers::AnyService => true,
                Callers::Only(names) => names.iter().any(|name| &**name == caller),
            })
    }
}

fn path(service: &str, method: &str) -> String {
    format!("/{service}/{method}")
}

/// Paths anyone may call: health probes, and reflection where it is served at all.
const OPEN: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// What the guard needs for every call.
pub(crate) struct Guard {
    /// The serving service, named on each call's span.
    pub service: Arc<str>,
    pub authenticator: Arc<dyn CallerAuthenticator>,
    pub access: GrpcAccess,
    pub audit: Audit,
}

/// The connection a call came over: the peer's address and, over TLS, its certificates.
fn connection(
    extensions: &http::Extensions,
) -> (
    Option<SocketAddr>,
    Option<Arc<Vec<CertificateDer<'static>>>>,
) {
    if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        return (tls.get_ref().remote_addr(), tls.peer_certs());
    }
    let addr = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr);
    (addr, None)
}

/// The axum middleware the kit wraps around every gRPC router.
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if OPEN.iter().any(|open| path.starts_with(open)) {
        return next.run(request).await;
    }
    let span = crate::grpc_trace::server_span(&guard.service, path, request.headers());
    let response = checked(&guard, request, next)
        .instrument(span.clone())
        .await;
    crate::grpc_trace::record_status(&span, false, response.status(), response.headers());
    response
}

/// Authenticates and authorizes one call, then serves or refuses it.
async fn checked(guard: &Guard, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let (peer, certificates) = connection(request.extensions());
    let outcome = guard.authenticator.authenticate(
        request.headers(),
        certificates.as_deref().map(Vec::as_slice),
    );
    let (status, event) = match outcome {
        Ok(caller) if guard.access.permits(path, &caller) => {
            request.extensions_mut().insert(GrpcCaller(caller));
            return next.run(request).await;
        }
        Ok(caller) => {
            let status = tonic::Status::permission_denied(format!(
                "{caller} may not call {}",
                path.trim_start_matches('/')
            ));
            let event = AuditEvent::new(Action::AccessDenied, Outcome::Denied)
                .actor(Actor::Service(caller))
                .reason("not_allowed");
            (status, event)
        }
        Err(refused) => {
            let status = tonic::Status::unauthenticated(refused.error.to_string());
            let event = AuditEvent::new(Action::TokenRejected, Outcome::Denied)
                .actor(refused.claimed.map(Actor::Service))
                .reason(refused.error.reason());
            (status, event)
        }
    };
    let context = AuditContext {
        client_ip: peer.map(|addr| addr.ip()),
        request_id: request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(Arc::from),
    };
    guard.audit.record(
        &context,
        event.target(request.uri().path().trim_start_matches('/')),
    );
    status.into_http()
}

/// Mutual TLS on the gRPC listener, terminated by the kit (see the module documentation).
pub(crate) struct MutualTls {
    pub config: Arc<rustls::ServerConfig>,
    pub audit: Audit,
    /// A handshake that takes longer is dropped (`HEADER_READ_TIMEOUT`).
    pub handshake_timeout: Duration,
}

/// Connections waiting for tonic; handshakes finish in tasks of their own so a slow client
/// cannot hold up the next one.
const HANDSHAKED_BACKLOG: usize = 64;

impl MutualTls {
    /// The TLS connections made over `connections` (the listener's, already counted and
    /// clocked), for tonic's `serve_with_incoming`. Ends when tonic drops the stream
    /// (shutdown).
    pub fn incoming<S>(
        self,
        connections: S,
    ) -> ReceiverStream<std::io::Result<TlsStream<GrpcConnection>>>
    where
        S: Stream<Item = std::io::Result<GrpcConnection>> + Send + 'static,
    {
        let (ready, incoming) = tokio::sync::mpsc::channel(HANDSHAKED_BACKLOG);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config);
        let audit = self.audit;
        let timeout = self.handshake_timeout;
        tokio::spawn(async move {
            let mut connections = std::pin::pin!(connections);
            loop {
                let accepted = tokio::select! {
                    () = ready.closed() => return,
                    accepted = connections.next() => accepted,
                };
                let connection = match accepted {
                    Some(Ok(connection)) => connection,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "gRPC accept failed");
                        continue;
                    }
                    None => return,
                };
                let peer = connection.peer();
                let (acceptor, audit, ready) = (acceptor.clone(), audit.clone(), ready.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(connection)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send(Ok(tls)).await;
                        }
                        Ok(Err(error)) => handshake_refused(&audit, peer, &error),
                        Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(incoming)
    }
}

/// Audits a handshake that failed on the client's certificate; other failures (a client that
/// hung up, spoke something else, or refused our certificate) are not a decision about a
/// credential and are only logged.
fn handshake_refused(audit: &Audit, peer: SocketAddr, error: &std::io::Error) {
    use rustls::{CertificateError, Error as Tls};
    let reason = match error.get_ref().and_then(|e| e.downcast_ref::<Tls>()) {
        Some(Tls::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "expired",
        Some(Tls::InvalidCertificate(_)) => "invalid",
        Some(Tls::NoCertificatesPresented) => "missing",
        _ => {
            tracing::debug!(%peer, %error, "gRPC TLS handshake failed");
            return;
        }
    };
    audit.record(
        &AuditContext {
            client_ip: Some(peer.ip()),
            request_id: None,
        },
        AuditEvent::new(Action::TokenRejected, Outcome::Denied)
            .target("grpc:tls-handshake")
            .reason(reason),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCTS: &str = "product.v1.ProductService";

    fn policy() -> GrpcAccess {
        GrpcAccess::new()
            .allow(PRODUCTS, "Reserve", &["order-service"])
            .allow_any_service(PRODUCTS, "GetProducts")
    }

    #[test]
    fn only_the_named_services_may_call_a_restricted_method() {
        let policy = policy();
        let reserve = "/product.v1.ProductService/Reserve";
        assert!(policy.permits(reserve, "order-service"));
        assert!(!policy.permits(reserve, "notification-service"));
        assert!(!policy.permits(reserve, "order-service-2"));
    }

    #[test]
    fn any_service_may_call_an_open_method() {
        let policy = policy();
        assert!(policy.permits("/product.v1.ProductService/GetProducts", "user-service"));
    }

    #[test]
    fn a_method_the_policy_does_not_name_is_refused_to_everyone() {
        let policy = policy();
        assert!(!policy.permits("/product.v1.ProductService/Restock", "order-service"));
        assert!(!policy.permits("/product.v1.ProductService/Reserve/x", "order-service"));
        assert!(!GrpcAccess::new().permits("/a.B/C", "order-service"));
    }

    #[test]
    fn credential_errors_name_their_audit_reason() {
        let reasons: Vec<_> = [
            CredentialError::Missing,
            CredentialError::Invalid,
            CredentialError::WrongAudience,
            CredentialError::Expired,
        ]
        .into_iter()
        .map(CredentialError::reason)
        .collect();
        assert_eq!(reasons, ["missing", "invalid", "wrong_audience", "expired"]);
    }
}
