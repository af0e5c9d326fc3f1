//! Twilio (SMS): the form, credentials and sender the real API expects, and its error codes.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use notification_service::address::PhoneNumber;
use notification_service::channels::{
    Channel, ChannelsConfig, Message, Recipient, SendError, Sender, TwilioSender,
};
use platform_config::Env;
use serde_json::json;

use crate::fakes::{fake_api, header, only_request};

pub(super) const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub(super) const AUTH_TOKEN: &str = "twilio-auth-token-123";

pub(super) fn twilio_sender(base_url: &str) -> TwilioSender {
    let mut env = Env::from_pairs([
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("TWILIO_FROM", "+1 (555) 000-1111"),
        ("TWILIO_BASE_URL", base_url),
    ]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    TwilioSender::new(config.twilio.unwrap()).unwrap()
}

pub(super) fn sms() -> Message {
    Message::new(
        Recipient::Sms(PhoneNumber::parse("+49 151 2345-6789").unwrap()),
        "ignored",
        "Your code is 123456 & expires in 10 min",
    )
}

#[tokio::test]
async fn twilio_sends_a_form_with_basic_auth() {
    let (base, seen) = fake_api(
        201,
        json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}),
        Duration::ZERO,
    )
    .await;
    let sender = twilio_sender(&format!("{base}/"));
    assert_eq!((sender.channel(), sender.name()), (Channel::Sms, "twilio"));
    let delivery = sender.send(&sms()).await.unwrap();
    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("SM0123456789abcdef0123456789abcdef")
    );

    let request = only_request(&seen);
    assert_eq!(request.method, Method::POST);
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    let expected_auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    assert_eq!(
        header(&request, "authorization"),
        format!("Basic {expected_auth}")
    );
    assert_eq!(
        header(&request, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let form: HashMap<String, String> = url_decode(&request.body);
    assert_eq!(
        form,
        HashMap::from([
            ("To".to_owned(), "+4915123456789".to_owned()),
            ("From".to_owned(), "+15550001111".to_owned()),
            (
                "Body".to_owned(),
                "Your code is 123456 & expires in 10 min".to_owned()
            ),
        ])
    );
}

/// `application/x-www-form-urlencoded` → map, decoded by the `url` crate's form parser (as a
/// query string) rather than by the code that encoded it.
pub fn url_decode(body: &[u8]) -> HashMap<String, String> {
    let text = std::str::from_utf8(body).unwrap();
    reqwest::Url::parse(&format!("http://form.test/?{text}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn twilio_400_is_permanent_with_twilio_code() {
    let (base, _) = fake_api(
        400,
        json!({
            "code": 21211,
            "message": "The 'To' number +4915123456789 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400
        }),
        Duration::ZERO,
    )
    .await;
    let err = twilio_sender(&base).send(&sms()).await.unwrap_err();
    match err {
        SendError::Permanent(reason) => {
            assert!(reason.contains("21211"), "{reason}");
            assert!(reason.contains("is not a valid phone number"), "{reason}");
            assert!(!reason.contains(AUTH_TOKEN), "{reason}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn twilio_503_and_429_are_transient() {
    for status in [503, 429] {
        let (base, _) = fake_api(
            status,
            json!({"code": 20429, "message": "Too Many Requests", "status": status}),
            Duration::ZERO,
        )
        .await;
        let err = twilio_sender(&base).send(&sms()).await.unwrap_err();
        match err {
            SendError::Transient(reason) => {
                assert!(reason.contains(&status.to_string()), "{reason}")
            }
            other => panic!("{status}: expected a transient failure, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn twilio_can_send_through_a_messaging_service() {
    let (base, seen) = fake_api(201, json!({"sid": "SM1"}), Duration::ZERO).await;
    let service = "MG0123456789abcdef0123456789abcdef";
    let mut env = Env::from_pairs([
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("TWILIO_FROM", service),
        ("TWILIO_BASE_URL", base.as_str()),
    ]);
    let config = ChannelsConfig::from_env(&mut env).twilio.unwrap();
    TwilioSender::new(config)
        .unwrap()
        .send(&sms())
        .await
        .unwrap();
    let form = url_decode(&only_request(&seen).body);
    assert_eq!(
        form.get("MessagingServiceSid").map(String::as_str),
        Some(service)
    );
    assert!(!form.contains_key("From"));
}
