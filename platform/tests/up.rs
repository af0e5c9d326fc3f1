//! `platform up` and `platform migrate`, in-process and as the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use platform_config::Env;
use platform_http::CancellationToken;
use platform_testing::{Backend, TestDatabase};
use serde_json::{Value, json};

/// Register, log in and read one's own account through the gateway at `base`.
async fn main_journey(base: &str) {
    let client = reqwest::Client::new();
    let email = format!("journey-{}@example.com", uuid::Uuid::new_v4().simple());
    let response = client
        .post(format!("{base}/api/v1/users"))
        .json(&json!({"email": email, "password": "a good password", "name": "Journey"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let tokens: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "a good password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email.as_str());
}

fn env_for(db: &TestDatabase) -> Vec<(String, String)> {
    let mut vars = vec![
        ("PORT".to_owned(), "0".to_owned()),
        ("USER_SERVICE_PORT".to_owned(), "0".to_owned()),
        ("USER_SERVICE_GRPC_PORT".to_owned(), "0".to_owned()),
        ("DATA_DIR".to_owned(), db.dir().display().to_string()),
        ("ARGON2_MEMORY_KIB".to_owned(), "1024".to_owned()),
        ("ARGON2_ITERATIONS".to_owned(), "1".to_owned()),
    ];
    if db.backend == Backend::Postgres {
        use platform_config::ExposeSecret;
        let url = db.config.url.as_ref().unwrap().expose_secret().to_owned();
        vars.push(("DATABASE_URL".to_owned(), url));
    }
    vars
}

async fn the_main_journey_works_through_platform_up(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let stop = CancellationToken::new();
    let running = platform::up(&Env::from_pairs(env_for(&db)), stop.clone())
        .await
        .unwrap();
    let gateway = running.gateway().unwrap();
    let banner = platform::banner(&running);
    assert!(
        banner.contains(&format!("api-gateway    http://{gateway}")),
        "{banner}"
    );
    assert!(banner.contains("user-service"), "{banner}");
    // Internal services listen on loopback only.
    let users = running
        .endpoints
        .iter()
        .find(|e| e.service == "user-service")
        .unwrap();
    assert!(users.http.ip().is_loopback());
    assert!(users.grpc.unwrap().ip().is_loopback());

    main_journey(&format!("http://{gateway}")).await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("everything stops")
        .unwrap();
}

platform_testing::backend_tests!(the_main_journey_works_through_platform_up);

#[tokio::test]
async fn configuration_problems_of_every_service_are_reported_together() {
    let env = Env::from_pairs([
        ("USER_SERVICE_PORT", "http"),
        ("UPSTREAM_TIMEOUT", "later"),
        ("DB_MAX_CONNECTIONS", "-1"),
    ]);
    let error = match platform::up(&env, CancellationToken::new()).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("bad configuration must not start"),
    };
    for variable in [
        "USER_SERVICE_PORT",
        "UPSTREAM_TIMEOUT",
        "DB_MAX_CONNECTIONS",
    ] {
        assert!(error.contains(variable), "{variable} missing from {error}");
    }
}

#[test]
fn a_bare_port_sets_the_gateway_port_only() {
    // If PORT reached the user service too, both would try to bind one port and start-up fails.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let env = Env::from_pairs([
            ("PORT", port.to_string()),
            ("HOST", "127.0.0.1".to_owned()),
            ("USER_SERVICE_PORT", "0".to_owned()),
            ("USER_SERVICE_GRPC_PORT", "0".to_owned()),
            ("DATA_DIR", dir.path().display().to_string()),
        ]);
        let stop = CancellationToken::new();
        let running = platform::up(&env, stop.clone()).await.unwrap();
        assert_eq!(running.gateway().unwrap().port(), port);
        stop.cancel();
        running.wait().await.unwrap();
    });
}

/// The real binary: starts, prints where it listens, serves, and exits 0 on Ctrl-C (SIGINT).
#[test]
fn the_binary_starts_serves_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_platform"))
        .env_clear()
        .envs([
            ("PORT", "0"),
            ("USER_SERVICE_PORT", "0"),
            ("USER_SERVICE_GRPC_PORT", "0"),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
            ("RUST_LOG", "warn"),
        ])
        .env("DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut gateway = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("api-gateway") {
            gateway = Some(rest.trim().to_owned());
        }
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    let gateway = gateway.expect("the banner names the gateway");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(main_journey(&gateway));

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "platform did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
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
    assert!(String::from_utf8_lossy(&output.stdout).contains("user-service: migrations applied"));
    assert!(dir.path().join("user-service.db").exists());
    // Applying them again is a no-op.
    let again = Command::new(env!("CARGO_BIN_EXE_platform"))
        .arg("migrate")
        .env_clear()
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(again.status.success());
}
