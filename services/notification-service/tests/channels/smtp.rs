//! SMTP: a real conversation with a fake server, and how its replies map to permanent and
//! transient failures.

use notification_service::address::{EmailAddress, PhoneNumber};
use notification_service::channels::{
    Channel, ChannelsConfig, Message, Recipient, SendError, Sender, SmtpSender,
};
use platform_config::Env;

use crate::fakes::{closed_port, fake_smtp};

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

pub(super) fn email_to(address: &str) -> Message {
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
