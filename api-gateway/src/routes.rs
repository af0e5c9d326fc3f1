//! The route table: which paths go to which service, who may call them, and how patiently.
//!
//! Read from `GATEWAY_CONFIG` (TOML, or YAML by its `.yaml`/`.yml` extension) when set, else the
//! built-in [`DEFAULT_CONFIG`] for the platform's services. A route matches a path prefix at a
//! segment boundary (or the exact path), optionally only some methods; the most specific route
//! wins (longest prefix, then exact, then method-specific). Each service lists one or more
//! upstream URLs and a balancing strategy; `<SERVICE>_URL` (comma-separated, `url` or
//! `url@weight`) and `<SERVICE>_BALANCER` in the environment override the file.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use platform_proxy::balance::Strategy;
use platform_service::ports::{self, Ports};
use serde::Deserialize;

/// The platform's services and their default ports (one table: `platform_service::ports`);
/// the built-in configuration sends each to `127.0.0.1` on its port.
const SERVICES: [(&str, Ports); 6] = [
    ("user-service", ports::USER),
    ("product-service", ports::PRODUCT),
    ("order-service", ports::ORDER),
    ("payment-service", ports::PAYMENT),
    ("notification-service", ports::NOTIFICATION),
    ("event-store", ports::EVENT_STORE),
];

/// The built-in routes: every path of the specification (the services are [`SERVICES`]).
pub const DEFAULT_CONFIG: &str = r#"

[[routes]]
prefix = "/api/v1/auth"
service = "user-service"
auth = "public"

[[routes]]
prefix = "/api/v1/users"
exact = true
methods = ["POST"]
service = "user-service"
auth = "public"

[[routes]]
prefix = "/api/v1/users"
service = "user-service"
auth = "user"
idempotent = true

[[routes]]
prefix = "/api/v1/products"
service = "product-service"
auth = "public"

[[routes]]
prefix = "/api/v1/admin/products"
service = "product-service"
auth = "admin"

[[routes]]
prefix = "/api/v1/orders"
service = "order-service"
auth = "user"

[[routes]]
prefix = "/api/v1/admin/orders"
service = "order-service"
auth = "admin"

[[routes]]
prefix = "/api/v1/payments"
service = "payment-service"
auth = "user"

[[routes]]
prefix = "/api/v1/admin/payments"
service = "payment-service"
auth = "admin"

[[routes]]
prefix = "/api/v1/webhooks/payments"
service = "payment-service"
auth = "public"
retries = 0

[[routes]]
prefix = "/api/v1/notifications"
service = "notification-service"
auth = "user"
idempotent = true

[[routes]]
prefix = "/api/v1/admin/events"
service = "event-store"
auth = "admin"

[[routes]]
prefix = "/api/v1/admin/audit"
service = "event-store"
auth = "admin"
"#;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// Anyone; a valid token still identifies the caller to the service.
    Public,
    /// A valid access token.
    #[default]
    User,
    /// A valid access token with the admin role.
    Admin,
}

/// One upstream address, with an optional weight for weighted round-robin.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum UpstreamSpec {
    Url(String),
    Weighted { url: String, weight: u32 },
}

