//! FCM (push): the HTTP v1 message shape, its error details and timeouts; and what any HTTP
//! provider does when nothing listens.

use std::time::{Duration, Instant};

use axum::http::Method;
use notification_service::address::DeviceToken;
use notification_service::channels::{
    Channel, ChannelsConfig, FcmSender, Message, Recipient, SendError, Sender,
};
use platform_config::Env;
use serde_json::{Value, json};

use crate::fakes::{closed_port, fake_api, header, only_request};
use crate::twilio::{sms, twilio_sender};

pub(super) const PROJECT: &str = "shop-prod-1234";
pub(super) const ACCESS_TOKEN: &str = "ya29.fcm-access-token";

fn fcm_sender(base_url: &str, timeout: &str) -> FcmSender {
    let mut env = Env::from_pairs([
        ("FCM_PROJECT_ID", PROJECT),
        ("FCM_ACCESS_TOKEN", ACCESS_TOKEN),
        ("FCM_BASE_URL", base_url),
        ("NOTIFY_TIMEOUT", timeout),
    ]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    FcmSender::new(config.fcm.unwrap()).unwrap()
}

const DEVICE: &str = "cQ3x-Fk9T0e:APA91bH_z.8-abc";

pub(super) fn push() -> Message {
    Message::new(
        Recipient::Push(DeviceToken::parse(DEVICE).unwrap()),
        "Shipped",
        "Order 1042 is on its way.",
    )
    .with_data(json!({"order_id": "1042", "items": 3, "gift": false, "none": null}))
}

#[tokio::test]
async fn fcm_sends_the_v1_message_shape() {
    let name = format!("projects/{PROJECT}/messages/0:1500415314455276%31bd1c9631bd1c96");
    let (base, seen) = fake_api(200, json!({ "name": name }), Duration::ZERO).await;
    let sender = fcm_sender(&base, "10s");
    assert_eq!((sender.channel(), sender.name()), (Channel::Push, "fcm"));
    let delivery = sender.send(&push()).await.unwrap();
    assert_eq!(delivery.provider_message_id.as_deref(), Some(name.as_str()));

    let request = only_request(&seen);
    assert_eq!(request.method, Method::POST);
    assert_eq!(
        request.path,
        format!("/v1/projects/{PROJECT}/messages:send")
    );
    assert_eq!(
        header(&request, "authorization"),
        format!("Bearer {ACCESS_TOKEN}")
    );
    assert_eq!(header(&request, "content-type"), "application/json");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({"message": {
            "token": DEVICE,
            "notification": {"title": "Shipped", "body": "Order 1042 is on its way."},
            "data": {"order_id": "1042", "items": "3", "gift": "false"}
        }})
    );
}

#[tokio::test]
async fn fcm_unregistered_is_permanent() {
    let (base, _) = fake_api(
        404,
        json!({"error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED"
            }]
        }}),
        Duration::ZERO,
    )
    .await;
    let err = fcm_sender(&base, "10s").send(&push()).await.unwrap_err();
    match err {
        SendError::Permanent(reason) => assert!(reason.contains("UNREGISTERED"), "{reason}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn fcm_invalid_argument_is_permanent() {
    let (base, _) = fake_api(
        400,
        json!({"error": {"code": 400, "message": "Invalid registration token", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                         "errorCode": "INVALID_ARGUMENT"}]}}),
        Duration::ZERO,
    )
    .await;
    let err = fcm_sender(&base, "10s").send(&push()).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent(r) if r.contains("INVALID_ARGUMENT")),
        "{err:?}"
    );
}

#[tokio::test]
async fn fcm_500_is_transient() {
    let (base, _) = fake_api(
        500,
        json!({"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}),
        Duration::ZERO,
    )
    .await;
    let err = fcm_sender(&base, "10s").send(&push()).await.unwrap_err();
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn fcm_timeout_is_transient() {
    let (base, seen) = fake_api(200, json!({"name": "late"}), Duration::from_secs(3)).await;
    let started = Instant::now();
    let err = fcm_sender(&base, "200ms").send(&push()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match err {
        SendError::Transient(reason) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected a transient failure, got {other:?}"),
    }
    // It did reach the server: the timeout, not a connection failure, ended it.
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn http_nothing_listening_is_transient() {
    let base = format!("http://127.0.0.1:{}", closed_port().await);
    let err = fcm_sender(&base, "2s").send(&push()).await.unwrap_err();
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
    let err = twilio_sender(&base).send(&sms()).await.unwrap_err();
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
}
