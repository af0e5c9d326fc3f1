//! The notification service end to end: events in from the bus, messages out to a real SMTP
//! conversation and fake SMS and push providers, the REST API, the SSE stream. Each test runs
//! on SQLite and on PostgreSQL; the event-driven ones also on the Redis Streams bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/fakes.rs"]
mod fakes;
mod helpers;

mod api;
mod delivery;
mod events;
mod stream;

/// Runs each `async fn(Backend, Bus)` on SQLite and PostgreSQL with the embedded bus, as
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        platform_testing::variant_tests!(
            sqlite,
            [],
            (platform_testing::Backend::Sqlite, $crate::helpers::Bus::Embedded),
            $($name),*
        );
        platform_testing::variant_tests!(
            postgres,
            [platform_testing::Need::Postgres],
            (platform_testing::Backend::Postgres, $crate::helpers::Bus::Embedded),
            $($name),*
        );
    };
}

/// Runs each `async fn(Backend, Bus)` on both databases and both buses; the Redis variants
/// are `sqlite_redis::name` and `postgres_redis::name`.
#[macro_export]
macro_rules! bus_tests {
    ($($name:ident),* $(,)?) => {
        $crate::db_tests!($($name),*);
        platform_testing::variant_tests!(
            sqlite_redis,
            [platform_testing::Need::Redis],
            (platform_testing::Backend::Sqlite, $crate::helpers::Bus::Redis),
            $($name),*
        );
        platform_testing::variant_tests!(
            postgres_redis,
            [platform_testing::Need::Postgres, platform_testing::Need::Redis],
            (platform_testing::Backend::Postgres, $crate::helpers::Bus::Redis),
            $($name),*
        );
    };
}
