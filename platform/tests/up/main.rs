//! `platform up` and `platform migrate`, in-process and as the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod event_store;
mod in_process;
mod journeys;
mod listeners;
mod trace;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use platform_testing::{Backend, TestDatabase};

const ADMIN_EMAIL: &str = "root@example.com";
const ADMIN_PASSWORD: &str = "root password 123";

/// What every platform these tests start has in common, in-process or as the binary: every
/// listener on a free port, the administrator to create, and cheap password hashing.
const TEST_ENV: [(&str, &str); 16] = [
    ("PORT", "0"),
    ("USER_SERVICE_PORT", "0"),
    ("USER_SERVICE_GRPC_PORT", "0"),
    ("PRODUCT_SERVICE_PORT", "0"),
    ("PRODUCT_SERVICE_GRPC_PORT", "0"),
    ("PAYMENT_SERVICE_PORT", "0"),
    ("PAYMENT_SERVICE_GRPC_PORT", "0"),
    ("ORDER_SERVICE_PORT", "0"),
    ("ORDER_SERVICE_GRPC_PORT", "0"),
    ("NOTIFICATION_SERVICE_PORT", "0"),
    ("EVENT_STORE_PORT", "0"),
    // The event checks poll; the default 100 requests a minute would throttle them.
    ("RATE_LIMIT_PER_MINUTE", "100000"),
    ("ADMIN_EMAIL", ADMIN_EMAIL),
    ("ADMIN_PASSWORD", ADMIN_PASSWORD),
    ("ARGON2_MEMORY_KIB", "1024"),
    ("ARGON2_ITERATIONS", "1"),
];

/// The environment of an in-process `platform up` on `db`.
fn env_for(db: &TestDatabase) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = TEST_ENV
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    vars.push(("DATA_DIR".to_owned(), db.dir().display().to_string()));
    if db.backend == Backend::Postgres {
        use platform_config::ExposeSecret;
        // One database for everything: platform up gives each service a schema of its own.
        let url = db.config.url.as_ref().unwrap().expose_secret().to_owned();
        vars.push(("DATABASE_URL".to_owned(), url));
    }
    vars
}

/// Starts the `platform` binary on free ports with `extra` variables; returns the child, the
/// gateway's base URL from the banner, and the rest of its output once it has stopped.
fn spawn_platform(
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    std::thread::JoinHandle<Vec<String>>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_platform"))
        .env_clear()
        .envs(TEST_ENV)
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .env("DATA_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut gateway = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("api-gateway") {
            gateway = Some(rest.trim().to_owned());
        }
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    // Keep reading: a closed pipe would fail the platform's last words ("stopped").
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
    (child, gateway.expect("the banner names the gateway"), rest)
}
