//! The user service's configuration, read from the environment.

use std::time::Duration;

use platform_config::{Env, SecretString};
use platform_db::DatabaseConfig;
use platform_http::ServerDefaults;
use platform_service::{CommonConfig, ports};

use crate::domain::{Email, Password, UserName};
use crate::passwords::{HashingLimits, PasswordConfig};
use crate::throttle::ThrottleConfig;

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "user-service",
    port: ports::USER.http,
    grpc_port: ports::USER.grpc,
    request_timeout: Duration::from_secs(30),
    per_core: false,
    edge: false,
};

/// An administrator to create at start-up if absent (`ADMIN_EMAIL`, `ADMIN_PASSWORD`,
/// `ADMIN_NAME`).
#[derive(Debug, Clone)]
pub struct AdminSeed {
    pub email: Email,
    pub name: UserName,
    pub password: Password,
}

/// The user service's settings: the common ones (it derefs to them) and its own.
#[derive(Debug, Clone)]
pub struct UserServiceConfig {
    /// Server, database, Redis (required for readiness here: the login throttle lives
    /// there), the bus where `user.*` events go, JWT, service identity.
    pub common: CommonConfig,
    pub passwords: PasswordConfig,
    /// `ARGON2_MAX_CONCURRENT`, `ARGON2_MAX_QUEUE`, `ARGON2_QUEUE_TIMEOUT`.
    pub hashing: HashingLimits,
    /// `LOGIN_MAX_FAILURES`, `LOGIN_FAILURE_WINDOW`, `LOGIN_LOCKOUT`.
    pub throttle: ThrottleConfig,
    /// `REFRESH_TOKEN_EXPIRATION`: lifetime of a refresh token (default 7 days).
    pub refresh_token_ttl: Duration,
    pub admin: Option<AdminSeed>,
}

platform_service::extends_common!(UserServiceConfig);

impl UserServiceConfig {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            common: CommonConfig::from_env(env, DEFAULTS),
            passwords: PasswordConfig::from_env(env),
            hashing: HashingLimits::from_env(env),
            throttle: ThrottleConfig::from_env(env),
            refresh_token_ttl: env.or(
                "REFRESH_TOKEN_EXPIRATION",
                Duration::from_secs(7 * 24 * 3600),
            ),
            admin: admin_from_env(env),
        }
    }

    /// A configuration for tests: loopback, free ports, cheap hashing, a known JWT secret.
    pub fn for_tests(database: DatabaseConfig, jwt_secret: &str) -> Self {
        Self {
            // Tests sign service tokens with the one test secret too.
            common: CommonConfig::for_tests(DEFAULTS, database, jwt_secret),
            passwords: PasswordConfig::fast_for_tests(),
            hashing: HashingLimits::default(),
            throttle: ThrottleConfig::default(),
            refresh_token_ttl: Duration::from_secs(3600),
            admin: None,
        }
    }
}

fn admin_from_env(env: &mut Env) -> Option<AdminSeed> {
    let email = env.optional_with("ADMIN_EMAIL", "a valid email address", |raw| {
        Email::parse(raw).ok()
    });
    let password: Option<SecretString> = env.secret("ADMIN_PASSWORD");
    let name = env.optional_with("ADMIN_NAME", "1 to 100 characters", |raw| {
        UserName::parse(raw).ok()
    });
    let password = match password {
        Some(secret) => {
            match Password::parse(platform_config::ExposeSecret::expose_secret(&secret)) {
                Ok(password) => Some(password),
                Err(error) => {
                    env.report("ADMIN_PASSWORD", format!("a password that {error}"));
                    None
                }
            }
        }
        None => None,
    };
    match (email, password) {
        (Some(email), Some(password)) => Some(AdminSeed {
            email,
            name: name.unwrap_or_else(UserName::administrator),
            password,
        }),
        (None, None) => None,
        (Some(_), None) if !env.is_set("ADMIN_PASSWORD") => {
            env.report("ADMIN_PASSWORD", "a password (required with ADMIN_EMAIL)");
            None
        }
        (None, Some(_)) if !env.is_set("ADMIN_EMAIL") => {
            env.report(
                "ADMIN_EMAIL",
                "an email address (required with ADMIN_PASSWORD)",
            );
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_seed_is_read_and_validated() {
        let mut env = Env::from_pairs([
            ("ADMIN_EMAIL", " Root@Example.com "),
            ("ADMIN_PASSWORD", "a long admin password"),
        ]);
        let config = UserServiceConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        let admin = config.admin.unwrap();
        assert_eq!(admin.email.as_str(), "root@example.com");
        assert_eq!(admin.name.as_str(), "Administrator");
        assert_eq!(admin.password.expose(), "a long admin password");

        let mut env = Env::from_pairs([
            ("ADMIN_EMAIL", "root@example.com"),
            ("ADMIN_PASSWORD", "short"),
        ]);
        let config = UserServiceConfig::from_env(&mut env);
        assert!(config.admin.is_none());
        assert_eq!(env.issues()[0].variable, "ADMIN_PASSWORD");
        assert!(
            env.issues()[0].found.is_none(),
            "the password is not echoed"
        );

        let mut env = Env::from_pairs([("ADMIN_PASSWORD", "a long admin password")]);
        let _ = UserServiceConfig::from_env(&mut env);
        assert_eq!(env.issues()[0].variable, "ADMIN_EMAIL");
    }

    #[test]
    fn defaults_follow_the_specification() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = UserServiceConfig::from_env(&mut env);
        assert!(env.issues().is_empty());
        assert_eq!(config.server.port, 8081);
        assert_eq!(config.jwt.expiration, Duration::from_secs(900));
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(7 * 24 * 3600));
        assert!(config.database.url.is_none());
        assert!(config.redis.is_none());
        assert!(config.admin.is_none());
    }
}
