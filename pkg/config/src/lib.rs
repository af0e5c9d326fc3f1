//! Typed configuration from environment variables.
//!
//! Owns the one way every binary of the platform reads its settings: an [`Env`] reader that
//! parses each variable into a typed value and, instead of stopping at the first mistake,
//! collects every missing or malformed variable so that start-up can fail once with the whole
//! list (see [`ConfigError`]). Each crate owns the section it needs (`ServerConfig` in
//! `platform-http`, `RedisConfig` in `platform-redis`, …) and builds it from an `&mut Env`;
//! the database section ([`database::DatabaseConfig`]) lives here, so that test support and
//! configuration need not link the database driver.
//!
//! Hand-written rather than taken from `envy`/`figment`/`clap`: those report the first error
//! only, and none of them knows which values are secrets that must never be echoed back.
//!
//! A prefix lets one process host several services: with the prefix `USER_SERVICE_`,
//! `USER_SERVICE_PORT` wins over `PORT`. `platform up` uses this to give each in-process
//! service its own port and database while sharing everything else.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub mod database;

pub use secrecy::{ExposeSecret, SecretString};

/// Where a variable's raw text comes from: the process environment, or a map in tests.
type Source = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Reads typed values from environment variables and remembers every problem it met.
#[derive(Clone)]
pub struct Env {
    /// Looks a variable up; tests pass a map so they never touch the process environment.
    source: Source,
    /// Service-specific prefixes tried before the bare name, most specific first.
    prefixes: Vec<String>,
    /// Names read only with a prefix (or from the defaults), never bare: what identifies one
    /// process among several (its ports), so a bare `PORT` cannot give two services one port.
    isolated: Arc<Vec<String>>,
    /// Values used when a variable is unset (set by `platform up` for the services it hosts).
    defaults: Arc<HashMap<String, String>>,
    /// Every invalid or missing variable seen so far, reported together by [`Env::finish`].
    issues: Vec<ConfigIssue>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("prefixes", &self.prefixes)
            .field("issues", &self.issues)
            .finish_non_exhaustive()
    }
}

/// One offending variable: its name, what we found (unless secret) and what we expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The variable as read: with its prefix when the value came from the prefixed form
    /// (`USER_SERVICE_PORT`), the bare name when it was missing.
    pub variable: String,
    /// The raw value, or `None` when it was missing or is a secret.
    pub found: Option<String>,
    /// What a valid value looks like (`an integer from 0 to 65535`), ending in `(required)`
    /// when the variable was missing.
    pub expected: String,
}

