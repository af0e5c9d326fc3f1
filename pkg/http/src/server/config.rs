//! What a server is configured with: every setting read from the environment at once (so
//! that all bad ones are reported together), with a service's own defaults beneath.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use platform_config::{Env, Environment};

use crate::client_ip::{INTERNAL_NETWORKS, TrustedProxies};
use crate::framing::{HeadLimits, MAX_REQUEST_LINE};
use crate::guard::GuardConfig;
use crate::router::RequestLimits;
use crate::tls::TlsConfig;

/// The settings every server shares.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `SERVICE_NAME`: the `service` label of logs and metrics.
    pub service_name: String,
    /// `ENVIRONMENT`: production turns insecure defaults into start-up errors.
    pub environment: Environment,
    /// `HOST`: the address to listen on.
    pub host: IpAddr,
    /// `PORT`: the HTTP port (0 picks a free one).
    pub port: u16,
    /// `GRPC_PORT`: the gRPC port of services that have one (0 picks a free one).
    pub grpc_port: u16,
    /// `REQUEST_TIMEOUT`: deadline of one request.
    pub request_timeout: Duration,
    /// `MAX_BODY_BYTES`: the largest request body accepted.
    pub max_body_bytes: usize,
    /// `SHUTDOWN_TIMEOUT`: how long in-flight requests may run after a stop signal.
    pub shutdown_timeout: Duration,
    /// `TLS_CERT_FILE` / `TLS_KEY_FILE`: serve HTTPS (HTTP/1.1 and HTTP/2) instead of HTTP.
    pub tls: Option<TlsConfig>,
    /// `HTTP_THREADS`: 0 serves HTTP on the process's shared runtime; n > 0 serves it on n
    /// threads, each with its own single-threaded runtime and its own listening socket
    /// (`SO_REUSEPORT`), nginx-style: a connection never leaves its thread, so requests cost no
    /// cross-thread wake-ups, and each TLS handshake runs on the thread that accepted it. The
    /// gateway's default is one per CPU.
    pub http_threads: usize,
    /// The socket limits every listener enforces.
    pub connections: ConnectionLimits,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-For` / `Forwarded` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `METRICS_PORT`: serve `/metrics` on its own listener (same host) instead of the main
    /// one, so that it can stay internal while the API is public.
    pub metrics_port: Option<u16>,
    /// `METRICS_FEDERATE`: `/metrics` serves every service's registry in this process, not
    /// only this one's (`platform up` turns it on for the gateway, so that one scrape of
    /// `:8080/metrics` covers the whole platform).
    pub metrics_federate: bool,
    /// `GRPC_REFLECTION`: serve gRPC server reflection (off: it tells a caller every method).
    pub grpc_reflection: bool,
}

/// How long a socket may take and how many there may be, per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `HEADER_READ_TIMEOUT`: a request head (and a TLS handshake) must arrive within this
    /// once its first byte has (a client trickling bytes is cut off).
    pub header_read_timeout: Duration,
    /// `IDLE_TIMEOUT`: a keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// `MAX_CONNECTIONS`: open connections per listener; the next one is refused at once
    /// (HTTP: a 503 problem and close; gRPC: closed).
    pub max_connections: usize,
    /// `MAX_HEADER_BYTES`: the largest request head (431 beyond).
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl ConnectionLimits {
    /// Reads the limits, defaults beneath: `HEADER_READ_TIMEOUT` 10s, `IDLE_TIMEOUT` 60s
    /// (neither may be zero), `MAX_CONNECTIONS` 10 000 (1 to 1 000 000), `MAX_HEADER_BYTES`
    /// 16 KiB (1 KiB to 1 MiB). Problems are recorded in `env`.
    pub fn from_env(env: &mut Env) -> Self {
        let defaults = Self::default();
        let header_read_timeout = env.or("HEADER_READ_TIMEOUT", defaults.header_read_timeout);
        let idle_timeout = env.or("IDLE_TIMEOUT", defaults.idle_timeout);
        if header_read_timeout.is_zero() {
            env.report("HEADER_READ_TIMEOUT", "a positive duration such as 10s");
        }
        if idle_timeout.is_zero() {
            env.report("IDLE_TIMEOUT", "a positive duration such as 60s");
        }
        Self {
            header_read_timeout,
            idle_timeout,
            max_connections: env.in_range(
                "MAX_CONNECTIONS",
                defaults.max_connections,
                1..=1_000_000,
            ),
            max_header_bytes: env.in_range(
                "MAX_HEADER_BYTES",
                defaults.max_header_bytes,
                1024..=1024 * 1024,
            ),
        }
    }

    /// What the guard of every connection enforces.
    pub fn guard(&self) -> GuardConfig {
        GuardConfig {
            head: HeadLimits {
                max_head_bytes: self.max_header_bytes,
                max_request_line: MAX_REQUEST_LINE.min(self.max_header_bytes),
            },
            header_read_timeout: self.header_read_timeout,
            idle_timeout: Some(self.idle_timeout),
        }
    }
}

/// A service's own defaults, overridden by the environment.
#[derive(Debug, Clone, Copy)]
pub struct ServerDefaults {
    /// The default of `SERVICE_NAME`.
    pub name: &'static str,
    /// The default of `PORT`.
    pub port: u16,
    /// The default of `GRPC_PORT` (unused by services without gRPC).
    pub grpc_port: u16,
    /// The gateway's is longer than its upstream timeout, so a slow upstream gets the precise
    /// 504 rather than the generic deadline.
    pub request_timeout: Duration,
    /// Serve HTTP thread-per-core by default (the gateway: pure I/O, no blocking work).
    pub per_core: bool,
    /// Faces clients (the gateway): listens on every interface and trusts no proxy by default.
    /// Internal services listen on loopback and trust the internal networks' proxies.
    pub edge: bool,
}

impl ServerConfig {
    /// Reads every setting, `defaults` beneath; problems are recorded in `env`. Other
    /// defaults: `HOST` every interface at the edge, loopback otherwise; `MAX_BODY_BYTES`
    /// 1 MiB (up to 1 GiB); `SHUTDOWN_TIMEOUT` 30s; `HTTP_THREADS` one per core when
    /// `per_core`, else 0; `TRUSTED_PROXIES` nobody at the edge, the internal networks
    /// otherwise; `METRICS_FEDERATE` and `GRPC_REFLECTION` off.
    pub fn from_env(env: &mut Env, defaults: ServerDefaults) -> Self {
        Self {
            service_name: env.or("SERVICE_NAME", defaults.name.to_owned()),
            environment: env.or("ENVIRONMENT", Environment::Development),
            host: env.or(
                "HOST",
                IpAddr::V4(if defaults.edge {
                    Ipv4Addr::UNSPECIFIED
                } else {
                    Ipv4Addr::LOCALHOST
                }),
            ),
            port: env.or("PORT", defaults.port),
            grpc_port: env.or("GRPC_PORT", defaults.grpc_port),
            request_timeout: env.or("REQUEST_TIMEOUT", defaults.request_timeout),
            max_body_bytes: env.in_range("MAX_BODY_BYTES", 1024 * 1024, 1..=1024 * 1024 * 1024),
            shutdown_timeout: env.or("SHUTDOWN_TIMEOUT", Duration::from_secs(30)),
            tls: TlsConfig::from_env(env),
            http_threads: env.in_range(
                "HTTP_THREADS",
                if defaults.per_core {
                    available_cores()
                } else {
                    0
                },
                0..=1024,
            ),
            connections: ConnectionLimits::from_env(env),
            trusted_proxies: TrustedProxies::from_env(
                env,
                if defaults.edge { "" } else { INTERNAL_NETWORKS },
            ),
            metrics_port: env.optional("METRICS_PORT"),
            metrics_federate: env.or("METRICS_FEDERATE", false),
            grpc_reflection: env.or("GRPC_REFLECTION", false),
        }
    }

    /// A configuration for tests: loopback, free ports, short timeouts.
    pub fn for_tests(name: &str) -> Self {
        Self {
            service_name: name.to_owned(),
            environment: Environment::Test,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            grpc_port: 0,
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            shutdown_timeout: Duration::from_secs(5),
            tls: None,
            http_threads: 0,
            connections: ConnectionLimits::default(),
            trusted_proxies: TrustedProxies::default(),
            metrics_port: None,
            metrics_federate: false,
            grpc_reflection: false,
        }
    }

    pub(super) fn limits(&self) -> RequestLimits {
        RequestLimits {
            timeout: self.request_timeout,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_server_settings_are_all_reported() {
        let mut env = Env::from_pairs([
            ("PORT", "99999"),
            ("REQUEST_TIMEOUT", "forever"),
            ("HOST", "localhost:80"),
        ]);
        let _ = ServerConfig::from_env(
            &mut env,
            ServerDefaults {
                name: "x",
                port: 1,
                grpc_port: 2,
                request_timeout: Duration::from_secs(30),
                per_core: false,
                edge: false,
            },
        );
        let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        assert_eq!(vars, ["HOST", "PORT", "REQUEST_TIMEOUT"]);
    }
}
