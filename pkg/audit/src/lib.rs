//! The audit trail: one structured record for every authentication and authorization decision
//! and every administrative action, on every service and the gateway.
//!
//! A record is written twice:
//! - as a `tracing` event with the target `audit` (JSON with the rest of the logs; the
//!   telemetry filter always lets this target through at `info`, whatever `LOG_LEVEL` says);
//! - to the service's [`Sink`], when it has one: the event bus, so that the event store keeps
//!   it as an `audit.*` event that administrators can query.
//!
//! Architecture invariant: a record never holds a secret. It has no free-form payload: an
//! action from the catalogue ([`Action`]), an outcome, who ([`Actor`]), from where (client
//! IP, request id), on what (`target`, an identifier) and why (`reason`, a short code such as
//! `bad_password` or `expired`). Passwords, tokens and keys have nowhere to go.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What was decided or done. The catalogue of audited actions; its names are the `action`
/// field of records and, prefixed with `audit.`, the event types in the event store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Action {
    /// A login attempt (password check).
    #[serde(rename = "auth.login")]
    Login,
    /// A refresh token exchanged for new tokens.
    #[serde(rename = "auth.refresh")]
    Refresh,
    /// A rotated refresh token presented again: its whole family is revoked.
    #[serde(rename = "auth.refresh_reuse")]
    RefreshReuse,
    /// A session ended: the refresh token's family revoked along with the user's access
    /// tokens; `failure` with `unknown_token` when the token was not known.
    #[serde(rename = "auth.logout")]
    Logout,
    /// A password changed, by its user or, with the reason `admin_reset`, by an administrator.
    #[serde(rename = "auth.password_change")]
    PasswordChange,
    /// A credential refused (HTTP 401, gRPC `UNAUTHENTICATED`); `reason` says which class.
    #[serde(rename = "auth.token_rejected")]
    TokenRejected,
    /// An authenticated caller refused (HTTP 403, gRPC `PERMISSION_DENIED`).
    #[serde(rename = "auth.access_denied")]
    AccessDenied,
    /// A user account registered.
    #[serde(rename = "user.register")]
    UserRegister,
    /// A user account deleted; the actor is whoever deleted it.
    #[serde(rename = "user.delete")]
    UserDelete,
    /// A user's role changed; `reason` is `granted_admin` or `revoked_admin`.
    #[serde(rename = "user.role_change")]
    UserRoleChange,
    /// A product added to the catalog by an administrator.
    #[serde(rename = "product.create")]
    ProductCreate,
    /// A product's details changed by an administrator.
    #[serde(rename = "product.update")]
    ProductUpdate,
    /// A product withdrawn from the catalog by an administrator.
    #[serde(rename = "product.delete")]
    ProductDelete,
    /// A product's stock set or adjusted by an administrator.
    #[serde(rename = "inventory.update")]
    InventoryUpdate,
    /// An administrator moved an order along (shipped, delivered, cancelled).
    #[serde(rename = "order.status_change")]
    OrderStatusChange,
    /// A payment refunded, in full or in part (by an administrator, or by another service for
    /// an order); a replayed request is not recorded again.
    #[serde(rename = "payment.refund")]
    PaymentRefund,
    /// An administrator approved or declined a payment held for review.
    #[serde(rename = "payment.review")]
    PaymentReview,
    /// A dead-lettered event replayed.
    #[serde(rename = "events.replay")]
    EventReplay,
}

impl Action {
    /// Every action, for documentation and query validation.
    pub const ALL: [Action; 18] = [
        Action::Login,
        Action::Refresh,
        Action::RefreshReuse,
        Action::Logout,
        Action::PasswordChange,
        Action::TokenRejected,
        Action::AccessDenied,
        Action::UserRegister,
        Action::UserDelete,
        Action::UserRoleChange,
        Action::ProductCreate,
        Action::ProductUpdate,
        Action::ProductDelete,
        Action::InventoryUpdate,
        Action::OrderStatusChange,
        Action::PaymentRefund,
        Action::PaymentReview,
        Action::EventReplay,
    ];

