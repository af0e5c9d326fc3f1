//! Password hashing: Argon2id, PHC strings, always on the blocking pool.
//!
//! Argon2 is deliberately slow (tens of milliseconds and ~19 MiB per hash); running it on an
//! async worker would stall every other request on that worker, so every hash and verification
//! goes through `spawn_blocking`.
//!
//! Logins for unknown emails verify against a dummy hash made with the same parameters at
//! start-up, so an unknown email costs the same work as a wrong password and response times do
//! not reveal which emails have accounts.
//!
//! Hashing is bounded ([`HashingLimits`]): at most `ARGON2_MAX_CONCURRENT` hashes run at once
//! (each holds its memory cost), at most `ARGON2_MAX_QUEUE` more wait, each for at most
//! `ARGON2_QUEUE_TIMEOUT`. Beyond that a request is shed ([`HashError::Overloaded`], a 503 with
//! `Retry-After`): a flood of logins costs a bounded amount of memory and CPU instead of
//! queueing without end on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use platform_config::Env;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// `ARGON2_MAX_CONCURRENT`, `ARGON2_MAX_QUEUE`, `ARGON2_QUEUE_TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingLimits {
    /// Hashes running at once (default: the number of cores).
    pub max_concurrent: usize,
    /// Hashes waiting for a slot at once; more are refused at once (default: 16 per slot).
    pub max_queue: usize,
    /// How long a hash waits for a slot before it is refused (default 2 s).
    pub queue_timeout: Duration,
}

impl Default for HashingLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            max_concurrent: cores,
            max_queue: 16 * cores,
            queue_timeout: Duration::from_secs(2),
        }
    }
}

impl HashingLimits {
    pub fn from_env(env: &mut Env) -> Self {
        let defaults = Self::default();
        let max_concurrent =
            env.in_range("ARGON2_MAX_CONCURRENT", defaults.max_concurrent, 1..=1024);
        Self {
            max_concurrent,
            max_queue: env.in_range("ARGON2_MAX_QUEUE", 16 * max_concurrent, 0..=1_000_000),
            queue_timeout: env.or("ARGON2_QUEUE_TIMEOUT", defaults.queue_timeout),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes running and waiting: the request is shed.
    #[error("password hashing is saturated")]
    Overloaded,
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
    /// One permit per hash allowed to run.
    slots: Arc<Semaphore>,
    /// Hashes waiting for a permit now.
    waiting: AtomicUsize,
    limits: HashingLimits,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    pub async fn new(config: PasswordConfig, limits: HashingLimits) -> Result<Self, HashError> {
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
            inner: Arc::new(Inner {
                hasher,
                dummy,
                slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
                waiting: AtomicUsize::new(0),
                limits,
            }),
        })
    }

    /// A slot to hash in: at once if one is free, else after a bounded wait in a bounded
    /// queue, else `Overloaded`.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, HashError> {
        let inner = &*self.inner;
        if let Ok(permit) = Arc::clone(&inner.slots).try_acquire_owned() {
            return Ok(permit);
        }
        let queued = inner.waiting.fetch_add(1, Ordering::AcqRel);
        // Counted out again however this ends (including the request being dropped).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _waiting = Waiting(&inner.waiting);
        if queued >= inner.limits.max_queue {
            return Err(HashError::Overloaded);
        }
        match tokio::time::timeout(
            inner.limits.queue_timeout,
            Arc::clone(&inner.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or the semaphore closed (never: nothing closes it).
            _ => Err(HashError::Overloaded),
        }
    }

    /// The PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let slot = self.slot().await?;
        let inner = Arc::clone(&self.inner);
        let password = password.clone();
        // The permit moves into the task: it is held while the hash runs, even if the request
        // that asked for it is gone.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
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
        let slot = self.slot().await?;
        let inner = Arc::clone(&self.inner);
        // Beyond the accepted maximum a password cannot match; hashing it anyway keeps the
        // cost identical. Truncating keeps a huge body from costing more than a normal one.
        let candidate: String = password
            .chars()
            .take(crate::domain::MAX_PASSWORD_CHARS + 1)
            .collect();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
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
        let passwords = Passwords::new(config, HashingLimits::default())
            .await
            .unwrap();
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
        let passwords = Passwords::new(PasswordConfig::fast_for_tests(), HashingLimits::default())
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_beyond_the_slots_and_the_queue_are_refused_not_queued() {
        let limits = HashingLimits {
            max_concurrent: 1,
            max_queue: 1,
            queue_timeout: Duration::from_secs(10),
        };
        let config = PasswordConfig {
            memory_kib: 16 * 1024,
            iterations: 3,
            parallelism: 1,
        };
        let passwords = Passwords::new(config, limits).await.unwrap();
        let attempts = (0..6).map(|_| {
            let passwords = passwords.clone();
            tokio::spawn(async move { passwords.verify("a password", None).await })
        });
        let results = futures::future::join_all(attempts).await;
        let overloaded = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(HashError::Overloaded))))
            .count();
        let done = results
            .iter()
            .filter(|r| matches!(r, Ok(Ok(false))))
            .count();
        // One runs, one waits; the rest are refused at once (unless the first finished before
        // they arrived: a hash takes tens of milliseconds, spawning them microseconds).
        assert_eq!(done + overloaded, 6, "nothing else: {results:?}");
        assert!(done >= 2 && overloaded >= 1, "{results:?}");
        assert_eq!(passwords.inner.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_hash_that_waits_too_long_for_a_slot_is_refused() {
        let limits = HashingLimits {
            max_concurrent: 1,
            max_queue: 10,
            queue_timeout: Duration::from_millis(20),
        };
        let passwords = Passwords::new(PasswordConfig::fast_for_tests(), limits)
            .await
            .unwrap();
        let held = passwords.slot().await.unwrap();
        assert!(matches!(
            passwords.verify("x", None).await,
            Err(HashError::Overloaded)
        ));
        drop(held);
        assert!(!passwords.verify("x", None).await.unwrap());
    }

    #[test]
    fn hashing_limits_default_to_the_cores_and_are_configurable() {
        let mut env = Env::from_pairs([
            ("ARGON2_MAX_CONCURRENT", "3"),
            ("ARGON2_QUEUE_TIMEOUT", "500ms"),
        ]);
        let limits = HashingLimits::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(limits.max_concurrent, 3);
        assert_eq!(limits.max_queue, 48);
        assert_eq!(limits.queue_timeout, Duration::from_millis(500));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(HashingLimits::default().max_concurrent, cores);
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
