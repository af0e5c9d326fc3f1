//! CORS from the environment (`CORS_ALLOWED_ORIGINS`, `CORS_ALLOWED_METHODS`,
//! `CORS_ALLOWED_HEADERS`, `CORS_ALLOW_CREDENTIALS`, `CORS_MAX_AGE`).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use platform_config::Env;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// CORS policy; `None` origins means CORS is off (no headers, preflights not answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// `*` for any, or exact origins such as `https://shop.example.com`.
    pub origins: Option<Vec<String>>,
    /// `CORS_ALLOWED_METHODS`, comma-separated (default `GET`, `POST`, `PUT`, `PATCH`,
    /// `DELETE`, `OPTIONS`).
    pub methods: Vec<Method>,
    /// `CORS_ALLOWED_HEADERS`, comma-separated (default `authorization`, `content-type`,
    /// `idempotency-key`, `x-request-id`, `traceparent`).
    pub headers: Vec<HeaderName>,
    /// `CORS_ALLOW_CREDENTIALS` (default `false`); refused with the origin `*`, which
    /// browsers do not accept with credentials.
    pub credentials: bool,
    /// `CORS_MAX_AGE`: how long browsers may cache a preflight's answer (default 10 min).
    pub max_age: Duration,
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl CorsConfig {
    /// Reads the `CORS_*` variables; CORS stays off unless `CORS_ALLOWED_ORIGINS` is set.
    /// Malformed values are recorded in `env`.
    pub fn from_env(env: &mut Env) -> Self {
        let origins = env.optional_with(
            "CORS_ALLOWED_ORIGINS",
            "* or a comma-separated list of origins such as https://shop.example.com",
            |raw| {
                let origins = list(raw);
                let valid = origins.iter().all(|o| {
                    o == "*"
                        || ((o.starts_with("http://") || o.starts_with("https://"))
                            && HeaderValue::from_str(o).is_ok())
                });
                (valid && !origins.is_empty()).then_some(origins)
            },
        );
        let methods = env
            .optional_with(
                "CORS_ALLOWED_METHODS",
                "a comma-separated list of HTTP methods",
                |raw| {
                    list(raw)
                        .iter()
                        .map(|m| m.parse::<Method>().ok())
                        .collect::<Option<Vec<_>>>()
                },
            )
            .unwrap_or_else(|| {
                vec![
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                    Method::OPTIONS,
                ]
            });
        let headers = env
            .optional_with(
                "CORS_ALLOWED_HEADERS",
                "a comma-separated list of header names",
                |raw| {
                    list(raw)
                        .iter()
                        .map(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
                        .collect::<Option<Vec<_>>>()
                },
            )
            .unwrap_or_else(|| {
                [
                    "authorization",
                    "content-type",
                    "idempotency-key",
                    "x-request-id",
                    "traceparent",
                ]
                .into_iter()
                .map(HeaderName::from_static)
                .collect()
            });
        let credentials = env.or("CORS_ALLOW_CREDENTIALS", false);
        if credentials && origins.as_ref().is_some_and(|o| o.iter().any(|o| o == "*")) {
            env.report("CORS_ALLOW_CREDENTIALS", "false when CORS_ALLOWED_ORIGINS is * (browsers refuse credentials with a wildcard origin)");
        }
        Self {
            origins,
            methods,
            headers,
            credentials,
            max_age: env.or("CORS_MAX_AGE", Duration::from_secs(600)),
        }
    }

    /// The layer, or `None` when CORS is off.
    pub fn layer(&self) -> Option<CorsLayer> {
        let origins = self.origins.as_ref()?;
        let allow_origin = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow_origin)
                .allow_methods(self.methods.clone())
                .allow_headers(self.headers.clone())
                .allow_credentials(self.credentials)
                .expose_headers([
                    HeaderName::from_static("x-request-id"),
                    HeaderName::from_static("ratelimit-limit"),
                    HeaderName::from_static("ratelimit-remaining"),
                    HeaderName::from_static("ratelimit-reset"),
                    HeaderName::from_static("retry-after"),
                ])
                .max_age(self.max_age),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_means_off_and_bad_values_are_reported() {
        let mut env = Env::from_pairs::<[(&str, &str); 0], &str, &str>([]);
        assert!(CorsConfig::from_env(&mut env).layer().is_none());

        let mut env = Env::from_pairs([
            ("CORS_ALLOWED_ORIGINS", "shop.example.com"),
            ("CORS_ALLOWED_METHODS", "GET,FETCH IT"),
        ]);
        let _ = CorsConfig::from_env(&mut env);
        let vars: Vec<_> = env.issues().iter().map(|i| i.variable.clone()).collect();
        assert_eq!(vars, ["CORS_ALLOWED_ORIGINS", "CORS_ALLOWED_METHODS"]);

        let mut env = Env::from_pairs([
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("CORS_ALLOW_CREDENTIALS", "true"),
        ]);
        let _ = CorsConfig::from_env(&mut env);
        assert_eq!(env.issues()[0].variable, "CORS_ALLOW_CREDENTIALS");
    }
}
