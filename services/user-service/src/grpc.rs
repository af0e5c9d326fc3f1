//! The gRPC API (`proto/user.proto`) other services call. It is internal: it listens on its
//! own port, which is never exposed through the gateway, and every call carries a service
//! credential the kit checks against [`access`].

use platform_auth::service_identity::ServiceIdentity;
use platform_http::{GrpcAccess, GrpcApi};
use platform_proto::user::v1::user_service_server::{UserService, UserServiceServer};
use platform_proto::user::v1::{GetUserRequest, Role as ProtoRole, User as ProtoUser};
use tonic::{Request, Response, Status};

use crate::domain::{Role, User, UserId};
use crate::service::{UserError, Users};

/// The `UserService` gRPC server.
pub struct UserGrpc {
    users: Users,
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl From<User> for ProtoUser {
    fn from(user: User) -> Self {
        ProtoUser {
            id: user.id.to_string(),
            email: user.email.to_string(),
            name: user.name.to_string(),
            role: match user.role {
                Role::User => ProtoRole::User,
                Role::Admin => ProtoRole::Admin,
            } as i32,
            created_at: Some(timestamp(user.created_at)),
            updated_at: Some(timestamp(user.updated_at)),
        }
    }
}

impl From<UserError> for Status {
    fn from(error: UserError) -> Self {
        match error {
            UserError::NotFound => Status::not_found("no such user"),
            error => {
                tracing::error!(%error, "gRPC request failed");
                Status::internal("internal error")
            }
        }
    }
}

#[tonic::async_trait]
impl UserService for UserGrpc {
    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<ProtoUser>, Status> {
        let id = UserId::parse(&request.get_ref().id)
            .map_err(|_| Status::invalid_argument("id must be a UUID"))?;
        Ok(Response::new(self.users.find(id).await?.into()))
    }
}

/// Who may call what. A user's record (email, role) is personal data: only the services that
/// act for users (the order service, the notification service) may read it, though neither
/// needs to today (each learns what it needs from events).
pub fn access() -> GrpcAccess {
    const SERVICE: &str = <UserServiceServer<UserGrpc> as tonic::server::NamedService>::NAME;
    GrpcAccess::new().allow(
        SERVICE,
        "GetUser",
        &["order-service", "notification-service"],
    )
}

/// The gRPC side of the service, for the kit to serve with health and reflection behind its
/// guard.
pub fn api(users: Users, identity: ServiceIdentity) -> GrpcApi {
    GrpcApi {
        routes: tonic::service::Routes::new(UserServiceServer::new(UserGrpc { users })),
        file_descriptor_set: platform_proto::FILE_DESCRIPTOR_SET,
        services: vec![<UserServiceServer<UserGrpc> as tonic::server::NamedService>::NAME],
        authenticator: std::sync::Arc::new(identity),
        access: access(),
    }
}
