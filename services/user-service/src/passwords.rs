//! Password hashing: Argon2id, PHC strings, always on the blocking pool.
//!
//! Argon2 is deliberately slow (tens of milliseconds and ~19 MiB per hash); running it on an
//! async worker would stall every other request on that worker, so every hash and verification
//! goes through `spawn_blocking`.
//!
//! Logins for unknown emails verify against a dummy hash made with the same parameters at
//! start-up, so an unknown email costs the same work as a wrong password and response times do
//! not reveal which emails have accounts.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use platform_config::Env;

use crate::domain::Password;

/// `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordConfig {
    /// OWASP's minimum for Argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: 1,
        }
    }
}

impl PasswordConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let defaults = Self::default();
        let config = Self {
            memory_kib: env.in_range(
                "ARGON2_MEMORY_KIB",
                defaults.memory_kib,
                8..=4 * 1024 * 1024,
            ),
            iterations: env.in_range("ARGON2_ITERATIONS", defaults.iterations, 1..=100),
            parallelism: env.in_range("ARGON2_PARALLELISM", defaults.parallelism, 1..=64),
        };
        if config.params().is_err() {
            env.report(
                "ARGON2_MEMORY_KIB",
                "at least 8 KiB per lane of ARGON2_PARALLELISM",
            );
        }
        config
    }

    /// Cheap parameters for tests that are not about hashing cost.
    pub fn fast_for_tests() -> Self {
        Self {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn params(&self) -> Result<Params, argon2::Error> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid Argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task did not complete: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    hasher: Argon2<'static>,
    /// A hash of a random password with the configured parameters; verified against when the
    /// account does not exist.
    dummy: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    pub async fn new(config: PasswordConfig) -> Result<Self, HashError> {
        let params = config.params().map_err(HashError::Params)?;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = tokio::task::spawn_blocking({
            let hasher = hasher.clone();
            move || {
                hasher
                    .hash_password(platform_auth::random_token(24).as_bytes())
                    .map(|h| h.to_string())
                    .map_err(|e| HashError::Hash(e.to_string()))
            }
        })
        .await??;
        Ok(Self {
            inner: Arc::new(Inner { hasher, dummy }),
        })
    }

    /// The PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let inner = Arc::clone(&self.inner);
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .hasher
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Hash(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `hash`. With `hash` absent (no such account) the dummy hash
    /// is checked instead, at the same cost, and the answer is always `false`.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, HashError> {
        let inner = Arc::clone(&self.inner);
        // Beyond the accepted maximum a password cannot match; hashing it anyway keeps the
        // cost identical. Truncating keeps a huge body from costing more than a normal one.
        let candidate: String = password
            .chars()
            .take(crate::domain::MAX_PASSWORD_CHARS + 1)
            .collect();
        tokio::task::spawn_blocking(move || {
            let (stored, real) = match &hash {
                Some(hash) => (hash.as_str(), true),
                None => (inner.dummy.as_str(), false),
            };
            let matches = inner
                .hasher
                .verify_password(candidate.as_bytes(), stored)
                .is_ok();
            Ok(real && matches)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_with_the_configured_cost_and_verify() {
        let config = PasswordConfig {
            memory_kib: 1024,
            iterations: 2,
            parallelism: 1,
        };
        let passwords = Passwords::new(config).await.unwrap();
        let password = Password::parse("correct horse").unwrap();
        let hash = passwords.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=2,p=1$"), "{hash}");
        assert!(
            passwords
                .verify("correct horse", Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong horse", Some(hash.clone()))
                .await
                .unwrap()
        );
        // Same password, different salt.
        assert_ne!(passwords.hash(&password).await.unwrap(), hash);
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify_but_still_hash_with_the_same_parameters() {
        let passwords = Passwords::new(PasswordConfig::fast_for_tests())
            .await
            .unwrap();
        assert!(
            passwords
                .inner
                .dummy
                .starts_with("$argon2id$v=19$m=256,t=1,p=1$")
        );
        assert!(!passwords.verify("anything at all", None).await.unwrap());
    }

    #[test]
    fn defaults_meet_the_owasp_minimum() {
        let config = PasswordConfig::default();
        assert!(config.memory_kib >= 19 * 1024);
        assert!(config.iterations >= 2);
    }

    #[test]
    fn impossible_parameters_are_reported() {
        let mut env = Env::from_pairs([("ARGON2_MEMORY_KIB", "8"), ("ARGON2_PARALLELISM", "4")]);
        let _ = PasswordConfig::from_env(&mut env);
        assert_eq!(env.issues()[0].variable, "ARGON2_MEMORY_KIB");
    }
}