impl UpstreamSpec {
    fn parts(&self) -> (String, u32) {
        match self {
            UpstreamSpec::Url(url) => (url.clone(), 1),
            UpstreamSpec::Weighted { url, weight } => (url.clone(), *weight),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub upstreams: Vec<UpstreamSpec>,
    #[serde(default)]
    pub balancer: Strategy,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub prefix: String,
    pub service: String,
    /// Only the prefix itself, not the paths below it.
    #[serde(default)]
    pub exact: bool,
    /// Only these methods (all when empty).
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub auth: Auth,
    /// Total time for the request, retries included (e.g. `30s`).
    pub timeout: Option<String>,
    /// Time for one attempt.
    pub try_timeout: Option<String>,
    /// Retries of a failed attempt (see [`Route::idempotent`] for which requests may be
    /// retried at all).
    pub retries: Option<u32>,
    /// The route's PUT and DELETE may be repeated (they set a state rather than change it
    /// by an amount). Without it, a PUT or DELETE that may have reached the upstream is never
    /// sent again. GET, HEAD and OPTIONS always may; POST and PATCH only with an
    /// `Idempotency-Key`.
    #[serde(default)]
    pub idempotent: bool,
    /// Overrides `RATE_LIMIT_PER_MINUTE` for this route (0: unlimited).
    pub rate_limit_per_minute: Option<u32>,
}

/// The file's shape.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

impl FileConfig {
    pub fn defaults() -> Self {
        let services: String = SERVICES
            .iter()
            .map(|(name, ports)| {
                format!(
                    "[services.{name}]\nupstreams = [\"{}\"]\n",
                    ports.local_http()
                )
            })
            .collect();
        // The built-in text is tested to parse; an error here would be a build defect.
        toml::from_str(&(services + DEFAULT_CONFIG)).unwrap_or(FileConfig {
            services: BTreeMap::new(),
            routes: Vec::new(),
        })
    }

    /// Parses a configuration file, TOML or (by extension) YAML.
    pub fn parse(path: &str, text: &str) -> Result<Self, String> {
        if path.ends_with(".yaml") || path.ends_with(".yml") {
            yaml_serde::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| e.to_string())
        }
    }
}

/// A service and where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDef {
    pub name: String,
    /// (URL, weight) of each endpoint.
    pub upstreams: Vec<(String, u32)>,
    pub strategy: Strategy,
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub exact: bool,
    pub methods: Vec<Method>,
    pub service: String,
    pub auth: Auth,
    pub timeout: Duration,
    pub try_timeout: Duration,
    pub retries: u32,
    /// PUT and DELETE on this route may be repeated.
    pub idempotent: bool,
    /// `Some(None)`: explicitly unlimited; `None`: the global limit.
    pub rate_limit: Option<Option<NonZeroU32>>,
    /// The route's name in metrics and logs.
    pub label: Arc<str>,
}

