//! The notification service's configuration, read from the environment.

use std::time::Duration;

use platform_config::{Env, SecretString};
use platform_db::DatabaseConfig;
use platform_http::{BoxError, ServerDefaults};
use platform_service::{CommonConfig, ports};

use crate::channels::{ChannelsConfig, Senders};
use crate::domain::{QuietHours, RateLimit};

pub const DEFAULTS: ServerDefaults = ServerDefaults {
    name: "notification-service",
    port: ports::NOTIFICATION.http,
    grpc_port: ports::NOTIFICATION.grpc,
    request_timeout: Duration::from_secs(30),
    per_core: false,
    edge: false,
};

/// How queued messages are delivered.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `NOTIFY_MAX_ATTEMPTS`: attempts before a message is dead-lettered (`failed`).
    pub max_attempts: u32,
    /// `NOTIFY_RETRY_BASE` / `NOTIFY_RETRY_MAX`: exponential backoff with jitter between
    /// attempts after transient provider errors.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// `NOTIFY_POLL_INTERVAL`: how often the worker looks for due messages when nothing woke
    /// it (new messages wake it at once; this catches retries and other replicas' rows).
    pub poll_interval: Duration,
    /// `NOTIFY_CONCURRENCY`: messages delivered at the same time by one replica.
    pub concurrency: usize,
    /// `NOTIFY_LEASE`: how long a worker holds a message it is delivering; a replica that
    /// dies holding one gives it back after this.
    pub lease: Duration,
    /// `NOTIFY_RATE_LIMIT`: per user per channel, e.g. `20/1h`; `off` for none.
    pub rate_limit: Option<RateLimit>,
    /// `NOTIFY_QUIET_HOURS`: e.g. `22:00-07:00` (UTC): SMS and push wait until it ends.
    pub quiet_hours: Option<QuietHours>,
    /// `NOTIFY_CONTACT_WAIT`: how long an event's email waits for the user's contact. Users'
    /// and orders' events travel on separate streams, so an order can be seen before its
    /// customer's `user.registered`; past the wait the email is suppressed (`no_address`).
    pub contact_wait: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            concurrency: 8,
            lease: Duration::from_secs(60),
            rate_limit: Some(RateLimit {
                max: 30,
                window: Duration::from_secs(3600),
            }),
            quiet_hours: None,
            contact_wait: Duration::from_secs(600),
        }
    }
}

impl DeliverySettings {
    pub fn from_env(env: &mut Env) -> Self {
        let defaults = Self::default();
        let rate_limit = env
            .optional_with(
                "NOTIFY_RATE_LIMIT",
                "COUNT/WINDOW such as 20/1h or 5/10m, or off",
                |raw| RateLimit::parse(raw).ok(),
            )
            .unwrap_or(defaults.rate_limit);
        let quiet_hours = env.optional_with(
            "NOTIFY_QUIET_HOURS",
            "HH:MM-HH:MM in UTC, such as 22:00-07:00",
            |raw| QuietHours::parse(raw).ok(),
        );
        Self {
            max_attempts: env.in_range("NOTIFY_MAX_ATTEMPTS", defaults.max_attempts, 1..=100),
            retry_base: env.or("NOTIFY_RETRY_BASE", defaults.retry_base),
            retry_max: env.or("NOTIFY_RETRY_MAX", defaults.retry_max),
            poll_interval: env.or("NOTIFY_POLL_INTERVAL", defaults.poll_interval),
            concurrency: env.in_range("NOTIFY_CONCURRENCY", defaults.concurrency, 1..=256),
            lease: env.or("NOTIFY_LEASE", defaults.lease),
            rate_limit,
            quiet_hours,
            contact_wait: env.or("NOTIFY_CONTACT_WAIT", defaults.contact_wait),
        }
    }
}

/// The notification service's settings: the common ones (it derefs to them) and its own.
#[derive(Debug, Clone)]
pub struct NotificationServiceConfig {
    /// Server, database, Redis (the event bus only), JWT.
    pub common: CommonConfig,
    /// Which providers deliver email, SMS and push (`SMTP_*`, `TWILIO_*`, `FCM_*`).
    pub channels: ChannelsConfig,
    /// Already-built senders to use instead of building them from `channels`: lets a test
    /// keep a handle on the log sink's record.
    pub senders: Option<Senders>,
    pub delivery: DeliverySettings,
    /// `NOTIFY_SSE_HEARTBEAT`: how often an idle SSE stream sends a comment, so proxies and
    /// clients can tell it is alive.
    pub sse_heartbeat: Duration,
    /// `SSE_MAX_PER_USER`: SSE streams one user may hold open on this replica at once (each
    /// holds a connection and a database poller); one more is refused with 429.
    pub sse_max_per_user: usize,
    /// `NOTIFY_INTERNAL_TOKEN`: lets other services post notifications without a user's
    /// token (`X-Internal-Token`); unset, only administrators can.
    pub internal_token: Option<SecretString>,
}

