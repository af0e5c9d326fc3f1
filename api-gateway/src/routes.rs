//! The route table: which path goes to which service.
//!
//! Built-in defaults for now; the full gateway reads it from `GATEWAY_CONFIG` and adds per-route
//! auth, timeouts and retries. Adding a service means adding a row to [`SERVICES`].

/// One upstream service and the edge paths it serves.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRoutes {
    /// The service's name, as in `/health/{service}`.
    pub service: &'static str,
    /// The variable holding the service's base URL.
    pub url_variable: &'static str,
    /// Where the service listens by default.
    pub default_url: &'static str,
    /// axum route templates forwarded to the service unchanged.
    pub paths: &'static [&'static str],
}

/// Every routed service.
pub const SERVICES: &[ServiceRoutes] = &[
    ServiceRoutes {
        service: "user-service",
        url_variable: "USER_SERVICE_URL",
        default_url: "http://127.0.0.1:8081",
        paths: &[
            "/api/v1/auth/{*rest}",
            "/api/v1/users",
            "/api/v1/users/{*rest}",
        ],
    },
    ServiceRoutes {
        service: "event-store",
        url_variable: "EVENT_STORE_URL",
        default_url: "http://127.0.0.1:8086",
        paths: &["/api/v1/admin/events", "/api/v1/admin/events/{*rest}"],
    },
];
