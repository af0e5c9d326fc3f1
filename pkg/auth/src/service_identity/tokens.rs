//! Service tokens: short-lived HS256 JWTs naming the calling service (`iss`) and the called
//! one (`aud`). Minting and verifying live together so the claims and the pinned validation
//! cannot drift apart.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use platform_config::{ExposeSecret, SecretString};
use platform_http::grpc_guard::{CredentialError, Unauthenticated};
use serde::{Deserialize, Serialize};

use super::{IdentityError, ServiceIdentity, ServiceName};

/// How long a service token is valid. Short, so a leaked one is soon useless; clients re-mint
/// at half of it, so a token never arrives with less than half left (clock skew up to that is
/// harmless).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The claims of a service token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ServiceClaims {
    /// The calling service.
    iss: String,
    /// The called service.
    aud: String,
    iat: i64,
    exp: i64,
}

pub(super) struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub(super) fn from_secret(secret: &SecretString) -> Self {
        let secret = secret.expose_secret().as_bytes();
        // Pinned to HS256. Expiry and audience are checked by hand after the signature, so
        // a refusal can say which it was and, the signature being good, who it was from.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

impl ServiceIdentity {
    /// A token for calling `audience`, valid for [`TOKEN_LIFETIME`].
    pub fn mint(&self, audience: &str) -> Result<String, IdentityError> {
        self.mint_valid_for(audience, TOKEN_LIFETIME)
    }

    /// A token valid for `lifetime` from now (tests make expired ones with a zero lifetime).
    #[doc(hidden)]
    pub fn mint_valid_for(
        &self,
        audience: &str,
        lifetime: Duration,
    ) -> Result<String, IdentityError> {
        let keys = self.inner.keys.as_ref().ok_or(IdentityError::NoSecret)?;
        let now = chrono::Utc::now().timestamp();
        let claims = ServiceClaims {
            iss: self.inner.name.to_string(),
            aud: audience.to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &keys.encoding,
        )?)
    }

    /// The calling service of a token meant for this one.
    pub fn verify(&self, token: &str) -> Result<ServiceName, Unauthenticated> {
        let invalid = || Unauthenticated::new(CredentialError::Invalid);
        let keys = self.inner.keys.as_ref().ok_or_else(invalid)?;
        let claims = jsonwebtoken::decode::<ServiceClaims>(token, &keys.decoding, &keys.validation)
            .map_err(|_| invalid())?
            .claims;
        let caller = ServiceName::parse(&claims.iss).map_err(|_| invalid())?;
        let refused = |error| Unauthenticated {
            error,
            claimed: Some(Arc::clone(&caller.0)),
        };
        // No leeway: clients re-mint at half-life, so a live client never sends a token
        // this close to its end.
        if claims.exp <= chrono::Utc::now().timestamp() {
            return Err(refused(CredentialError::Expired));
        }
        if claims.aud != self.inner.name.as_str() {
            return Err(refused(CredentialError::WrongAudience));
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header::AUTHORIZATION;
    use platform_http::grpc_guard::CallerAuthenticator;

    use super::*;
    use crate::service_identity::ServiceAuthConfig;
    use crate::service_identity::testing::{bearer, identity, refusal};

    #[test]
    fn a_token_names_its_issuer_to_the_service_it_was_minted_for() {
        let orders = identity("order-service");
        let products = identity("product-service");
        let token = orders.mint("product-service").unwrap();
        let caller = products.authenticate(&bearer(&token), None).unwrap();
        assert_eq!(&*caller, "order-service");
    }

    #[test]
    fn a_token_for_another_service_is_refused_naming_its_issuer() {
        let token = identity("order-service").mint("payment-service").unwrap();
        let result = identity("product-service").authenticate(&bearer(&token), None);
        assert_eq!(
            refusal(result),
            (
                CredentialError::WrongAudience,
                Some("order-service".to_owned())
            )
        );
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let token = identity("order-service")
            .mint_valid_for("product-service", Duration::ZERO)
            .unwrap();
        let result = identity("product-service").authenticate(&bearer(&token), None);
        assert_eq!(
            refusal(result),
            (CredentialError::Expired, Some("order-service".to_owned()))
        );
    }

    #[test]
    fn tokens_signed_otherwise_or_malformed_are_invalid_and_name_nobody() {
        let products = identity("product-service");
        let other = ServiceIdentity::new(
            "order-service",
            &ServiceAuthConfig::with_secret("another-secret-another-secret-xyz"),
        )
        .unwrap();
        let forged = other.mint("product-service").unwrap();
        // `alg: none` with the claims of a good token.
        let good = identity("order-service").mint("product-service").unwrap();
        let claims = good.split('.').nth(1).unwrap();
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
        for token in [forged.as_str(), unsigned.as_str(), "garbage", ""] {
            let result = products.authenticate(&bearer(token), None);
            assert_eq!(refusal(result), (CredentialError::Invalid, None), "{token}");
        }
        let mut basic = axum::http::HeaderMap::new();
        basic.insert(AUTHORIZATION, "Basic b3JkZXI6eA==".parse().unwrap());
        assert_eq!(
            refusal(products.authenticate(&basic, None)),
            (CredentialError::Invalid, None)
        );
    }
}
