//! The multi-call binary every container image runs: `serve <service>` runs one part alone on
//! unprefixed configuration, `migrate <service>` migrates one, `probe` is the health check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn platform() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_platform"));
    command.env_clear().env("RUST_LOG", "warn");
    command
}

fn probe(url: &str) -> std::process::Output {
    platform()
        .args(["probe", url, "--timeout", "2"])
        .output()
        .unwrap()
}

/// As in its image: the part named by PLATFORM_SERVICE, checked by `probe` on its own PORT.
#[test]
fn serve_runs_one_service_alone_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics = free_port();
    let mut child = platform()
        .arg("serve")
        .env("PLATFORM_SERVICE", "event-store")
        .env("PORT", port.to_string())
        .env("METRICS_PORT", metrics.to_string())
        .env("DATA_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/health");
    let own_port = || {
        platform()
            .arg("probe")
            .env("PORT", port.to_string())
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !own_port().status.success() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited before it was healthy"
        );
        assert!(
            Instant::now() < deadline,
            "event-store never became healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Only this part runs, with its own database file and no other service's port.
    assert!(dir.path().join("event-store.db").exists());
    assert!(!dir.path().join("user-service.db").exists());
    assert!(
        probe(&format!("http://127.0.0.1:{metrics}/metrics"))
            .status
            .success()
    );
    // A 404 is a failed probe, with the status named.
    let missing = probe(&format!("http://127.0.0.1:{port}/no-such-path"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("status 404"));

    let status = platform_testing::process::stop(&mut child, "TERM", Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    // Nothing listens any more: the probe fails and says where it tried.
    let gone = probe(&health);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains(&format!("127.0.0.1:{port}")));
    assert_eq!(own_port().status.code(), Some(1));
}

#[test]
fn probe_without_a_url_or_port_is_a_usage_error() {
    let output = platform().arg("probe").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PORT"));
}

#[test]
fn serve_without_a_service_names_the_variable() {
    let output = platform().arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .to_lowercase()
            .contains("service")
    );
}

#[test]
fn migrate_one_service_touches_only_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let output = platform()
        .args(["migrate", "order-service"])
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(dir.path().join("order-service.db").exists());
    assert!(!dir.path().join("user-service.db").exists());
}

#[test]
fn an_unknown_service_is_refused_with_the_list_of_names() {
    for args in [["serve", "billing-service"], ["migrate", "nope"]] {
        let output = platform().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("api-gateway") && stderr.contains("notification-service"),
            "{stderr}"
        );
    }
}

#[test]
fn bad_configuration_of_one_part_exits_2_naming_the_variable() {
    let output = platform()
        .args(["serve", "user-service"])
        .env("PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("PORT"));
}