    /// The action's name in records and (after `audit.`) in event types, e.g. `auth.login`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "auth.login",
            Action::Refresh => "auth.refresh",
            Action::RefreshReuse => "auth.refresh_reuse",
            Action::Logout => "auth.logout",
            Action::PasswordChange => "auth.password_change",
            Action::TokenRejected => "auth.token_rejected",
            Action::AccessDenied => "auth.access_denied",
            Action::UserRegister => "user.register",
            Action::UserDelete => "user.delete",
            Action::UserRoleChange => "user.role_change",
            Action::ProductCreate => "product.create",
            Action::ProductUpdate => "product.update",
            Action::ProductDelete => "product.delete",
            Action::InventoryUpdate => "inventory.update",
            Action::OrderStatusChange => "order.status_change",
            Action::PaymentRefund => "payment.refund",
            Action::PaymentReview => "payment.review",
            Action::EventReplay => "events.replay",
        }
    }

    /// The action named `raw` (as [`Action::as_str`] writes it); `None` for an unknown name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Allowed, and done.
    Success,
    /// Attempted and failed (a wrong password, an unknown refresh token).
    Failure,
    /// Refused by policy (401, 403, a throttled account, a revoked token family).
    Denied,
}

impl Outcome {
    /// Its name in records: `success`, `failure` or `denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Who acted: a user (by id), another service (by name), or nobody known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A user, by id.
    User(Uuid),
    /// Another service, by name (`order-service`); written `service:<name>`.
    Service(Arc<str>),
}

impl fmt::Display for Actor {
    /// Users are their UUID, services `service:<name>`: what `?actor=` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => id.fmt(f),
            Actor::Service(name) => write!(f, "service:{name}"),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Actor::parse(&raw).ok_or_else(|| serde::de::Error::custom("not a user id or service:name"))
    }
}

impl Actor {
    /// A hyphenated UUID, or `service:` and a service name (1 to 64 of `a-z`, `0-9`, `-`, `.`):
    /// [`Actor::PATTERN`].
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.strip_prefix("service:") {
            Some(name)
                if (1..=64).contains(&name.len())
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    }) =>
            {
                Some(Actor::Service(Arc::from(name)))
            }
            Some(_) => None,
            None if raw.len() == 36 => Uuid::parse_str(raw).ok().map(Actor::User),
            None => None,
        }
    }

    /// What [`Actor::parse`] takes, as a regular expression (for API documents).
    pub const PATTERN: &'static str = "^(service:[a-z0-9.-]{1,64}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$";
}

/// Where a request came from, as the kit saw it: the client address (through trusted
/// proxies) and the request id. Recorded with every audit event of that request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditContext {
    /// The client's address; `None` when unknown.
    pub client_ip: Option<IpAddr>,
    /// The request id the kit assigned or accepted (`x-request-id`), when there is one.
    pub request_id: Option<Arc<str>>,
}

/// One audit event as the code states it; [`Audit::record`] adds when, where and which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// What was decided or done.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
    /// Who acted; `None` when nobody is known (a failed login of an unknown account).
    pub actor: Option<Actor>,
    /// What was acted on: an identifier such as `user:<id>`, `product:<id>`,
    /// `GET /api/v1/orders`, `product.v1.ProductService/Reserve`.
    pub target: Option<String>,
    /// A short code saying why (`bad_password`, `expired`, `revoked`, `admin_only`), never a
    /// message containing input.
    pub reason: Option<&'static str>,
}

impl AuditEvent {
    /// An event with no actor, target or reason yet; the builder methods below add them.
    pub fn new(action: Action, outcome: Outcome) -> Self {
        Self {
            action,
            outcome,
            actor: None,
            target: None,
            reason: None,
        }
    }

    /// Sets (or, with `None`, clears) who acted.
    pub fn actor(mut self, actor: impl Into<Option<Actor>>) -> Self {
        self.actor = actor.into();
        self
    }

    /// Sets the actor to the user `id`.
    pub fn user(self, id: Uuid) -> Self {
        self.actor(Actor::User(id))
    }

    /// Sets what was acted on, e.g. `user:<id>`.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Sets the short code saying why, e.g. `bad_password`; never a message containing input.
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// A complete audit record: the event plus when, where and by which service it was recorded.
/// Its JSON is the payload of the `audit.*` event in the event store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// The record's id: a UUIDv7, so ids sort by the time they were recorded.
    pub id: Uuid,
    /// When the record was made (UTC).
    pub time: DateTime<Utc>,
    /// The service that made the decision.
    pub service: String,
    /// What was decided or done.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
    /// Who acted: a user id, or `service:<name>`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<String>)]
    pub actor: Option<Actor>,
    /// The client's address, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<IpAddr>,
    /// The id of the request that led to the decision, when it had one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// What was acted on: an identifier such as `user:<id>` or `product:<id>`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    /// A short code saying why, such as `bad_password` or `expired`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// Where records go besides the log: must not block (the request path calls it).
pub trait Sink: Send + Sync + 'static {
    /// Takes one record, already logged. Called on the request path: queue it, never wait.
    fn accept(&self, record: AuditRecord);
}

