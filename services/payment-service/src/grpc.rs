//! The gRPC API (`proto/payment.proto`) the order saga calls. Internal: its own port, never
//! exposed through the gateway; the caller names the user it acts for.

use platform_auth::service_identity::ServiceIdentity;
use platform_http::audit::{Action, Actor, Audit, AuditContext, AuditEvent, Outcome};
use platform_http::{GrpcAccess, GrpcApi, GrpcCaller, IdempotencyKey};
use platform_money::{Currency, Money};
use platform_proto::payment::v1 as proto;
use platform_proto::payment::v1::payment_service_server::{PaymentService, PaymentServiceServer};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{CardToken, PaymentId, PaymentSource, PaymentStatus};
use crate::providers::ProviderError;
use crate::service::{Caller, ChargeCommand, PaymentError, Payments, RefundCommand};
use crate::view::PaymentView;

/// The `PaymentService` gRPC server.
pub struct PaymentGrpc {
    payments: Payments,
    /// Refunds are audited, with the calling service as the actor.
    audit: Audit,
}

impl From<PaymentError> for Status {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::NotFound => Status::not_found(error.to_string()),
            PaymentError::KeyReused
            | PaymentError::WrongCurrency(_)
            | PaymentError::ChargeMismatch { .. }
            | PaymentError::NotYourOrder(_) => Status::invalid_argument(error.to_string()),
            PaymentError::KeyInProgress => Status::aborted(error.to_string()),
            PaymentError::NotRefundable(_)
            | PaymentError::ExceedsRefundable(_)
            | PaymentError::NotInReview(_)
            | PaymentError::RefundThroughOrder { .. }
            | PaymentError::DirectPaymentsOff
            | PaymentError::OrderPaidByCheckout(_) => {
                Status::failed_precondition(error.to_string())
            }
            // Still open at the provider: ask again later.
            PaymentError::HeldByProvider | PaymentError::OrderUnverified(_) => {
                Status::unavailable(error.to_string())
            }
            PaymentError::UnknownProvider(_)
            | PaymentError::Webhook(_)
            | PaymentError::WebhookTooEarly => Status::failed_precondition(error.to_string()),
            // Asked again under the same key, a refund whose answer never came is finished.
            PaymentError::Provider(ProviderError::NotSent(_) | ProviderError::Unknown(_)) => {
                Status::unavailable(error.to_string())
            }
            PaymentError::Provider(_) => Status::failed_precondition(error.to_string()),
            // The database failed, maybe after a provider was called: the caller must ask
            // again under the same key (which finishes the charge), never conclude "no charge".
            error @ (PaymentError::Database(_) | PaymentError::Interrupted(_)) => {
                tracing::error!(%error, "gRPC request failed; the caller may repeat it");
                Status::unavailable(
                    "the payment service cannot complete this right now; repeat the request under the same key",
                )
            }
            error @ (PaymentError::Corrupt(_) | PaymentError::Encode(_)) => {
                tracing::error!(%error, "gRPC request failed");
                Status::internal("internal error")
            }
        }
    }
}

fn uuid(field: &str, raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw).map_err(|_| Status::invalid_argument(format!("{field} must be a UUID")))
}

fn money(field: &str, raw: Option<&proto::Money>) -> Result<Money, Status> {
    let raw = raw.ok_or_else(|| Status::invalid_argument(format!("{field} is required")))?;
    let currency = Currency::parse(&raw.currency)
        .map_err(|e| Status::invalid_argument(format!("{field}.currency {e}")))?;
    Money::new(raw.amount, currency)
        .map_err(|e| Status::invalid_argument(format!("{field}.amount {e}")))
}

