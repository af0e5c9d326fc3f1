//! The log sink every unconfigured channel falls back to, and the configuration that picks
//! each channel's sender: partial or malformed settings reported, secrets never shown.

use std::time::Duration;

use notification_service::address::{EmailAddress, PhoneNumber};
use notification_service::channels::{
    Channel, ChannelsConfig, FcmConfig, FcmSender, LogSender, Sender, Senders, SetupError,
    SmtpConfig, SmtpSender, TwilioConfig, TwilioSender,
};
use platform_config::Env;

use crate::fcm::{ACCESS_TOKEN, PROJECT, push};
use crate::smtp::email_to;
use crate::twilio::{ACCOUNT_SID, AUTH_TOKEN, sms};

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
