//! The multi-layer read cache of the services ([`LayeredCache`], see [`layered`]): a bounded
//! in-process layer in front of Redis (reached through `platform-redis`'s pool).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod layered;

pub use layered::{CacheConfig, LayeredCache};
