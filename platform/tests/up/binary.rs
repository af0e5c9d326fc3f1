//! The real `platform` binary: serving and stopping on a signal, `migrate`, and the
//! dead-letter commands.

use std::process::Command;
use std::time::Duration;

use platform_testing::TestApp;

use crate::journeys::main_journey;
use crate::spawn_platform;

/// The real binary: starts, prints where it listens, serves, and exits 0 on Ctrl-C (SIGINT).
#[test]
fn the_binary_starts_serves_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, gateway, rest) = spawn_platform(dir.path(), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(main_journey(&TestApp::new(gateway)));

    let status = platform_testing::process::stop(&mut child, "INT", Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let rest = rest.join().unwrap();
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
    assert!(
        dir.path().join("user-service.db").exists(),
        "embedded SQLite in DATA_DIR"
    );
}

#[test]
fn migrate_applies_every_services_migrations_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_platform"))
        .arg("migrate")
        .env_clear()
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("user-service: migrations applied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("event-store: migrations applied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("product-service: migrations applied"),
        "{stdout}"
    );
    assert!(dir.path().join("product-service.db").exists());
    assert!(
        stdout.contains("payment-service: migrations applied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("order-service: migrations applied"),
        "{stdout}"
    );
    assert!(dir.path().join("order-service.db").exists());
    assert!(
        stdout.contains("notification-service: migrations applied"),
        "{stdout}"
    );
    assert!(dir.path().join("notification-service.db").exists());
    assert!(dir.path().join("user-service.db").exists());
    assert!(dir.path().join("event-store.db").exists());
    // Applying them again is a no-op.
    let again = Command::new(env!("CARGO_BIN_EXE_platform"))
        .arg("migrate")
        .env_clear()
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(again.status.success());
}

fn platform_command(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_platform"))
        .args(args)
        .env_clear()
        .env("DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn dead_letters_are_listed_and_replayed_from_the_command_line() {
    use platform_events::transport::embedded::EmbeddedTransport;
    use platform_events::{Envelope, Transport};

    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let families = vec!["user".to_owned()];
    let event = Envelope::new(
        "user-service",
        &platform_events::catalogue::UserDeleted {
            user_id: uuid::Uuid::now_v7(),
        },
    )
    .unwrap();
    runtime.block_on(async {
        let bus = EmbeddedTransport::open(dir.path(), 1000).await.unwrap();
        bus.subscribe("mailer", &families).await.unwrap();
        bus.publish(&event).await.unwrap();
        let delivery = bus
            .read("mailer", "c", &families, 1, Duration::ZERO)
            .await
            .unwrap()
            .remove(0);
        bus.dead_letter("mailer", &delivery, "mailbox full", 5)
            .await
            .unwrap();
    });

    let listed = platform_command(dir.path(), &["events", "dead-letters"]);
    assert!(listed.status.success(), "{listed:?}");
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        table.contains("mailer")
            && table.contains("user.deleted")
            && table.contains("mailbox full"),
        "{table}"
    );
    let id = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let missing = platform_command(dir.path(), &["events", "replay", "--id", "999999"]);
    assert!(!missing.status.success());
    let replayed = platform_command(dir.path(), &["events", "replay", "--id", &id]);
    assert!(replayed.status.success(), "{replayed:?}");
    assert!(String::from_utf8_lossy(&replayed.stdout).contains("replayed 1 dead letter"));
    let empty = platform_command(dir.path(), &["events", "dead-letters"]);
    assert!(String::from_utf8_lossy(&empty.stdout).contains("no dead letters"));
    let none_chosen = platform_command(dir.path(), &["events", "replay"]);
    assert_eq!(
        none_chosen.status.code(),
        Some(2),
        "one of --id, --all, --type is required"
    );

    runtime.block_on(async {
        let bus = EmbeddedTransport::open(dir.path(), 1000).await.unwrap();
        let again = bus
            .read("mailer", "c", &families, 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].envelope.as_ref().unwrap().id, event.id);
    });
}
