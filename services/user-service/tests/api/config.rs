//! Start-up configuration is validated before anything runs.

use std::process::Command;

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
fn production_refuses_a_short_jwt_secret() {
    let (code, stderr) = run_with(&[("ENVIRONMENT", "production"), ("JWT_SECRET", "tooshort")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("JWT_SECRET: expected a secret of at least 32 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("tooshort"));
}