/// Start-up configuration is invalid; the message names every offending variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Every problem, in the order the variables were read; never empty.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.issues.len())?;
        if self.issues.len() != 1 {
            write!(f, "s")?;
        }
        write!(f, "):")?;
        for issue in &self.issues {
            match &issue.found {
                Some(found) => write!(
                    f,
                    "\n  {}={found:?}: expected {}",
                    issue.variable, issue.expected
                )?,
                None => write!(f, "\n  {}: expected {}", issue.variable, issue.expected)?,
            }
        }
        Ok(())
    }
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self::from_fn(|name| std::env::var(name).ok())
    }

    /// Reads from a fixed set of pairs (tests, embedding).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from_fn(move |name| map.get(name).cloned())
    }

    /// Reads through `source`, which returns a variable's raw value or `None` when unset.
    pub fn from_fn(source: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            source: Arc::new(source),
            prefixes: Vec::new(),
            isolated: Arc::new(Vec::new()),
            defaults: Arc::new(HashMap::new()),
            issues: Vec::new(),
        }
    }

    /// A reader over the same variables with no problems recorded yet.
    pub fn reader(&self) -> Self {
        Self {
            source: Arc::clone(&self.source),
            prefixes: self.prefixes.clone(),
            isolated: Arc::clone(&self.isolated),
            defaults: Arc::clone(&self.defaults),
            issues: Vec::new(),
        }
    }

    /// A reader on which `names` are only read with a prefix (or from the defaults).
    pub fn isolating(&self, names: &[&str]) -> Self {
        let mut isolated = (*self.isolated).clone();
        isolated.extend(names.iter().map(|n| (*n).to_owned()));
        Self {
            source: Arc::clone(&self.source),
            prefixes: self.prefixes.clone(),
            isolated: Arc::new(isolated),
            defaults: Arc::clone(&self.defaults),
            issues: Vec::new(),
        }
    }

    /// A reader that falls back to `defaults` for variables the environment leaves unset.
    /// Issues found so far are not carried over.
    pub fn with_defaults<I, K, V>(&self, defaults: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut merged = (*self.defaults).clone();
        merged.extend(defaults.into_iter().map(|(k, v)| (k.into(), v.into())));
        Self {
            source: Arc::clone(&self.source),
            prefixes: self.prefixes.clone(),
            isolated: Arc::clone(&self.isolated),
            defaults: Arc::new(merged),
            issues: Vec::new(),
        }
    }

    /// A reader that first tries `PREFIX` + name (e.g. `USER_SERVICE_PORT`), then the bare name.
    /// Issues found so far are not carried over.
    pub fn with_prefix(&self, prefix: impl Into<String>) -> Self {
        let mut prefixes = vec![prefix.into()];
        prefixes.extend(self.prefixes.iter().cloned());
        Self {
            source: Arc::clone(&self.source),
            prefixes,
            isolated: Arc::clone(&self.isolated),
            defaults: Arc::clone(&self.defaults),
            issues: Vec::new(),
        }
    }

    /// The raw value and the exact variable it came from; empty values count as unset.
    fn lookup(&self, name: &str) -> Option<(String, String)> {
        let bare = (!self.isolated.iter().any(|n| n == name)).then(|| name.to_owned());
        self.prefixes
            .iter()
            .map(|p| format!("{p}{name}"))
            .chain(bare)
            .find_map(|var| {
                (self.source)(&var)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (var, v))
            })
            .or_else(|| {
                self.defaults
                    .get(name)
                    .map(|v| (name.to_owned(), v.clone()))
            })
    }

    /// Whether the variable (or its prefixed form) is set to a non-empty value.
    pub fn is_set(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// Records a problem with a variable that parsing alone cannot catch (e.g. a cross-field rule).
    pub fn report(&mut self, variable: &str, expected: impl Into<String>) {
        self.issues.push(ConfigIssue {
            variable: variable.to_owned(),
            found: None,
            expected: expected.into(),
        });
    }

    /// Parses an optional variable with `parse`; `None` when unset, and when malformed (after
    /// recording the problem).
    pub fn optional_with<T>(
        &mut self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let (var, raw) = self.lookup(name)?;
        match parse(raw.trim()) {
            Some(v) => Some(v),
            None => {
                self.issues.push(ConfigIssue {
                    variable: var,
                    found: Some(raw),
                    expected: expected.to_owned(),
                });
                None
            }
        }
    }

    /// An optional value parsed with [`FromEnv`].
    pub fn optional<T: FromEnv>(&mut self, name: &str) -> Option<T> {
        self.optional_with(name, T::EXPECTED, T::from_env)
    }

    /// A value with a default used when the variable is unset (and, so that start-up can go on
    /// to report every other problem, when it is malformed).
    pub fn or<T: FromEnv>(&mut self, name: &str, default: T) -> T {
        self.optional(name).unwrap_or(default)
    }

    /// A value that must be present.
    pub fn required<T: FromEnv>(&mut self, name: &str) -> Option<T> {
        if self.lookup(name).is_none() {
            self.report(name, format!("{} (required)", T::EXPECTED));
            return None;
        }
        self.optional(name)
    }

    /// A secret: never echoed back in error messages, wrapped so that it cannot be logged.
    pub fn secret(&mut self, name: &str) -> Option<SecretString> {
        self.lookup(name)
            .map(|(_, raw)| SecretString::from(raw.trim().to_owned()))
    }

    /// A numeric value that must fall inside `range`.
    pub fn in_range<T>(&mut self, name: &str, default: T, range: std::ops::RangeInclusive<T>) -> T
    where
        T: FromStr + PartialOrd + Copy + fmt::Display,
    {
        let expected = format!("an integer from {} to {}", range.start(), range.end());
        self.optional_with(name, &expected, |raw| {
            raw.parse::<T>().ok().filter(|v| range.contains(v))
        })
        .unwrap_or(default)
    }

    /// Ends reading: `Err` lists every problem met, in the order met.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                issues: self.issues,
            })
        }
    }

    /// Moves the problems recorded by a child reader (from [`Env::with_prefix`]) into this one.
    pub fn absorb(&mut self, child: Env) {
        self.issues.extend(child.issues);
    }

    /// Problems recorded so far.
    pub fn issues(&self) -> &[ConfigIssue] {
        &self.issues
    }
}

