//! Helpers of the crate's unit tests: a verifier with a known secret, and tokens made by hand
//! for what the issuer itself would never sign.

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::{Jwt, JwtConfig, UserId};

pub(crate) const SECRET: &str = "0123456789abcdef0123456789abcdef";

pub(crate) fn jwt() -> Jwt {
    Jwt::new(JwtConfig::with_secret(SECRET))
}

pub(crate) fn claims(exp_offset: i64, iss: &str, aud: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "sub": UserId::generate(), "role": "admin", "iat": now, "exp": now + exp_offset,
        "jti": "x", "iss": iss, "aud": aud,
    })
}

pub(crate) fn sign(alg: Algorithm, claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}