platform_service::extends_common!(NotificationServiceConfig);

impl NotificationServiceConfig {
    pub fn from_env(env: &mut Env) -> Self {
        let common = CommonConfig::from_env(env, DEFAULTS);
        let internal_token = env.secret("NOTIFY_INTERNAL_TOKEN");
        Self {
            common,
            channels: ChannelsConfig::from_env(env),
            senders: None,
            delivery: DeliverySettings::from_env(env),
            sse_heartbeat: env.or("NOTIFY_SSE_HEARTBEAT", Duration::from_secs(15)),
            sse_max_per_user: env.in_range("SSE_MAX_PER_USER", 5, 1..=1000),
            internal_token,
        }
    }

    /// The senders to deliver with: the ones given (tests), else built from `channels`.
    /// Channels without a provider only log their messages, which is said once, here.
    pub fn senders(&self) -> Result<Senders, BoxError> {
        let senders = match self.senders.clone() {
            Some(senders) => senders,
            None => self.channels.build()?,
        };
        let log_only = senders.log_only();
        if log_only.is_empty() {
            tracing::info!(?senders, "notification providers configured");
        } else {
            let channels: Vec<&str> = log_only.iter().map(|c| c.as_str()).collect();
            tracing::warn!(
                ?senders,
                log_only = ?channels,
                "no provider configured for these channels: their messages are logged, not sent (set SMTP_*, TWILIO_*, FCM_*)"
            );
        }
        Ok(senders)
    }

    /// A configuration for tests: loopback, free ports, a known JWT secret, every channel
    /// to the log sink, quick retries.
    pub fn for_tests(database: DatabaseConfig, jwt_secret: &str) -> Self {
        Self {
            common: CommonConfig::for_tests(DEFAULTS, database, jwt_secret),
            channels: ChannelsConfig::default(),
            senders: None,
            delivery: DeliverySettings {
                retry_base: Duration::from_millis(50),
                retry_max: Duration::from_millis(200),
                poll_interval: Duration::from_millis(100),
                ..DeliverySettings::default()
            },
            sse_heartbeat: Duration::from_secs(15),
            sse_max_per_user: 5,
            internal_token: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = NotificationServiceConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(config.server.port, 8085);
        assert!(config.channels.smtp.is_none());
        assert_eq!(config.delivery.max_attempts, 5);
        assert!(config.delivery.rate_limit.is_some());
        assert!(config.delivery.quiet_hours.is_none());
    }

    #[test]
    fn delivery_settings_are_read_and_checked() {
        let mut env = Env::from_pairs([
            ("NOTIFY_RATE_LIMIT", "off"),
            ("NOTIFY_QUIET_HOURS", "22:00-07:00"),
            ("NOTIFY_MAX_ATTEMPTS", "3"),
            ("NOTIFY_CONTACT_WAIT", "30s"),
        ]);
        let config = NotificationServiceConfig::from_env(&mut env);
        assert!(env.issues().is_empty(), "{:?}", env.issues());
        assert_eq!(config.delivery.rate_limit, None);
        assert!(config.delivery.quiet_hours.is_some());
        assert_eq!(config.delivery.max_attempts, 3);
        assert_eq!(config.delivery.contact_wait, Duration::from_secs(30));

        let mut env = Env::from_pairs([
            ("NOTIFY_RATE_LIMIT", "lots"),
            ("NOTIFY_QUIET_HOURS", "night"),
            ("NOTIFY_MAX_ATTEMPTS", "0"),
        ]);
        let _ = NotificationServiceConfig::from_env(&mut env);
        let mut variables: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        variables.sort();
        assert_eq!(
            variables,
            [
                "NOTIFY_MAX_ATTEMPTS",
                "NOTIFY_QUIET_HOURS",
                "NOTIFY_RATE_LIMIT"
            ]
        );
    }
}
