//! Where each part of the platform listens by default: the one table of ports. Services'
//! defaults, the gateway's default upstreams and the services' default addresses of each
//! other all read it, so a port is spelled once.

/// A part's default HTTP and gRPC ports (`0`: no gRPC side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// `PORT`.
    pub http: u16,
    /// `GRPC_PORT`.
    pub grpc: u16,
}

impl Ports {
    /// `http://127.0.0.1:<http>`: where a part on this machine reaches the HTTP API.
    pub fn local_http(self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// `http://127.0.0.1:<grpc>`: where a part on this machine reaches the gRPC API.
    pub fn local_grpc(self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }
}

/// The API gateway (`METRICS_PORT` aside).
pub const GATEWAY: Ports = Ports {
    http: 8080,
    grpc: 0,
};
/// The user service.
pub const USER: Ports = Ports {
    http: 8081,
    grpc: 9081,
};
/// The product service.
pub const PRODUCT: Ports = Ports {
    http: 8082,
    grpc: 9082,
};
/// The order service.
pub const ORDER: Ports = Ports {
    http: 8083,
    grpc: 9083,
};
/// The payment service.
pub const PAYMENT: Ports = Ports {
    http: 8084,
    grpc: 9084,
};
/// The notification service.
pub const NOTIFICATION: Ports = Ports {
    http: 8085,
    grpc: 0,
};
/// The event store.
pub const EVENT_STORE: Ports = Ports {
    http: 8086,
    grpc: 0,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_parts_share_a_port() {
        let all = [
            GATEWAY,
            USER,
            PRODUCT,
            ORDER,
            PAYMENT,
            NOTIFICATION,
            EVENT_STORE,
        ];
        let mut ports: Vec<u16> = all
            .iter()
            .flat_map(|p| [p.http, p.grpc])
            .filter(|&p| p != 0)
            .collect();
        let count = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), count);
        assert_eq!(PRODUCT.local_grpc(), "http://127.0.0.1:9082");
    }
}
