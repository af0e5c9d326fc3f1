//! The settings of the logging and tracing pipeline, read from the environment apart from
//! their use so every variable's problem is reported at start-up, before anything installs.

use opentelemetry_sdk::trace::Sampler;
use platform_config::{Env, Environment, FromEnv};
use tracing_subscriber::EnvFilter;

/// How log lines are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    #[default]
    Json,
    /// Multi-line, coloured, for a developer's terminal.
    Pretty,
    /// One short human-readable line per event (the default of `platform up`).
    Compact,
}

impl FromEnv for LogFormat {
    const EXPECTED: &'static str = "json, pretty or compact";
    fn from_env(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "json" => Some(LogFormat::Json),
            "pretty" => Some(LogFormat::Pretty),
            "compact" | "text" => Some(LogFormat::Compact),
            _ => None,
        }
    }
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, as the
/// OpenTelemetry specification names them). The default follows the caller's decision and
/// records every trace that starts here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every trace (`always_on`), whatever the caller decided.
    AlwaysOn,
    /// No trace (`always_off`): nothing is exported.
    AlwaysOff,
    /// This fraction of traces, by trace id.
    Ratio(f64),
    /// The caller's decision; for traces that start here, the inner choice.
    ParentBased(Root),
}

/// The choice for traces that start in this process, under [`Sampling::ParentBased`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// Record every trace that starts here (`parentbased_always_on`, the default).
    AlwaysOn,
    /// Record none of them (`parentbased_always_off`).
    AlwaysOff,
    /// This fraction of them, by trace id (`parentbased_traceidratio`).
    Ratio(f64),
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::ParentBased(Root::AlwaysOn)
    }
}

impl Sampling {
    const EXPECTED: &'static str = "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio";

    fn from_env(env: &mut Env) -> Self {
        let ratio = env
            .optional_with("OTEL_TRACES_SAMPLER_ARG", "a ratio from 0 to 1", |raw| {
                raw.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
            })
            .unwrap_or(1.0);
        env.optional_with("OTEL_TRACES_SAMPLER", Self::EXPECTED, |raw| {
            Some(match raw.trim().to_ascii_lowercase().as_str() {
                "always_on" => Sampling::AlwaysOn,
                "always_off" => Sampling::AlwaysOff,
                "traceidratio" => Sampling::Ratio(ratio),
                "parentbased_always_on" => Sampling::ParentBased(Root::AlwaysOn),
                "parentbased_always_off" => Sampling::ParentBased(Root::AlwaysOff),
                "parentbased_traceidratio" => Sampling::ParentBased(Root::Ratio(ratio)),
                _ => return None,
            })
        })
        .unwrap_or_default()
    }

    pub(crate) fn sampler(self) -> Sampler {
        let root = |root: Root| match root {
            Root::AlwaysOn => Sampler::AlwaysOn,
            Root::AlwaysOff => Sampler::AlwaysOff,
            Root::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
        };
        match self {
            Sampling::AlwaysOn => Sampler::AlwaysOn,
            Sampling::AlwaysOff => Sampler::AlwaysOff,
            Sampling::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Sampling::ParentBased(inner) => Sampler::ParentBased(Box::new(root(inner))),
        }
    }
}

/// Settings of the logging and tracing pipeline.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `LOG_FORMAT` (`json`, `pretty`, or `compact`/`text`); default JSON.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive string.
    pub filter: String,
    /// OTLP/gRPC collector address (Jaeger accepts OTLP on :4317); `None` exports nothing.
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` over `OTEL_EXPORTER_OTLP_ENDPOINT`; nothing when
    /// `OTEL_SDK_DISABLED=true`. The exporter reads `OTEL_EXPORTER_OTLP_HEADERS` and
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` itself.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_TRACES_SAMPLER` with its ratio in `OTEL_TRACES_SAMPLER_ARG` (0 to 1, default 1);
    /// default `parentbased_always_on`.
    pub sampling: Sampling,
    /// `OTEL_SERVICE_NAME`: names every span of the process, whichever service made it.
    pub service_name: Option<String>,
    /// `deployment.environment.name` of every span (`ENVIRONMENT`, default development).
    pub environment: String,
}

/// Crates whose `info` logs are per-query or per-connection noise. rustls warns once per
/// connection about what the client sent (an IP address as the SNI name, as h2load and
/// `curl https://127.0.0.1` do): a line per connection that any client can trigger, so only
/// its errors are kept.
pub(crate) const QUIET: &str = "sqlx=warn,sea_orm=warn,sea_orm_migration=warn,hyper=warn,hyper_util=warn,h2=warn,tower=warn,opentelemetry=warn,rustls=error";

