//! The settings of service authentication (`INTERNAL_AUTH_SECRET`, the `INTERNAL_TLS_*`
//! files), read apart from their use so the production rules (a long secret or mutual TLS)
//! are checked in one place at start-up.

use std::fmt;
use std::path::PathBuf;

use platform_config::{Env, Environment, ExposeSecret, SecretString};

use crate::MIN_SECRET_BYTES;

/// `INTERNAL_TLS_CA`, `INTERNAL_TLS_CERT` and `INTERNAL_TLS_KEY` (PEM files): all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTlsFiles {
    /// The CA that signs every service's certificate.
    pub ca: PathBuf,
    /// This service's certificate chain: its DNS name is the service's name; it serves it
    /// and presents it as a client.
    pub cert: PathBuf,
    /// The private key of `cert`'s leaf.
    pub key: PathBuf,
}

impl InternalTlsFiles {
    fn from_env(env: &mut Env) -> Option<Self> {
        const VARS: [&str; 3] = ["INTERNAL_TLS_CA", "INTERNAL_TLS_CERT", "INTERNAL_TLS_KEY"];
        let [ca, cert, key] = VARS.map(|var| env.optional::<PathBuf>(var));
        match (ca, cert, key) {
            (Some(ca), Some(cert), Some(key)) => Some(Self { ca, cert, key }),
            (None, None, None) => None,
            (ca, cert, key) => {
                for (var, value) in VARS.iter().zip([ca, cert, key]) {
                    if value.is_none() {
                        env.report(var, "a PEM file (INTERNAL_TLS_CA, INTERNAL_TLS_CERT and INTERNAL_TLS_KEY go together)");
                    }
                }
                None
            }
        }
    }
}

/// How this service proves itself to others and checks who calls it.
#[derive(Clone)]
pub struct ServiceAuthConfig {
    /// `INTERNAL_AUTH_SECRET`: the HS256 key of service tokens. `None` with mutual TLS and no
    /// secret: then only certificates identify callers.
    pub secret: Option<SecretString>,
    /// The secret was generated at start-up (development without either setting): other
    /// processes cannot call this one, nor it them.
    pub generated: bool,
    /// Mutual TLS on gRPC.
    pub tls: Option<InternalTlsFiles>,
}

impl fmt::Debug for ServiceAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAuthConfig")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("generated", &self.generated)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ServiceAuthConfig {
    /// Reads the settings. A secret, when set, must be at least [`MIN_SECRET_BYTES`]; in
    /// production a secret or mutual TLS is required. Elsewhere, with neither, a random
    /// secret is generated (see [`ServiceAuthConfig::generated`]).
    pub fn from_env(env: &mut Env, environment: Environment) -> Self {
        let secret = env.secret("INTERNAL_AUTH_SECRET");
        let tls = InternalTlsFiles::from_env(env);
        let expected = format!("a secret of at least {MIN_SECRET_BYTES} bytes");
        if secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < MIN_SECRET_BYTES)
        {
            env.report("INTERNAL_AUTH_SECRET", expected);
        } else if environment.is_production() && secret.is_none() && tls.is_none() {
            env.report(
                "INTERNAL_AUTH_SECRET",
                format!(
                    "{expected}, or INTERNAL_TLS_CA, INTERNAL_TLS_CERT and INTERNAL_TLS_KEY (one is required in production)"
                ),
            );
        }
        let generated = secret.is_none() && tls.is_none();
        Self {
            secret: match secret {
                Some(secret) => Some(secret),
                None if generated => Some(crate::random_secret()),
                None => None,
            },
            generated,
            tls,
        }
    }

    /// Tokens signed with a known secret (tests, `platform up` sharing one secret).
    pub fn with_secret(secret: impl Into<String>) -> Self {
        Self {
            secret: Some(SecretString::from(secret.into())),
            generated: false,
            tls: None,
        }
    }

    /// Mutual TLS only.
    pub fn with_tls(files: InternalTlsFiles) -> Self {
        Self {
            secret: None,
            generated: false,
            tls: Some(files),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_identity::testing::SECRET;

    #[test]
    fn production_needs_a_long_secret_or_mutual_tls() {
        let issues = |pairs: &[(&str, &str)], environment| {
            let mut env = Env::from_pairs(pairs.iter().copied());
            let config = ServiceAuthConfig::from_env(&mut env, environment);
            let vars: Vec<String> = env.issues().iter().map(|i| i.variable.clone()).collect();
            (config, vars)
        };
        let (_, vars) = issues(&[], Environment::Production);
        assert_eq!(vars, ["INTERNAL_AUTH_SECRET"]);
        let (_, vars) = issues(
            &[("INTERNAL_AUTH_SECRET", "short")],
            Environment::Production,
        );
        assert_eq!(vars, ["INTERNAL_AUTH_SECRET"]);
        let (_, vars) = issues(
            &[("INTERNAL_AUTH_SECRET", "short")],
            Environment::Development,
        );
        assert_eq!(vars, ["INTERNAL_AUTH_SECRET"], "short is refused anywhere");
        let (config, vars) = issues(&[("INTERNAL_AUTH_SECRET", SECRET)], Environment::Production);
        assert!(vars.is_empty() && !config.generated);
        let tls = [
            ("INTERNAL_TLS_CA", "ca.pem"),
            ("INTERNAL_TLS_CERT", "cert.pem"),
            ("INTERNAL_TLS_KEY", "key.pem"),
        ];
        let (config, vars) = issues(&tls, Environment::Production);
        assert!(vars.is_empty(), "{vars:?}");
        assert!(config.secret.is_none() && config.tls.is_some());
        let (_, vars) = issues(&tls[..2], Environment::Development);
        assert_eq!(vars, ["INTERNAL_TLS_KEY"], "all three or none");
        let (config, vars) = issues(&[], Environment::Development);
        assert!(vars.is_empty() && config.generated);
        assert!(config.secret.unwrap().expose_secret().len() >= MIN_SECRET_BYTES);
    }
}
