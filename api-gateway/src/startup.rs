//! The gateway, wired: its parts (`parts.rs`) bound to one server, with the fast path in
//! front when enabled, and the tasks that run beside it.

use std::sync::Arc;

use platform_config::Env;
use platform_http::{BoxError, CancellationToken, Server};

use crate::config::GatewayConfig;
use crate::fast::FastPath;
use crate::parts::{self, Beside};

/// A built, bound gateway.
pub struct Application {
    server: Server,
    beside: Beside,
}

impl Application {
    /// Builds the parts and binds; nothing is served yet.
    pub async fn build(config: GatewayConfig) -> Result<Self, BoxError> {
        let parts = parts::assemble(&config).await?;
        let mut server = Server::bind(&config.server, parts.service).await?;
        if config.fast_path {
            let name = &config.server.service_name;
            let front = FastPath::new(parts.state, name, parts.cors_on);
            server = server.with_front(Arc::new(front));
        }
        Ok(Self {
            server,
            beside: parts.beside,
        })
    }
}

impl platform_http::Service for Application {
    type Config = GatewayConfig;
    const NAME: &'static str = crate::config::DEFAULTS.name;
    const ENV_PREFIX: &'static str = "API_GATEWAY_";

    fn config_from_env(env: &mut Env) -> GatewayConfig {
        GatewayConfig::from_env(env)
    }

    async fn build(config: GatewayConfig) -> Result<Self, BoxError> {
        Application::build(config).await
    }

    fn server(&self) -> &Server {
        &self.server
    }

    /// Starts what runs beside the server, then serves until `shutdown`.
    async fn run(self, shutdown: CancellationToken) -> Result<(), BoxError> {
        self.beside.start(&shutdown);
        Ok(self.server.run(shutdown).await?)
    }
}
