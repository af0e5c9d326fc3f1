//! Generated gRPC types, clients and servers for every `.proto` under `proto/`.
//!
//! Generated at build time by `build.rs`; nothing here is written by hand except the module
//! tree. [`FILE_DESCRIPTOR_SET`] is what each server's reflection service publishes.
#![forbid(unsafe_code)]

/// Response metadata on an idempotent call (a payment's `Refund`) that repeated an earlier
/// answer rather than acting again.
pub const REPLAYED: &str = "idempotent-replayed";

/// Encoded `FileDescriptorSet` of every proto (with imports), for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

pub mod user {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("platform.user.v1");
    }
}

pub mod product {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("platform.product.v1");
    }
}

pub mod payment {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("platform.payment.v1");
    }
}

pub mod order {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("platform.order.v1");
    }
}
