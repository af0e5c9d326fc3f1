//! Calling a service's gRPC API as some service (or as nobody), over tokens or mutual TLS, and
//! reading the audit records a service published.

use std::net::SocketAddr;
use std::time::Duration;

use platform_auth::service_identity::{
    InternalTlsFiles, ServiceAuthConfig, ServiceIdentity, ServiceToken,
};
use platform_events::EventsConfig;
use platform_http::audit::{Action, AuditRecord};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// What a test call carries.
#[derive(Clone)]
pub enum Credential {
    /// No `authorization` metadata at all.
    None,
    /// A service's token, minted (and renewed) as its clients do.
    Service(ServiceToken),
    /// This exact `authorization` value.
    Raw(String),
}

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        match self {
            Credential::None => Ok(request),
            Credential::Service(token) => token.call(request),
            Credential::Raw(value) => {
                let value = value.parse().expect("an ASCII authorization value");
                request.metadata_mut().insert("authorization", value);
                Ok(request)
            }
        }
    }
}

/// A channel whose calls carry a [`Credential`].
pub type Caller = InterceptedService<Channel, Credential>;

fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a gRPC address")
        .connect_lazy()
}

/// Calls with no credential at all.
pub fn anonymous(addr: SocketAddr) -> Caller {
    InterceptedService::new(channel(addr), Credential::None)
}

/// Calls as service `caller` with tokens for `audience`, signed with `secret`.
pub fn as_service(addr: SocketAddr, caller: &str, audience: &str, secret: &str) -> Caller {
    let identity = ServiceIdentity::new(caller, &ServiceAuthConfig::with_secret(secret))
        .expect("a service identity");
    InterceptedService::new(
        channel(addr),
        Credential::Service(identity.token_for(audience)),
    )
}

/// Calls with `authorization: <value>`.
pub fn with_authorization(addr: SocketAddr, value: &str) -> Caller {
    InterceptedService::new(channel(addr), Credential::Raw(value.to_owned()))
}

/// A certificate authority for internal mutual TLS, and the files of the certificates it
/// issues (in a temporary directory that lives as long as it does).
pub struct Pki {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A fresh self-signed CA with a temporary directory for its files; panics if either
    /// cannot be made.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
                .expect("a CA certificate"),
        }
    }

    /// The CA certificate's file.
    pub fn ca(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("ca.pem");
        if !path.exists() {
            std::fs::write(&path, self.issuer.pem()).expect("write the CA");
        }
        path
    }

    /// The `INTERNAL_TLS_*` files of service `name`: a certificate naming it, for serving and
    /// for calling.
    pub fn service(&self, name: &str) -> InternalTlsFiles {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("parameters");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        let write = |file: &str, pem: String| {
            let path = self.dir.path().join(format!("{name}-{file}"));
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        InternalTlsFiles {
            ca: self.ca(),
            cert: write("cert.pem", cert.pem()),
            key: write("key.pem", key.serialize_pem()),
        }
    }

    /// Calls `callee` at `addr` over TLS, trusting this CA but presenting no certificate.
    pub fn without_certificate(&self, addr: SocketAddr, callee: &str) -> Caller {
        let ca = std::fs::read(self.ca()).expect("read the CA");
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .expect("a gRPC address")
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name(callee),
            )
            .expect("a TLS configuration")
            .connect_lazy();
        InterceptedService::new(channel, Credential::None)
    }
}

/// Calls `callee` at `addr` over mutual TLS as the service whose files are `files` (and with
/// no token), exactly as that service's own clients would.
pub fn over_mutual_tls(
    addr: SocketAddr,
    caller: &str,
    files: InternalTlsFiles,
    callee: &str,
) -> Caller {
    let channel = ServiceIdentity::new(caller, &ServiceAuthConfig::with_tls(files))
        .expect("a service identity")
        .endpoint(&format!("http://{addr}"), callee)
        .expect("an endpoint")
        .connect_lazy();
    InterceptedService::new(channel, Credential::None)
}

/// Every audit record published on the bus of `events`, oldest first.
pub async fn audit_records(events: &EventsConfig) -> Vec<AuditRecord> {
    let transport = events.connect().await.expect("the event bus");
    transport
        .history(platform_events::audit::FAMILY, 100_000)
        .await
        .expect("read the audit stream")
        .into_iter()
        .map(|event| serde_json::from_value(event.data).expect("an audit record"))
        .collect()
}

/// The first audit record on the bus of `events` that satisfies `matches`, waiting up to 10
/// seconds for it.
pub async fn audited(
    events: &EventsConfig,
    what: &str,
    matches: impl Fn(&AuditRecord) -> bool,
) -> AuditRecord {
    for _ in 0..200 {
        if let Some(record) = audit_records(events).await.into_iter().find(&matches) {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = audit_records(events).await;
    panic!("no audit record of {what}; the bus has: {seen:#?}");
}

/// The record of a refused gRPC call (`action` with `reason`, on the method at `target`, e.g.
/// `platform.product.v1.ProductService/Reserve`) on the bus of `events`.
pub async fn refusal_audited(
    events: &EventsConfig,
    action: Action,
    reason: &str,
    target: &str,
) -> AuditRecord {
    audited(
        events,
        &format!("{action} ({reason}) on {target}"),
        |record| {
            record.action == action
                && record.reason.as_deref() == Some(reason)
                && record.target.as_deref() == Some(target)
        },
    )
    .await
}

/// Whether the standard health service behind `caller` reports `service` (`""`: the whole
/// server) as serving.
pub async fn serving(caller: Caller, service: &str) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    let status = tonic_health::pb::health_client::HealthClient::new(caller)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("a health answer")
        .into_inner()
        .status;
    status == ServingStatus::Serving as i32
}