/// An optional field: empty is absent, anything else must pass `valid`.
fn optional_text(
    field: &str,
    raw: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<Option<String>, Status> {
    match raw.trim() {
        "" => Ok(None),
        value if valid(value) => Ok(Some(value.to_owned())),
        _ => Err(Status::invalid_argument(format!("{field} is malformed"))),
    }
}

fn key(raw: &str) -> Result<String, Status> {
    IdempotencyKey::parse(raw)
        .map(IdempotencyKey::into_string)
        .map_err(|invalid| Status::invalid_argument(format!("idempotency_key {invalid}")))
}

/// A payment's status on the wire.
fn wire_status(status: PaymentStatus) -> proto::PaymentStatus {
    match status {
        PaymentStatus::Pending => proto::PaymentStatus::Pending,
        PaymentStatus::Authorized => proto::PaymentStatus::Authorized,
        PaymentStatus::Captured => proto::PaymentStatus::Captured,
        PaymentStatus::PartiallyRefunded => proto::PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded => proto::PaymentStatus::Refunded,
        PaymentStatus::Failed => proto::PaymentStatus::Failed,
        PaymentStatus::Blocked => proto::PaymentStatus::Blocked,
        PaymentStatus::RequiresReview => proto::PaymentStatus::RequiresReview,
        PaymentStatus::Unknown => proto::PaymentStatus::Unknown,
    }
}

impl From<PaymentView> for proto::Payment {
    // `status` (text) is deprecated on the wire but still sent, for peers that read only it.
    #[allow(deprecated)]
    fn from(view: PaymentView) -> Self {
        proto::Payment {
            id: view.id.to_string(),
            order_id: view.order_id.to_string(),
            user_id: view.user_id.to_string(),
            amount: Some(proto::Money {
                amount: view.amount.amount(),
                currency: view.amount.currency().to_string(),
            }),
            status: view.status.as_str().to_owned(),
            state: wire_status(view.status).into(),
            provider: view.provider,
            provider_payment_id: view.provider_payment_id.unwrap_or_default(),
            risk: Some(proto::Risk {
                score: u32::from(view.risk.score),
                decision: view.risk.decision.as_str().to_owned(),
                reasons: view
                    .risk
                    .reasons
                    .iter()
                    .map(|r| r.code().to_owned())
                    .collect(),
            }),
            refunded_amount: view.refunded_amount,
            failure_reason: view.failure_reason.unwrap_or_default(),
        }
    }
}

/// The saga acts with the service's authority, on behalf of the order's user.
fn system(user_id: Uuid) -> Caller {
    Caller {
        user_id,
        admin: true,
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentGrpc {
    async fn charge(
        &self,
        request: Request<proto::ChargeRequest>,
    ) -> Result<Response<proto::Payment>, Status> {
        let request = request.into_inner();
        let user_id = uuid("user_id", &request.user_id)?;
        let command = ChargeCommand {
            order_id: uuid("order_id", &request.order_id)?,
            amount: money("amount", request.amount.as_ref())?,
            token: CardToken::parse(&request.token)
                .map_err(|e| Status::invalid_argument(format!("token {e}")))?,
            card_bin: optional_text("card_bin", &request.card_bin, |b| {
                (6..=8).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_digit())
            })?,
            card_country: None,
            shipping_country: optional_text("shipping_country", &request.shipping_country, |c| {
                c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
            })?,
            source: PaymentSource::Order,
            idempotency_key: key(&request.idempotency_key)?,
        };
        // Charged as the user (whose history the fraud rules read), not as an admin.
        let caller = Caller {
            user_id,
            admin: false,
        };
        let outcome = self.payments.charge(caller, command).await?;
        Ok(Response::new(outcome.payment.into()))
    }

    async fn refund(
        &self,
        request: Request<proto::RefundRequest>,
    ) -> Result<Response<proto::Payment>, Status> {
        let actor = request
            .extensions()
            .get::<GrpcCaller>()
            .map(|caller| Actor::Service(caller.0.clone()));
        let context = AuditContext {
            client_ip: request.remote_addr().map(|addr| addr.ip()),
            request_id: None,
        };
        let request = request.into_inner();
        let payment_id = PaymentId::from_uuid(uuid("payment_id", &request.payment_id)?);
        let amount = request
            .amount
            .as_ref()
            .map(|m| money("amount", Some(m)))
            .transpose()?;
        let reason = if request.reason.trim().is_empty() {
            "order cancelled".to_owned()
        } else {
            request.reason
        };
        let outcome = self
            .payments
            .refund(
                system(Uuid::nil()),
                RefundCommand {
                    payment_id,
                    amount,
                    reason,
                    idempotency_key: key(&request.idempotency_key)?,
                    via_order: true,
                },
            )
            .await?;
        if !outcome.replayed {
            self.audit.record(
                &context,
                AuditEvent::new(Action::PaymentRefund, Outcome::Success)
                    .actor(actor)
                    .target(format!("payment:{payment_id}")),
            );
        }
        let mut response = Response::new(outcome.payment.into());
        if outcome.replayed {
            // The caller answers its own client as a replay too, and audits nothing again.
            response
                .metadata_mut()
                .insert(platform_proto::REPLAYED, MetadataValue::from_static("true"));
        }
        Ok(response)
    }

    async fn void(
        &self,
        request: Request<proto::VoidRequest>,
    ) -> Result<Response<proto::Payment>, Status> {
        let request = request.into_inner();
        let id = PaymentId::from_uuid(uuid("payment_id", &request.payment_id)?);
        let reason = if request.reason.trim().is_empty() {
            "the checkout ended".to_owned()
        } else {
            request.reason.chars().take(200).collect()
        };
        Ok(Response::new(self.payments.void(id, &reason).await?.into()))
    }

    async fn get_payment(
        &self,
        request: Request<proto::GetPaymentRequest>,
    ) -> Result<Response<proto::Payment>, Status> {
        let id = PaymentId::from_uuid(uuid("payment_id", &request.get_ref().payment_id)?);
        Ok(Response::new(
            self.payments.get(system(Uuid::nil()), id).await?.into(),
        ))
    }
}

/// Who may call what: charging, refunding and reading payments is the checkout saga's alone.
pub fn access() -> GrpcAccess {
    const SERVICE: &str = <PaymentServiceServer<PaymentGrpc> as tonic::server::NamedService>::NAME;
    const SAGA: &[&str] = &["order-service"];
    GrpcAccess::new()
        .allow(SERVICE, "Charge", SAGA)
        .allow(SERVICE, "Refund", SAGA)
        .allow(SERVICE, "Void", SAGA)
        .allow(SERVICE, "GetPayment", SAGA)
}

/// The gRPC side of the service, for the kit to serve with health and reflection behind its
/// guard.
pub fn api(payments: Payments, identity: ServiceIdentity, audit: Audit) -> GrpcApi {
    GrpcApi {
        authenticator: std::sync::Arc::new(identity),
        access: access(),
        routes: tonic::service::Routes::new(PaymentServiceServer::new(PaymentGrpc {
            payments,
            audit,
        })),
        file_descriptor_set: platform_proto::FILE_DESCRIPTOR_SET,
        services: vec![<PaymentServiceServer<PaymentGrpc> as tonic::server::NamedService>::NAME],
    }
}
