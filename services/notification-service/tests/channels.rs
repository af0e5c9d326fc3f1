//! The delivery channels against fake providers: an SMTP server spoken to over a real socket,
//! and Twilio and FCM stand-ins (axum) that check each request the way the real APIs would
//! read it and answer with scripted statuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fakes.rs"]
mod fakes;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::Method;
use base64::Engine;
use fakes::{closed_port, fake_api, fake_smtp, header, only_request};
use notification_service::address::{DeviceToken, EmailAddress, PhoneNumber};
use notification_service::channels::{
    Channel, ChannelsConfig, FcmConfig, FcmSender, LogSender, Message, Recipient, SendError,
    Sender, Senders, SetupError, SmtpConfig, SmtpSender, TwilioConfig, TwilioSender,
};
use platform_config::Env;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// SMTP

fn smtp_sender(port: u16) -> SmtpSender {
    let mut env = Env::from_pairs([
        ("SMTP_URL", format!("smtp://127.0.0.1:{port}")),
        ("SMTP_FROM", "Shop <no-reply@Example.com>".to_owned()),
        ("NOTIFY_TIMEOUT", "5s".to_owned()),
    ]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    SmtpSender::new(&config.smtp.unwrap()).unwrap()
}

fn email_to(address: &str) -> Message {
    Message::new(
        Recipient::Email(EmailAddress::parse(address).unwrap()),
        "Your order has shipped",
        "Order 1042 is on its way.",
    )
}

#[tokio::test]
async fn smtp_delivers_text_and_html() {
    let (address, seen) = fake_smtp("250 2.1.5 Ok\r\n").await;
    let sender = smtp_sender(address.port());
    assert_eq!(sender.channel(), Channel::Email);
    assert_eq!(sender.name(), "smtp");

    let message = email_to("Jane@Example.org").with_html("<p>Order <b>1042</b> is on its way.</p>");
    let delivery = sender.send(&message).await.unwrap();
    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("2.0.0 Ok: queued as FAKE123")
    );

    let transactions = seen.lock().unwrap().clone();
    assert_eq!(transactions.len(), 1);
    let sent = &transactions[0];
    assert_eq!(sent.mail_from, "MAIL FROM:<no-reply@example.com>");
    assert_eq!(sent.rcpt_to, ["RCPT TO:<Jane@example.org>"]);
    let data = &sent.data;
    assert!(
        data.contains("From: Shop <no-reply@example.com>\r\n"),
        "{data}"
    );
    assert!(data.contains("To: Jane@example.org\r\n"), "{data}");
    assert!(
        data.contains("Subject: Your order has shipped\r\n"),
        "{data}"
    );
    assert!(
        data.contains(&format!("Message-ID: <{}@example.com>\r\n", message.id)),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: multipart/alternative;"),
        "{data}"
    );
    let text_part = data.find("Content-Type: text/plain").expect("a text part");
    let html_part = data.find("Content-Type: text/html").expect("an HTML part");
    // The HTML alternative comes last: clients show the last part they can render.
    assert!(text_part < html_part, "{data}");
    assert!(
        data[text_part..html_part].contains("Order 1042 is on its way."),
        "{data}"
    );
    assert!(
        data[html_part..].contains("<p>Order <b>1042</b> is on its way.</p>"),
        "{data}"
    );

    // A second message reuses the pooled connection and goes out as plain text only.
    sender.send(&email_to("bob@example.net")).await.unwrap();
    let transactions = seen.lock().unwrap().clone();
    assert_eq!(transactions.len(), 2);
    let data = &transactions[1].data;
    assert_eq!(transactions[1].rcpt_to, ["RCPT TO:<bob@example.net>"]);
    assert!(data.contains("Content-Type: text/plain"), "{data}");
    assert!(!data.contains("multipart"), "{data}");
    assert!(!data.contains("text/html"), "{data}");
    assert!(data.contains("Order 1042 is on its way."), "{data}");
}

