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

/// Runs each `async fn(Backend, Bus)` on SQLite and PostgreSQL with the embedded bus.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(platform_testing::Backend::Sqlite, $crate::helpers::Bus::Embedded).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(platform_testing::Backend::Postgres, $crate::helpers::Bus::Embedded).await
                }
            )*
        }
    };
}

/// Runs each `async fn(Backend, Bus)` on both databases and both buses.
#[macro_export]
macro_rules! bus_tests {
    ($($name:ident),* $(,)?) => {
        $crate::db_tests!($($name),*);
        mod sqlite_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(platform_testing::Backend::Sqlite, $crate::helpers::Bus::Redis).await
                }
            )*
        }
        mod postgres_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(platform_testing::Backend::Postgres, $crate::helpers::Bus::Redis).await
                }
            )*
        }
    };
}
