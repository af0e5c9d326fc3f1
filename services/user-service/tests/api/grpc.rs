//! The internal gRPC API, with the standard health and reflection services.

use platform_proto::user::v1::user_service_client::UserServiceClient;
use platform_proto::user::v1::{GetUserRequest, Role};
use platform_testing::Backend;
use tonic::Code;

use crate::helpers::{JWT_SECRET, spawn_app, spawn_with};

async fn get_user_returns_the_user_or_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = app.new_user().await;
    let mut client = UserServiceClient::new(platform_testing::grpc::as_service(
        app.grpc,
        "order-service",
        "user-service",
        JWT_SECRET,
    ));
    let found = client
        .get_user(GetUserRequest {
            id: user["id"].as_str().unwrap().to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.id, user["id"].as_str().unwrap());
    assert_eq!(found.email, user["email"].as_str().unwrap());
    assert_eq!(found.role, Role::User as i32);
    let created = found.created_at.unwrap();
    let expected =
        chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(created.seconds, expected.timestamp());

    let missing = client
        .get_user(GetUserRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = client
        .get_user(GetUserRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}

async fn get_user_is_only_for_the_services_that_act_for_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = app.new_user().await;
    let request = || GetUserRequest {
        id: user["id"].as_str().unwrap().to_owned(),
    };
    let caller = |service| {
        UserServiceClient::new(platform_testing::grpc::as_service(
            app.grpc,
            service,
            "user-service",
            JWT_SECRET,
        ))
    };
    let found = caller("notification-service").get_user(request()).await;
    assert_eq!(
        found.unwrap().into_inner().email,
        user["email"].as_str().unwrap()
    );
    let denied = caller("payment-service")
        .get_user(request())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = UserServiceClient::new(platform_testing::grpc::anonymous(app.grpc))
        .get_user(request())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

platform_testing::backend_tests!(
    get_user_returns_the_user_or_not_found,
    get_user_is_only_for_the_services_that_act_for_users,
);

async fn list_services(channel: tonic::transport::Channel) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await?
        .into_inner();
    let response = responses.message().await?.unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

#[tokio::test]
async fn reflection_is_off_unless_asked_for() {
    let app = spawn_app(Backend::Sqlite).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = list_services(channel).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let app = spawn_with(Backend::Sqlite, |config| {
        config.server.grpc_reflection = true;
    })
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();

    for service in ["", "platform.user.v1.UserService"] {
        let anyone = platform_testing::grpc::anonymous(app.grpc);
        assert!(
            platform_testing::grpc::serving(anyone, service).await,
            "{service}"
        );
    }

    let names = list_services(channel).await.unwrap();
    assert!(
        names.contains(&"platform.user.v1.UserService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}
