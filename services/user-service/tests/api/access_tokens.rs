//! Access tokens are checked on every protected endpoint: anything but a valid HS256 token
//! with our issuer and audience, before its expiry, is a 401.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, problem, spawn_app};

fn claims(sub: &str, exp_offset: i64, iss: &str, aud: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "role": "admin", "iat": now - 10, "exp": now + exp_offset, "jti": "j", "iss": iss, "aud": aud})
}

fn sign(algorithm: Algorithm, claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn forged_or_expired_tokens_are_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, _) = app.new_user().await;
    let id = user["id"].as_str().unwrap();
    let good = claims(id, 600, "microservices-platform", "microservices-platform");

    // The control: a correctly signed token works.
    let response = app
        .get("/api/v1/users/me")
        .by(sign(Algorithm::HS256, &good, JWT_SECRET))
        .await;
    assert_eq!(response.status(), 200);

    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let forged = [
        ("alg none", unsigned),
        (
            "HS384 with the right key",
            sign(Algorithm::HS384, &good, JWT_SECRET),
        ),
        (
            "wrong key",
            sign(
                Algorithm::HS256,
                &good,
                "another-secret-another-secret-1234",
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::HS256,
                &claims(id, 600, "someone-else", "microservices-platform"),
                JWT_SECRET,
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                &claims(id, 600, "microservices-platform", "another-api"),
                JWT_SECRET,
            ),
        ),
        (
            "expired",
            sign(
                Algorithm::HS256,
                &claims(id, -1, "microservices-platform", "microservices-platform"),
                JWT_SECRET,
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (case, token) in forged {
        let response = app.get("/api/v1/users/me").by(&token).await;
        assert_eq!(response.status(), 401, "{case}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{case}");
        problem(response, 401).await;
    }

    problem(app.get("/api/v1/users/me").await, 401).await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:pass")
    );
    let response = app
        .get("/api/v1/users/me")
        .header("authorization", basic)
        .await;
    problem(response, 401).await;
}

platform_testing::backend_tests!(forged_or_expired_tokens_are_401);