/// A type that can be read from one environment variable.
pub trait FromEnv: Sized {
    /// What a valid value looks like, for the error message.
    const EXPECTED: &'static str;
    /// Parses the raw value (trimmed, never empty); `None` when it is malformed.
    fn from_env(raw: &str) -> Option<Self>;
}

macro_rules! from_env_via_from_str {
    ($($t:ty => $expected:literal),* $(,)?) => {$(
        impl FromEnv for $t {
            const EXPECTED: &'static str = $expected;
            fn from_env(raw: &str) -> Option<Self> {
                raw.parse().ok()
            }
        }
    )*};
}

from_env_via_from_str! {
    u16 => "an integer from 0 to 65535",
    u32 => "a non-negative integer",
    u64 => "a non-negative integer",
    usize => "a non-negative integer",
    std::net::IpAddr => "an IP address such as 0.0.0.0 or 127.0.0.1",
}

impl FromEnv for String {
    const EXPECTED: &'static str = "a string";
    fn from_env(raw: &str) -> Option<Self> {
        Some(raw.to_owned())
    }
}

impl FromEnv for std::path::PathBuf {
    const EXPECTED: &'static str = "a file system path";
    fn from_env(raw: &str) -> Option<Self> {
        Some(raw.into())
    }
}

impl FromEnv for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_env(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

impl FromEnv for Duration {
    const EXPECTED: &'static str = "a duration such as 500ms, 30s, 15m or 24h";
    fn from_env(raw: &str) -> Option<Self> {
        humantime::parse_duration(raw).ok()
    }
}

/// The deployment environment; production turns insecure defaults into start-up errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// A developer's machine (`development` or `dev`); the default.
    #[default]
    Development,
    /// Automated tests (`test`).
    Test,
    /// A pre-production deployment (`staging`); as lenient as development.
    Staging,
    /// Production (`production` or `prod`): insecure defaults are refused.
    Production,
}

impl Environment {
    /// Whether insecure settings (a missing or short signing secret, say) fail start-up.
    pub fn is_production(self) -> bool {
        self == Environment::Production
    }

    /// Its canonical name, lower-case: `development`, `test`, `staging`, `production`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl FromEnv for Environment {
    const EXPECTED: &'static str = "one of development, test, staging, production";
    fn from_env(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "development" | "dev" => Some(Environment::Development),
            "test" => Some(Environment::Test),
            "staging" => Some(Environment::Staging),
            "production" | "prod" => Some(Environment::Production),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let mut env = Env::from_pairs([("PORT", "http"), ("DB_QUERY_TIMEOUT", "soon")]);
        let port: u16 = env.or("PORT", 8081);
        let timeout = env.or("DB_QUERY_TIMEOUT", Duration::from_secs(30));
        let _: Option<String> = env.required("SERVICE_NAME");
        assert_eq!(port, 8081);
        assert_eq!(timeout, Duration::from_secs(30));
        let err = env.finish().unwrap_err();
        let names: Vec<_> = err.issues.iter().map(|i| i.variable.as_str()).collect();
        assert_eq!(names, ["PORT", "DB_QUERY_TIMEOUT", "SERVICE_NAME"]);
        let message = err.to_string();
        assert!(message.contains("PORT=\"http\": expected an integer from 0 to 65535"));
        assert!(message.contains("DB_QUERY_TIMEOUT=\"soon\": expected a duration"));
        assert!(message.contains("SERVICE_NAME: expected a string (required)"));
    }

