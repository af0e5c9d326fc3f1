//! The template service, declared: its configuration, schema and Redis use, and the parts it
//! builds on the kit. A service that writes events adds `kit.relay()` (which also prunes its
//! published outbox rows); one that consumes them, `kit.consume(..)`, and, when its handlers
//! record processed events, `kit.prune(Table::ProcessedEvents)`; background work,
//! `kit.task(..)`.

use platform_http::BoxError;
use platform_service::{Apis, Declare, Kit, RedisUse};

use crate::config::{DEFAULTS, TemplateServiceConfig};
use crate::http::AppState;

/// The template service.
pub struct TemplateService;

/// A built, bound template service.
pub type Application = platform_service::Application<TemplateService>;

impl Declare for TemplateService {
    type Config = TemplateServiceConfig;
    type Migrator = crate::migration::Migrator;
    const DEFAULTS: platform_http::ServerDefaults = DEFAULTS;
    const ENV_PREFIX: &'static str = "TEMPLATE_SERVICE_";
    const REDIS: RedisUse = RedisUse::Bus;

    async fn build(config: TemplateServiceConfig, kit: &mut Kit) -> Result<(Self, Apis), BoxError> {
        let http = crate::http::api(AppState {
            db: kit.db().clone(),
            jwt: kit.jwt().clone(),
            max_name: config.max_name,
        });
        Ok((Self, Apis { http, grpc: None }))
    }
}