impl TelemetryConfig {
    /// Reads the settings; problems are recorded in `env`. The filter is `RUST_LOG` when set,
    /// else `LOG_LEVEL` (default `info`) with the per-query and per-connection crates quieted.
    pub fn from_env(env: &mut Env) -> Self {
        let log_format = env.or("LOG_FORMAT", LogFormat::Json);
        let filter = match env.optional::<String>("RUST_LOG") {
            Some(filter) => filter,
            None => {
                let level = env.optional_with(
                    "LOG_LEVEL",
                    "one of error, warn, info, debug, trace",
                    |raw| {
                        let raw = raw.to_ascii_lowercase();
                        ["error", "warn", "info", "debug", "trace"]
                            .contains(&raw.as_str())
                            .then_some(raw)
                    },
                );
                format!("{},{QUIET}", level.as_deref().unwrap_or("info"))
            }
        };
        if EnvFilter::try_new(&filter).is_err() {
            env.report("RUST_LOG", "a valid tracing filter such as info,sqlx=warn");
        }
        let url = |raw: &str| {
            (raw.starts_with("http://") || raw.starts_with("https://")).then(|| raw.to_owned())
        };
        const URL: &str = "an http:// or https:// URL of an OTLP/gRPC collector";
        let traces_endpoint = env.optional_with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", URL, url);
        let endpoint = env.optional_with("OTEL_EXPORTER_OTLP_ENDPOINT", URL, url);
        let disabled = env.or("OTEL_SDK_DISABLED", false);
        let sampling = Sampling::from_env(env);
        let service_name = env
            .optional::<String>("OTEL_SERVICE_NAME")
            .filter(|name| !name.trim().is_empty());
        let environment = env
            .or("ENVIRONMENT", Environment::Development)
            .as_str()
            .to_owned();
        Self {
            log_format,
            filter,
            otlp_endpoint: if disabled {
                None
            } else {
                traces_endpoint.or(endpoint)
            },
            sampling,
            service_name,
            environment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_bad_values_and_names_them() {
        let mut env = Env::from_pairs([
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "loud"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4317"),
        ]);
        let _ = TelemetryConfig::from_env(&mut env);
        let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        assert_eq!(
            vars,
            ["LOG_FORMAT", "LOG_LEVEL", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        );
    }

    #[test]
    fn sampling_follows_the_otel_variables() {
        let sampling = |pairs: &[(&str, &str)]| {
            let mut env = Env::from_pairs(pairs.iter().copied());
            let config = TelemetryConfig::from_env(&mut env);
            let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
            (config.sampling, vars)
        };
        assert_eq!(
            sampling(&[]),
            (Sampling::ParentBased(Root::AlwaysOn), vec![])
        );
        assert_eq!(
            sampling(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]),
            (Sampling::ParentBased(Root::Ratio(0.25)), vec![])
        );
        assert_eq!(
            sampling(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            (Sampling::AlwaysOff, vec![])
        );
        let (_, problems) = sampling(&[
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ]);
        assert_eq!(problems, ["OTEL_TRACES_SAMPLER_ARG", "OTEL_TRACES_SAMPLER"]);
    }

    #[test]
    fn the_traces_endpoint_wins_and_the_sdk_can_be_disabled() {
        let config = |pairs: &[(&str, &str)]| {
            TelemetryConfig::from_env(&mut Env::from_pairs(pairs.iter().copied()))
        };
        let both = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ];
        assert_eq!(
            config(&both).otlp_endpoint.as_deref(),
            Some("http://traces:4317")
        );
        let disabled = [both[0], ("OTEL_SDK_DISABLED", "true")];
        assert_eq!(config(&disabled).otlp_endpoint, None);
        let named = config(&[("OTEL_SERVICE_NAME", "shop"), ("ENVIRONMENT", "staging")]);
        assert_eq!(named.service_name.as_deref(), Some("shop"));
        assert_eq!(named.environment, "staging");
    }

    #[test]
    fn default_filter_quiets_noisy_crates() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        let config = TelemetryConfig::from_env(&mut env);
        assert!(config.filter.starts_with("info,"));
        assert!(config.filter.contains("sqlx=warn"));
        assert!(config.otlp_endpoint.is_none());
    }
}