    #[test]
    fn valid_values_are_parsed() {
        let mut env = Env::from_pairs([
            ("PORT", "9000"),
            ("JWT_EXPIRATION", "24h"),
            ("ENVIRONMENT", "production"),
            ("FLAG", "yes"),
        ]);
        assert_eq!(env.or::<u16>("PORT", 1), 9000);
        assert_eq!(
            env.or("JWT_EXPIRATION", Duration::ZERO),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            env.or("ENVIRONMENT", Environment::Development),
            Environment::Production
        );
        assert!(env.or("FLAG", false));
        assert!(env.finish().is_ok());
    }

    #[test]
    fn prefixed_variable_wins_over_bare_one() {
        let env = Env::from_pairs([("PORT", "9000"), ("USER_SERVICE_PORT", "9100")]);
        let mut user = env.with_prefix("USER_SERVICE_");
        assert_eq!(user.or::<u16>("PORT", 0), 9100);
        let mut other = env.with_prefix("ORDER_SERVICE_");
        assert_eq!(other.or::<u16>("PORT", 0), 9000);
    }

    #[test]
    fn prefixed_errors_name_the_prefixed_variable() {
        let env = Env::from_pairs([("USER_SERVICE_PORT", "x")]);
        let mut user = env.with_prefix("USER_SERVICE_");
        let _ = user.or::<u16>("PORT", 0);
        let err = user.finish().unwrap_err();
        assert_eq!(err.issues[0].variable, "USER_SERVICE_PORT");
    }

    #[test]
    fn defaults_apply_only_when_unset() {
        let env = Env::from_pairs([("PORT", "9000")]);
        let mut child = env.with_defaults([("PORT", "1"), ("HOST", "127.0.0.1")]);
        assert_eq!(child.or::<u16>("PORT", 0), 9000);
        assert_eq!(child.or("HOST", String::new()), "127.0.0.1");
        let mut prefixed = child.with_prefix("USER_SERVICE_");
        assert_eq!(prefixed.or("HOST", String::new()), "127.0.0.1");
    }

    #[test]
    fn isolated_names_ignore_the_bare_variable() {
        let env = Env::from_pairs([("PORT", "9000"), ("HOST", "::1")]);
        let mut service = env
            .with_defaults([("PORT", "8081")])
            .isolating(&["PORT"])
            .with_prefix("USER_SERVICE_");
        assert_eq!(service.or::<u16>("PORT", 0), 8081);
        assert_eq!(service.or("HOST", String::new()), "::1");
        let env = Env::from_pairs([("USER_SERVICE_PORT", "9100")]);
        let mut service = env.isolating(&["PORT"]).with_prefix("USER_SERVICE_");
        assert_eq!(service.or::<u16>("PORT", 0), 9100);
    }

    #[test]
    fn secrets_are_never_echoed() {
        let mut env = Env::from_pairs([("JWT_SECRET", "hunter2")]);
        let secret = env.secret("JWT_SECRET");
        assert_eq!(
            secret.map(|s| s.expose_secret().to_owned()),
            Some("hunter2".into())
        );
        env.report("JWT_SECRET", "at least 32 bytes");
        let message = env.finish().unwrap_err().to_string();
        assert!(!message.contains("hunter2"));
        assert!(message.contains("JWT_SECRET: expected at least 32 bytes"));
    }

    #[test]
    fn range_is_enforced() {
        let mut env = Env::from_pairs([("DB_MAX_CONNECTIONS", "0")]);
        assert_eq!(env.in_range("DB_MAX_CONNECTIONS", 10u32, 1..=1000), 10);
        let err = env.finish().unwrap_err();
        assert!(err.to_string().contains("an integer from 1 to 1000"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let mut env = Env::from_pairs([("PORT", "  ")]);
        assert_eq!(env.or::<u16>("PORT", 7), 7);
        assert!(env.finish().is_ok());
    }
}
