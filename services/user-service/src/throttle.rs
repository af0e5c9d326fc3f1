//! Per-account login throttling, on top of the gateway's per-IP rate limits (which an attacker
//! spreading guesses over many addresses gets around).
//!
//! Failed logins are counted per account: the normalised email, hashed so neither memory nor
//! Redis holds addresses. After `LOGIN_MAX_FAILURES` failures within `LOGIN_FAILURE_WINDOW`
//! the account is locked for `LOGIN_LOCKOUT`: every login is refused, with the right password
//! too, until the lock ends. A successful login clears the count. Emails without an account
//! are counted and locked exactly the same way, so a lock says nothing about whether an
//! account exists; and the caller answers a locked account with the same 401, after the same
//! hashing work, as a wrong password.
//!
//! Shared by the replicas through Redis when configured (one atomic script per failure);
//! in-process otherwise, and as the fallback while Redis fails (a throttle that fails open
//! across replicas still throttles each one).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use platform_config::Env;
use platform_redis::redis::aio::ConnectionManager;
use platform_redis::{RedisPool, redis};

/// A Redis call must answer within this; beyond, the in-process counts decide.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// The in-process table is swept of stale entries when it grows past this.
const SWEEP_AT: usize = 10_000;

/// `LOGIN_MAX_FAILURES`, `LOGIN_FAILURE_WINDOW`, `LOGIN_LOCKOUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures within the window that lock the account (0: never lock).
    pub max_failures: u32,
    /// Failures older than this (counted from the first) are forgotten.
    pub window: Duration,
    /// How long a locked account refuses every login.
    pub lockout: Duration,
    /// Redis keys start with this.
    pub key_prefix: String,
}

impl Default for ThrottleConfig {
    /// 5 failures in 15 minutes lock the account for 15 minutes: a real user who mistypes
    /// rarely gets there, a guesser gets 20 tries an hour per account.
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            key_prefix: "login-throttle".to_owned(),
        }
    }
}

impl ThrottleConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let defaults = Self::default();
        let config = Self {
            max_failures: env.in_range("LOGIN_MAX_FAILURES", defaults.max_failures, 0..=1000),
            window: env.or("LOGIN_FAILURE_WINDOW", defaults.window),
            lockout: env.or("LOGIN_LOCKOUT", defaults.lockout),
            key_prefix: defaults.key_prefix,
        };
        for (name, value) in [
            ("LOGIN_FAILURE_WINDOW", config.window),
            ("LOGIN_LOCKOUT", config.lockout),
        ] {
            if config.max_failures > 0 && value < Duration::from_millis(1) {
                env.report(name, "a positive duration such as 15m");
            }
        }
        config
    }
}

/// An account as the throttle knows it: a hash of its normalised email.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountKey(String);

impl AccountKey {
    /// `normalised` is the email as stored for accounts (or the trimmed, lower-cased input when
    /// it is not a valid email: those are throttled too).
    pub fn new(normalised: impl AsRef<str>) -> Self {
        let normalised = normalised.as_ref();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, normalised.as_bytes());
        Self(
            digest.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}

/// Whether a login may be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Locked for about this long still.
    Locked(Duration),
}

/// Counts failed logins per account. Cheap to clone.
#[derive(Clone)]
pub struct LoginThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    config: ThrottleConfig,
    redis: Option<RedisPool>,
    local: Mutex<HashMap<AccountKey, Local>>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("config", &self.inner.config)
            .field("shared", &self.inner.redis.is_some())
            .finish()
    }
}

/// One account's failures in this process.
#[derive(Debug, Clone, Copy)]
struct Local {
    failures: u32,
    window_ends: Instant,
    locked_until: Option<Instant>,
}