impl Route {
    fn matches(&self, method: &Method, path: &str) -> bool {
        let path_matches = if self.exact {
            path == self.prefix || path.strip_prefix(&self.prefix) == Some("/")
        } else {
            path == self.prefix
                || path
                    .strip_prefix(&self.prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        path_matches && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// Every route, most specific first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// The route for a request, if any.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(method, path))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Defaults for routes that do not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRIES: u32 = 2;

fn duration(raw: &Option<String>, what: &str, errors: &mut Vec<String>) -> Option<Duration> {
    let raw = raw.as_ref()?;
    match humantime::parse_duration(raw) {
        Ok(duration) if !duration.is_zero() => Some(duration),
        _ => {
            errors.push(format!(
                "{what}: {raw:?} is not a positive duration such as 10s"
            ));
            None
        }
    }
}

/// Validates a file's routes against its services. Every problem is reported.
pub fn build(file: &FileConfig) -> Result<(Vec<ServiceDef>, RouteTable), Vec<String>> {
    let mut errors = Vec::new();
    let mut services = Vec::new();
    for (name, spec) in &file.services {
        if spec.upstreams.is_empty() {
            errors.push(format!("service {name}: at least one upstream is required"));
        }
        let upstreams: Vec<(String, u32)> =
            spec.upstreams.iter().map(UpstreamSpec::parts).collect();
        for (url, weight) in &upstreams {
            if platform_proxy::Upstream::parse(name, url).is_err() {
                errors.push(format!(
                    "service {name}: {url:?} is not an http://host:port URL"
                ));
            }
            if *weight == 0 {
                errors.push(format!("service {name}: weights must be at least 1"));
            }
        }
        services.push(ServiceDef {
            name: name.clone(),
            upstreams,
            strategy: spec.balancer,
        });
    }
    let mut routes = Vec::new();
    for (index, spec) in file.routes.iter().enumerate() {
        let what = format!("route {} ({})", index + 1, spec.prefix);
        let prefix = spec.prefix.trim_end_matches('/').to_owned();
        if !prefix.starts_with("/api/") {
            errors.push(format!("{what}: the prefix must start with /api/"));
        }
        if !file.services.contains_key(&spec.service) {
            errors.push(format!("{what}: unknown service {}", spec.service));
        }
        let mut methods = Vec::new();
        for method in &spec.methods {
            match Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                Ok(method) => methods.push(method),
                Err(_) => errors.push(format!("{what}: {method:?} is not an HTTP method")),
            }
        }
        let timeout = duration(&spec.timeout, &what, &mut errors).unwrap_or(DEFAULT_TIMEOUT);
        let try_timeout = duration(&spec.try_timeout, &what, &mut errors)
            .unwrap_or(timeout)
            .min(timeout);
        let label = format!("{prefix}{}", if spec.exact { "" } else { "/*" });
        routes.push(Route {
            prefix,
            exact: spec.exact,
            methods,
            service: spec.service.clone(),
            auth: spec.auth,
            timeout,
            try_timeout,
            retries: spec.retries.unwrap_or(DEFAULT_RETRIES).min(10),
            idempotent: spec.idempotent,
            rate_limit: spec.rate_limit_per_minute.map(NonZeroU32::new),
            label: Arc::from(label),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Most specific first: longer prefix, then exact, then method-restricted.
    routes.sort_by(|a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then(b.exact.cmp(&a.exact))
            .then(a.methods.is_empty().cmp(&b.methods.is_empty()))
    });
    Ok((services, RouteTable { routes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        build(&FileConfig::defaults()).unwrap().1
    }

    #[test]
    fn the_built_in_configuration_routes_every_path_of_the_specification() {
        let table = table();
        let cases = [
            (
                Method::POST,
                "/api/v1/auth/login",
                "user-service",
                Auth::Public,
            ),
            (Method::POST, "/api/v1/users", "user-service", Auth::Public),
            (Method::GET, "/api/v1/users", "user-service", Auth::User),
            (Method::GET, "/api/v1/users/me", "user-service", Auth::User),
            (
                Method::GET,
                "/api/v1/products/search",
                "product-service",
                Auth::Public,
            ),
            (
                Method::PUT,
                "/api/v1/admin/products/7/inventory",
                "product-service",
                Auth::Admin,
            ),
            (
                Method::POST,
                "/api/v1/orders/1/cancel",
                "order-service",
                Auth::User,
            ),
            (
                Method::POST,
                "/api/v1/payments/1/refund",
                "payment-service",
                Auth::User,
            ),
            (
                Method::POST,
                "/api/v1/webhooks/payments/stripe",
                "payment-service",
                Auth::Public,
            ),
            (
                Method::PUT,
                "/api/v1/notifications/1/read",
                "notification-service",
                Auth::User,
            ),
            (
                Method::GET,
                "/api/v1/admin/events/dead-letters",
                "event-store",
                Auth::Admin,
            ),
            (
                Method::GET,
                "/api/v1/admin/audit",
                "event-store",
                Auth::Admin,
            ),
        ];
        for (method, path, service, auth) in cases {
            let route = table
                .find(&method, path)
                .unwrap_or_else(|| panic!("{method} {path}"));
            assert_eq!(
                (route.service.as_str(), route.auth),
                (service, auth),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn prefixes_match_at_segment_boundaries_only() {
        let table = table();
        assert!(table.find(&Method::GET, "/api/v1/usersx").is_none());
        assert!(table.find(&Method::GET, "/api/v1/unknown").is_none());
        assert!(table.find(&Method::GET, "/health").is_none());
        assert_eq!(
            table.find(&Method::GET, "/api/v1/users/").unwrap().auth,
            Auth::User
        );
    }

    #[test]
    fn yaml_files_work_and_every_mistake_is_reported() {
        let yaml = "services:\n  shop:\n    upstreams:\n      - http://a:1\n      - {url: http://b:2, weight: 3}\n    balancer: weighted_round_robin\nroutes:\n  - prefix: /api/v1/shop/\n    service: shop\n    auth: public\n    timeout: 5s\n    retries: 1\n    rate_limit_per_minute: 0\n";
        let file = FileConfig::parse("gateway.yaml", yaml).unwrap();
        let (services, table) = build(&file).unwrap();
        assert_eq!(
            services[0].upstreams,
            [("http://a:1".to_owned(), 1), ("http://b:2".to_owned(), 3)]
        );
        assert_eq!(services[0].strategy, Strategy::WeightedRoundRobin);
        let route = table.find(&Method::GET, "/api/v1/shop/cart").unwrap();
        assert_eq!(route.timeout, Duration::from_secs(5));
        assert_eq!(route.rate_limit, Some(None), "0 means unlimited");
        assert_eq!(&*route.label, "/api/v1/shop/*");

        let bad = "[services.a]\nupstreams = [\"nope\"]\n[[routes]]\nprefix = \"/v1/x\"\nservice = \"b\"\nmethods = [\"FE TCH\"]\ntimeout = \"soon\"\n";
        let errors = build(&FileConfig::parse("gateway.toml", bad).unwrap()).unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(FileConfig::parse("gateway.toml", "[[routes]]\nunknown = 1").is_err());
    }
}
