//! Which providers are configured, read from the environment, and the [`Senders`] built from
//! them. Every provider is optional: a channel without one falls back to the log sink, which
//! is what embedded mode and local development want, and [`Senders::log_only`] says which
//! channels did so that start-up can announce it.

use std::sync::Arc;
use std::time::Duration;

use platform_config::Env;

use super::{
    FcmConfig, FcmSender, Senders, SetupError, SmtpConfig, SmtpSender, TwilioConfig, TwilioSender,
};

/// Used when `NOTIFY_TIMEOUT` is unset: generous for a provider API call or an SMTP command,
/// short enough that a stuck provider does not hold a delivery worker for long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured providers; `None` sections fall back to the log sink. `Debug` shows no
/// secrets.
#[derive(Debug, Clone, Default)]
pub struct ChannelsConfig {
    pub smtp: Option<SmtpConfig>,
    pub twilio: Option<TwilioConfig>,
    pub fcm: Option<FcmConfig>,
}

impl ChannelsConfig {
    /// Reads `NOTIFY_TIMEOUT` (default 10s) and each provider's section (see
    /// [`SmtpConfig::from_env`], [`TwilioConfig::from_env`], [`FcmConfig::from_env`]).
    /// Incomplete or malformed sections are reported on `env` and left out.
    pub fn from_env(env: &mut Env) -> Self {
        let timeout = platform_outbound::timeout(env, "NOTIFY_TIMEOUT", DEFAULT_TIMEOUT);
        Self {
            smtp: SmtpConfig::from_env(env, timeout),
            twilio: TwilioConfig::from_env(env, timeout),
            fcm: FcmConfig::from_env(env, timeout),
        }
    }

    /// One sender per channel; log senders (sharing one [`super::SentLog`]) where no provider
    /// is configured. Must be called inside a Tokio runtime when SMTP is configured.
    pub fn build(&self) -> Result<Senders, SetupError> {
        let mut senders = Senders::logging();
        if let Some(smtp) = &self.smtp {
            senders = senders.with_email(Arc::new(SmtpSender::new(smtp)?));
        }
        if let Some(twilio) = &self.twilio {
            senders = senders.with_sms(Arc::new(TwilioSender::new(twilio.clone())?));
        }
        if let Some(fcm) = &self.fcm {
            senders = senders.with_push(Arc::new(FcmSender::new(fcm.clone())?));
        }
        Ok(senders)
    }
}