/// Counts a failure: `KEYS[1]` the count, `KEYS[2]` the lock; `ARGV` window ms, max failures,
/// lockout ms. At the limit the lock is set and the count starts again. Returns the lock's
/// remaining milliseconds (0: not locked).
static FAILURE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
",
    )
});

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig, redis: Option<RedisPool>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                redis,
                local: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn enabled(&self) -> bool {
        self.inner.config.max_failures > 0
    }

    fn keys(&self, account: &AccountKey) -> (String, String) {
        let prefix = &self.inner.config.key_prefix;
        (
            format!("{prefix}:failures:{}", account.0),
            format!("{prefix}:locked:{}", account.0),
        )
    }

    /// Runs `call` on Redis within [`REDIS_TIMEOUT`]; `None` without Redis, or (after a
    /// warning) when it failed, so the in-process counts decide.
    async fn shared<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let pool = self.inner.redis.as_ref()?;
        let attempt = async {
            let conn = pool.get().await.map_err(|e| e.to_string())?;
            call(conn).await.map_err(|e| e.to_string())
        };
        let error = match tokio::time::timeout(REDIS_TIMEOUT, attempt).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error,
            Err(_) => "timed out".to_owned(),
        };
        tracing::warn!(%error, "login throttle: Redis failed; counting failures in this process");
        None
    }

    /// Whether `account` may try to log in now.
    pub async fn check(&self, account: &AccountKey) -> Verdict {
        if !self.enabled() {
            return Verdict::Allowed;
        }
        let (_, lock) = self.keys(account);
        let left = self
            .shared(move |mut conn| async move {
                redis::cmd("PTTL")
                    .arg(&lock)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        match left {
            Some(left) if left > 0 => Verdict::Locked(Duration::from_millis(left.unsigned_abs())),
            Some(_) => Verdict::Allowed,
            None => self.check_local(account),
        }
    }

    /// Counts a failed login of `account`; whether it is locked now.
    pub async fn failed(&self, account: &AccountKey) -> Verdict {
        let config = &self.inner.config;
        if !self.enabled() {
            return Verdict::Allowed;
        }
        let (count, lock) = self.keys(account);
        let left = self
            .shared(move |mut conn| async move {
                FAILURE
                    .key(&count)
                    .key(&lock)
                    .arg(millis(config.window))
                    .arg(config.max_failures)
                    .arg(millis(config.lockout))
                    .invoke_async::<u64>(&mut conn)
                    .await
            })
            .await;
        match left {
            Some(0) => Verdict::Allowed,
            Some(left) => Verdict::Locked(Duration::from_millis(left)),
            None => self.failed_local(account),
        }
    }

    /// A successful login: the account's failures are forgotten.
    pub async fn succeeded(&self, account: &AccountKey) {
        if !self.enabled() {
            return;
        }
        self.local().remove(account);
        let (count, _) = self.keys(account);
        self.shared(move |mut conn| async move {
            redis::cmd("DEL")
                .arg(&count)
                .query_async::<()>(&mut conn)
                .await
        })
        .await;
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<AccountKey, Local>> {
        // Entries are plain counters: a panic elsewhere cannot leave one half-written.
        self.inner
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_local(&self, account: &AccountKey) -> Verdict {
        let now = Instant::now();
        match self
            .local()
            .get(account)
            .and_then(|entry| entry.locked_until)
        {
            Some(until) if until > now => Verdict::Locked(until - now),
            _ => Verdict::Allowed,
        }
    }

    fn failed_local(&self, account: &AccountKey) -> Verdict {
        let config = &self.inner.config;
        let now = Instant::now();
        let mut table = self.local();
        if table.len() >= SWEEP_AT {
            table.retain(|_, entry| {
                entry.window_ends > now || entry.locked_until.is_some_and(|until| until > now)
            });
        }
        let entry = table.entry(account.clone()).or_insert(Local {
            failures: 0,
            window_ends: now + config.window,
            locked_until: None,
        });
        if entry.window_ends <= now {
            entry.failures = 0;
            entry.window_ends = now + config.window;
        }
        entry.failures += 1;
        if entry.failures >= config.max_failures {
            entry.failures = 0;
            entry.locked_until = Some(now + config.lockout);
            return Verdict::Locked(config.lockout);
        }
        Verdict::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_failures: u32, lockout: Duration) -> ThrottleConfig {
        ThrottleConfig {
            max_failures,
            window: Duration::from_secs(60),
            lockout,
            key_prefix: format!("test-{}.login", uuid::Uuid::new_v4().simple()),
        }
    }

    async fn locks_after_the_limit_until_the_lockout_ends(throttle: LoginThrottle) {
        let account = AccountKey::new("ada@example.com");
        let other = AccountKey::new("bob@example.com");
        for _ in 0..2 {
            assert_eq!(throttle.failed(&account).await, Verdict::Allowed);
        }
        assert_eq!(throttle.check(&account).await, Verdict::Allowed);
        assert!(matches!(
            throttle.failed(&account).await,
            Verdict::Locked(_)
        ));
        assert!(matches!(throttle.check(&account).await, Verdict::Locked(_)));
        assert_eq!(
            throttle.check(&other).await,
            Verdict::Allowed,
            "per account"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(throttle.check(&account).await, Verdict::Allowed);
        // Success forgets the failures: two more do not lock.
        throttle.failed(&account).await;
        throttle.failed(&account).await;
        throttle.succeeded(&account).await;
        throttle.failed(&account).await;
        throttle.failed(&account).await;
        assert_eq!(throttle.check(&account).await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn in_process_counts_lock_an_account_after_the_limit() {
        let throttle = LoginThrottle::new(config(3, Duration::from_millis(300)), None);
        locks_after_the_limit_until_the_lockout_ends(throttle).await;
    }

    platform_testing::redis_tests!(redis_counts_lock_an_account_after_the_limit_for_every_replica);

    async fn redis_counts_lock_an_account_after_the_limit_for_every_replica() {
        let namespace = platform_testing::RedisNamespace::create();
        let pool = || RedisPool::new(&platform_redis::RedisConfig::new(&namespace.url)).unwrap();
        let mut config = config(3, Duration::from_millis(300));
        config.key_prefix = format!("{}.login", namespace.namespace);
        let throttle = LoginThrottle::new(config.clone(), Some(pool()));
        locks_after_the_limit_until_the_lockout_ends(throttle).await;

        // Two replicas: failures on one count on the other.
        let (one, two) = (
            LoginThrottle::new(config.clone(), Some(pool())),
            LoginThrottle::new(config, Some(pool())),
        );
        let account = AccountKey::new("carol@example.com");
        one.failed(&account).await;
        two.failed(&account).await;
        assert!(matches!(one.failed(&account).await, Verdict::Locked(_)));
        assert!(matches!(two.check(&account).await, Verdict::Locked(_)));
    }

    #[tokio::test]
    async fn a_broken_redis_falls_back_to_counting_in_process() {
        let pool =
            RedisPool::new(&platform_redis::RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        let throttle = LoginThrottle::new(config(2, Duration::from_secs(60)), Some(pool));
        let account = AccountKey::new("dan@example.com");
        throttle.failed(&account).await;
        assert!(matches!(
            throttle.failed(&account).await,
            Verdict::Locked(_)
        ));
        assert!(matches!(throttle.check(&account).await, Verdict::Locked(_)));
    }

    #[test]
    fn zero_max_failures_disables_the_throttle_and_settings_come_from_the_environment() {
        let mut env = Env::from_pairs([
            ("LOGIN_MAX_FAILURES", "10"),
            ("LOGIN_LOCKOUT", "5m"),
            ("LOGIN_FAILURE_WINDOW", "1h"),
        ]);
        let config = ThrottleConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(config.max_failures, 10);
        assert_eq!(config.lockout, Duration::from_secs(300));
        assert_eq!(config.window, Duration::from_secs(3600));
        let defaults =
            ThrottleConfig::from_env(&mut Env::from_pairs::<[(&str, &str); 0], &str, &str>([]));
        assert_eq!(defaults, ThrottleConfig::default());
    }

    #[test]
    fn account_keys_do_not_hold_the_email() {
        let key = AccountKey::new("ada@example.com");
        assert!(!key.0.contains("ada"));
        assert_eq!(key, AccountKey::new("ada@example.com"));
        assert_ne!(key, AccountKey::new("ada@example.org"));
    }
}