#[tokio::test]
async fn smtp_5xx_is_permanent() {
    let (address, seen) = fake_smtp("550 5.1.1 <nobody@example.org>: user unknown\r\n").await;
    let err = smtp_sender(address.port())
        .send(&email_to("nobody@example.org"))
        .await
        .unwrap_err();
    match err {
        SendError::Permanent(reason) => assert!(reason.contains("550"), "{reason}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn smtp_4xx_is_transient() {
    let (address, _) = fake_smtp("451 4.7.1 Greylisted, try again later\r\n").await;
    let err = smtp_sender(address.port())
        .send(&email_to("jane@example.org"))
        .await
        .unwrap_err();
    match err {
        SendError::Transient(reason) => assert!(reason.contains("451"), "{reason}"),
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn smtp_nothing_listening_is_transient() {
    let err = smtp_sender(closed_port().await)
        .send(&email_to("jane@example.org"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn senders_refuse_other_channels() {
    let (address, seen) = fake_smtp("250 Ok\r\n").await;
    let sms = Message::new(
        Recipient::Sms(PhoneNumber::parse("+15551234567").unwrap()),
        "",
        "hi",
    );
    let err = smtp_sender(address.port()).send(&sms).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    assert!(seen.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// HTTP providers

// Twilio

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-123";

fn twilio_sender(base_url: &str) -> TwilioSender {
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

fn sms() -> Message {
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

// FCM

const PROJECT: &str = "shop-prod-1234";
const ACCESS_TOKEN: &str = "ya29.fcm-access-token";

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

fn push() -> Message {
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

// ---------------------------------------------------------------------------------------------
// Log sink and configuration

#[tokio::test]
async fn log_sender_records_what_it_swallowed() {
    let sender = LogSender::new(Channel::Push);
    assert_eq!((sender.channel(), sender.name()), (Channel::Push, "log"));
    let message = push();
    let delivery = sender.send(&message).await.unwrap();
    assert_eq!(
        delivery.provider_message_id,
        Some(format!("log-{}", message.id))
    );
    assert_eq!(sender.sent(), [message]);
}

#[tokio::test]
async fn unconfigured_channels_fall_back_to_the_log() {
    let mut env = Env::from_pairs([("UNRELATED", "1")]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    assert!(config.smtp.is_none() && config.twilio.is_none() && config.fcm.is_none());
    let senders = config.build().unwrap();
    assert_eq!(
        senders.log_only(),
        [Channel::Email, Channel::Sms, Channel::Push]
    );
    for channel in [Channel::Email, Channel::Sms, Channel::Push] {
        assert_eq!(senders.for_channel(channel).unwrap().name(), "log");
    }
    let email = email_to("jane@example.org");
    let sms = sms();
    senders.send(&email).await.unwrap();
    senders.send(&sms).await.unwrap();
    assert_eq!(senders.logged(), [email, sms]);
}

#[tokio::test]
async fn configured_channels_use_their_providers() {
    let mut env = Env::from_pairs([
        (
            "SMTP_URL",
            "smtp://user:pw@mail.example.com:587?tls=required",
        ),
        ("SMTP_FROM", "no-reply@example.com"),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("TWILIO_FROM", "+15550001111"),
    ]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    let senders = config.build().unwrap();
    assert_eq!(senders.email().name(), "smtp");
    assert_eq!(senders.sms().name(), "twilio");
    assert_eq!(senders.log_only(), [Channel::Push]);
    let timeout = config.twilio.unwrap().timeout;
    assert_eq!(timeout, Duration::from_secs(10));
}

#[test]
fn partial_configuration_is_reported() {
    let mut env = Env::from_pairs([
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("SMTP_URL", "smtp://mail.example.com"),
        ("FCM_ACCESS_TOKEN", ACCESS_TOKEN),
        ("NOTIFY_TIMEOUT", "soon"),
    ]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(config.smtp.is_none() && config.twilio.is_none() && config.fcm.is_none());
    let mut reported: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
    reported.sort();
    assert_eq!(
        reported,
        [
            "FCM_PROJECT_ID",
            "NOTIFY_TIMEOUT",
            "SMTP_FROM",
            "TWILIO_AUTH_TOKEN",
            "TWILIO_FROM"
        ]
    );

    // Malformed values are reported once, as malformed rather than missing.
    let mut env = Env::from_pairs([
        ("TWILIO_ACCOUNT_SID", "../../admin"),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("TWILIO_FROM", "555-1234"),
        ("SMTP_FROM", "Shop"),
    ]);
    ChannelsConfig::from_env(&mut env);
    let mut reported: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
    reported.sort();
    assert_eq!(
        reported,
        ["SMTP_FROM", "SMTP_URL", "TWILIO_ACCOUNT_SID", "TWILIO_FROM"]
    );
}

#[tokio::test]
async fn secrets_never_show() {
    let smtp_password = "smtp-hunter2";
    let smtp_url = format!("smtp://mailer:{smtp_password}@mail.example.com:587?tls=required");
    let mut env = Env::from_pairs([
        ("SMTP_URL", smtp_url.as_str()),
        ("SMTP_FROM", "Shop <no-reply@example.com>"),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("TWILIO_FROM", "+15550001111"),
        ("FCM_PROJECT_ID", PROJECT),
        ("FCM_ACCESS_TOKEN", ACCESS_TOKEN),
    ]);
    let config = ChannelsConfig::from_env(&mut env);
    assert!(env.issues().is_empty(), "{:?}", env.issues());
    let smtp = config.smtp.clone().unwrap();
    let shown = [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", config.build().unwrap()),
        format!("{:?}", SmtpSender::new(&smtp).unwrap()),
        format!(
            "{:?}",
            TwilioSender::new(config.twilio.clone().unwrap()).unwrap()
        ),
        format!("{:?}", FcmSender::new(config.fcm.clone().unwrap()).unwrap()),
        smtp.server(),
    ];
    for text in &shown {
        for secret in [smtp_password, AUTH_TOKEN, ACCESS_TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
    assert!(shown[0].contains("mail.example.com:587"), "{}", shown[0]);

    // A malformed URL is reported without quoting it.
    let mut env = Env::from_pairs([
        (
            "SMTP_URL",
            format!("smtp://mailer:{smtp_password}@mail.example.com?tls=always"),
        ),
        ("SMTP_FROM", "no-reply@example.com".to_owned()),
    ]);
    assert!(ChannelsConfig::from_env(&mut env).smtp.is_none());
    let message = env.finish().unwrap_err().to_string();
    assert!(message.contains("SMTP_URL"), "{message}");
    assert!(!message.contains(smtp_password), "{message}");
}

#[test]
fn senders_are_usable_without_configuration() {
    // The embedded default: nothing to configure, nothing to fail.
    let senders = Senders::default();
    assert_eq!(senders.log_only().len(), 3);
    let config = SmtpConfig::new(
        "smtp://localhost".to_owned().into(),
        EmailAddress::parse("a@b.co").unwrap(),
    );
    // lettre's pool needs a runtime; outside one this is an error, not a panic.
    assert!(matches!(
        SmtpSender::new(&config),
        Err(SetupError::NoRuntime)
    ));
    let _ = TwilioConfig::new(
        ACCOUNT_SID,
        AUTH_TOKEN.to_owned().into(),
        notification_service::channels::TwilioFrom::Number(
            PhoneNumber::parse("+15550001111").unwrap(),
        ),
    );
    let _ = FcmConfig::new(PROJECT, ACCESS_TOKEN.to_owned().into());
}
