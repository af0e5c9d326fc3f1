//! The user service's configuration, read from the environment.

use std::time::Duration;

use platform_auth::JwtConfig;
use platform_cache::RedisConfig;
use platform_config::{Env, SecretString};
use platform_db::DatabaseConfig;
use platform_http::{ServerConfig, ServerDefaults};

use crate::domain::{Email, Password, UserName};
use crate::passwords::PasswordConfig;

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "user-service",
    port: 8081,
    grpc_port: 9081,
};

/// An administrator to create at start-up if absent (`ADMIN_EMAIL`, `ADMIN_PASSWORD`,
/// `ADMIN_NAME`).
#[derive(Debug, Clone)]
pub struct AdminSeed {
    pub email: Email,
    pub name: UserName,
    pub password: Password,
}

#[derive(Debug, Clone)]
pub struct UserServiceConfig {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// Checked by `/ready` when set.
    pub redis: Option<RedisConfig>,
    pub jwt: JwtConfig,
    pub passwords: PasswordConfig,
    /// `REFRESH_TOKEN_EXPIRATION`: lifetime of a refresh token (default 7 days).
    pub refresh_token_ttl: Duration,
    pub admin: Option<AdminSeed>,
}

impl UserServiceConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let server = ServerConfig::from_env(env, DEFAULTS);
        let jwt = JwtConfig::from_env(env, server.environment);
        Self {
            database: DatabaseConfig::from_env(env),
            redis: RedisConfig::from_env(env),
            jwt,
            passwords: PasswordConfig::from_env(env),
            refresh_token_ttl: env.or(
                "REFRESH_TOKEN_EXPIRATION",
                Duration::from_secs(7 * 24 * 3600),
            ),
            admin: admin_from_env(env),
            server,
        }
    }

    /// A configuration for tests: loopback, free ports, cheap hashing, a known JWT secret.
    pub fn for_tests(database: DatabaseConfig, jwt_secret: &str) -> Self {
        Self {
            server: ServerConfig::for_tests(DEFAULTS.name),
            database,
            redis: None,
            jwt: JwtConfig::with_secret(jwt_secret),
            passwords: PasswordConfig::fast_for_tests(),
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
