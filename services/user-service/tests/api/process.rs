//! The real binary: configuration is validated before anything runs, and its JSON logs carry
//! the request id and trace id on every request line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use platform_testing::TestApp;
use serde_json::Value;

fn run_with(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_user-service"));
    command.env_clear();
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_start_up_naming_every_offending_variable() {
    let (code, stderr) = run_with(&[
        ("ENVIRONMENT", "production"),
        ("PORT", "eighty"),
        ("DB_MAX_CONNECTIONS", "0"),
        ("JWT_EXPIRATION", "soon"),
        ("DATABASE_URL", "mysql://root:hunter2@db/users"),
        ("ADMIN_EMAIL", "root@example.com"),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    for variable in [
        "PORT=\"eighty\"",
        "DB_MAX_CONNECTIONS=\"0\"",
        "JWT_EXPIRATION=\"soon\"",
        "JWT_SECRET",
        "DATABASE_URL",
        "ADMIN_PASSWORD",
    ] {
        assert!(
            stderr.contains(variable),
            "{variable} missing from: {stderr}"
        );
    }
    assert!(
        !stderr.contains("hunter2"),
        "secrets are never echoed: {stderr}"
    );
}

#[test]
fn the_migrate_command_applies_migrations_and_exits() {
    let dir = std::env::temp_dir().join(format!(
        "user-service-migrate-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_user-service"))
        .arg("migrate")
        .env_clear()
        .env("DATA_DIR", &dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(dir.join("user-service.db").exists());
    let _ = std::fs::remove_dir_all(&dir);

    let output = Command::new(env!("CARGO_BIN_EXE_user-service"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown command"));
}

#[test]
fn production_refuses_a_short_jwt_secret() {
    let (code, stderr) = run_with(&[("ENVIRONMENT", "production"), ("JWT_SECRET", "tooshort")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("JWT_SECRET: expected a secret of at least 32 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("tooshort"));
}

/// The real binary on free loopback ports with JSON logs, plus `extra` variables; returns it
/// once it logged where it listens, with the rest of its log lines.
struct RunningBinary {
    child: std::process::Child,
    address: String,
    logs: std::io::Lines<BufReader<std::process::ChildStdout>>,
    data_dir: std::path::PathBuf,
}

impl RunningBinary {
    fn start(extra: &[(&str, String)]) -> Self {
        let data_dir =
            std::env::temp_dir().join(format!("user-service-{}", uuid::Uuid::new_v4().simple()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_user-service"))
            .env_clear()
            .envs([
                ("PORT", "0"),
                ("GRPC_PORT", "0"),
                ("HOST", "127.0.0.1"),
                ("LOG_FORMAT", "json"),
            ])
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .env("DATA_DIR", &data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut logs = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut running = None;
        while running.is_none() {
            let line = logs.next().expect("the service starts").unwrap();
            let line: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("every log line is JSON: {line}"));
            if line["message"] == "listening" {
                running = line["http"].as_str().map(str::to_owned);
            }
        }
        Self {
            child,
            address: running.unwrap_or_default(),
            logs,
            data_dir,
        }
    }

    /// The next log line, parsed.
    fn next_log(&mut self) -> Value {
        let line = self
            .logs
            .next()
            .expect("the service keeps logging")
            .unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("every log line is JSON: {line}"))
    }

    /// SIGTERM, and whether it then exited successfully.
    fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success())
            && self.child.wait().is_ok_and(|s| s.success())
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[test]
fn request_log_lines_carry_the_request_id_and_the_callers_trace_id() {
    let mut service = RunningBinary::start(&[]);
    let address = service.address.clone();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = TestApp::new(format!("http://{address}"))
            .get("/api/v1/users/me")
            .header("x-request-id", "log-test-42")
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .by("secret-token-value")
            .await;
        assert_eq!(response.status(), 401);
    });
    let line = loop {
        let line = service.next_log();
        if line["message"] == "request served" {
            break line;
        }
    };
    assert_eq!(line["span"]["request_id"], "log-test-42", "{line}");
    assert_eq!(line["span"]["trace_id"], trace_id, "{line}");
    assert_eq!(line["span"]["http.route"], "/api/v1/users/me", "{line}");
    // Every line inside a span says which trace and span it belongs to.
    assert_eq!(line["trace_id"], trace_id, "{line}");
    let span_id = line["span_id"].as_str().unwrap_or_default();
    assert!(
        span_id.len() == 16 && span_id != "00f067aa0ba902b7",
        "the line names the service's own span, a child of the caller's: {line}"
    );
    assert_eq!(line["status"], 401, "{line}");
    assert!(
        !line.to_string().contains("secret-token-value"),
        "credentials are never logged"
    );
}

#[test]
fn spans_are_exported_over_otlp_when_an_endpoint_is_set() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let collector = runtime
        .block_on(platform_testing::otlp::Collector::start())
        .unwrap();

    let mut service =
        RunningBinary::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.clone())]);
    let address = service.address.clone();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    runtime.block_on(async {
        TestApp::new(format!("http://{address}"))
            .get("/health")
            .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
            .await;
    });
    // SIGTERM: the service stops gracefully and flushes the spans it still holds.
    assert!(service.terminate(), "the service exits 0 on SIGTERM");

    let found = runtime.block_on(async {
        for _ in 0..100 {
            let spans = collector.trace(trace_id);
            if let Some(span) = spans.first() {
                return Some(span.clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        None
    });
    let span = found.expect("a span of the caller's trace reached the collector");
    assert_eq!(
        span.service, "user-service",
        "exported under the service's own name"
    );
    assert_eq!(span.name, "GET /health");
}
