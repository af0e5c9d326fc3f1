//! The user service, declared: its configuration, schema and Redis use, and the parts it
//! builds on the kit (the password hasher, the login throttle, the use cases, the APIs).

use platform_http::BoxError;
use platform_service::{Apis, Declare, Kit, RedisUse};

use crate::config::{DEFAULTS, UserServiceConfig};
use crate::http::AppState;
use crate::passwords::Passwords;
use crate::service::{Users, UsersParts};
use crate::throttle::LoginThrottle;

/// The user service.
pub struct UserService;

/// A built, bound user service.
pub type Application = platform_service::Application<UserService>;

impl Declare for UserService {
    type Config = UserServiceConfig;
    type Migrator = crate::migration::Migrator;
    const DEFAULTS: platform_http::ServerDefaults = DEFAULTS;
    const ENV_PREFIX: &'static str = "USER_SERVICE_";
    const REDIS: RedisUse = RedisUse::State;

    /// Builds the use cases, creates the configured admin, and relays `user.*` events.
    async fn build(config: UserServiceConfig, kit: &mut Kit) -> Result<(Self, Apis), BoxError> {
        if config.jwt.generated {
            tracing::warn!(
                "JWT_SECRET is not set: using a random secret; tokens will not survive a restart \
                 and other processes cannot verify them"
            );
        }
        kit.relay();
        let users = Users::new(
            kit.db().clone(),
            UsersParts {
                passwords: Passwords::new(config.passwords, config.hashing).await?,
                jwt: kit.jwt().clone(),
                throttle: LoginThrottle::new(config.throttle, kit.redis().cloned()),
                refresh_ttl: config.refresh_token_ttl,
                audit: kit.audit().clone(),
            },
            kit.name(),
        );
        if let Some(admin) = config.admin {
            users
                .ensure_admin(admin.email, admin.name, admin.password)
                .await?;
        }
        let http = crate::http::api(AppState {
            users: users.clone(),
            jwt: kit.jwt().clone(),
        });
        let grpc = Some(crate::grpc::api(users, kit.identity()?));
        Ok((Self, Apis { http, grpc }))
    }
}