/// A service's audit trail. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<str>,
    sink: Option<Arc<dyn Sink>>,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("service", &self.inner.service)
            .field("sink", &self.inner.sink.is_some())
            .finish()
    }
}

/// The `tracing` target of audit records.
pub const TARGET: &str = "audit";

impl Audit {
    /// An audit trail that only logs.
    pub fn new(service: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                service: Arc::from(service),
                sink: None,
            }),
        }
    }

    /// An audit trail that logs and hands every record to `sink`.
    pub fn with_sink(service: &str, sink: Arc<dyn Sink>) -> Self {
        Self {
            inner: Arc::new(Inner {
                service: Arc::from(service),
                sink: Some(sink),
            }),
        }
    }

    /// The name of the service whose records these are.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// Records `event` as seen in `context`; returns the record (tests look at it).
    pub fn record(&self, context: &AuditContext, event: AuditEvent) -> AuditRecord {
        let record = AuditRecord {
            id: Uuid::now_v7(),
            time: Utc::now(),
            service: self.inner.service.to_string(),
            action: event.action,
            outcome: event.outcome,
            actor: event.actor,
            client_ip: context.client_ip,
            request_id: context.request_id.as_deref().map(str::to_owned),
            target: event.target,
            reason: event.reason.map(str::to_owned),
        };
        log(&record);
        if let Some(sink) = &self.inner.sink {
            sink.accept(record.clone());
        }
        record
    }
}

/// The log line of a record: every field named, at `info` under the `audit` target.
fn log(record: &AuditRecord) {
    let actor = record.actor.as_ref().map(ToString::to_string);
    tracing::info!(
        target: TARGET,
        audit_id = %record.id,
        service = %record.service,
        action = record.action.as_str(),
        outcome = record.outcome.as_str(),
        actor = actor.as_deref(),
        client_ip = record.client_ip.map(|ip| ip.to_string()).as_deref(),
        request_id = record.request_id.as_deref(),
        target = record.target.as_deref(),
        reason = record.reason.as_deref(),
        "audit"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<AuditRecord>>);

    impl Sink for Collect {
        fn accept(&self, record: AuditRecord) {
            if let Ok(mut records) = self.0.lock() {
                records.push(record);
            }
        }
    }

    #[test]
    fn actions_round_trip_through_their_names() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
        }
        assert_eq!(Action::parse("auth.nothing"), None);
    }

    #[test]
    fn actors_are_user_ids_or_named_services() {
        let id = Uuid::now_v7();
        assert_eq!(Actor::parse(&id.to_string()), Some(Actor::User(id)));
        assert_eq!(
            Actor::parse("service:order-service"),
            Some(Actor::Service(Arc::from("order-service")))
        );
        assert_eq!(Actor::parse("service:"), None);
        assert_eq!(Actor::parse("bob"), None);
        assert_eq!(
            Actor::Service(Arc::from("order-service")).to_string(),
            "service:order-service"
        );
    }

    #[test]
    fn records_carry_context_and_reach_the_sink() {
        let sink = Arc::new(Collect::default());
        let audit = Audit::with_sink("user-service", sink.clone());
        let user = Uuid::now_v7();
        let context = AuditContext {
            client_ip: Some("203.0.113.7".parse().unwrap()),
            request_id: Some(Arc::from("req-1")),
        };
        let record = audit.record(
            &context,
            AuditEvent::new(Action::Login, Outcome::Failure)
                .user(user)
                .target(format!("user:{user}"))
                .reason("bad_password"),
        );
        assert_eq!(record.service, "user-service");
        assert_eq!(record.request_id.as_deref(), Some("req-1"));
        let stored = sink.0.lock().unwrap().clone();
        assert_eq!(stored, std::slice::from_ref(&record));
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["action"], "auth.login");
        assert_eq!(json["outcome"], "failure");
        assert_eq!(json["actor"], user.to_string());
        assert_eq!(json["client_ip"], "203.0.113.7");
        let back: AuditRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
