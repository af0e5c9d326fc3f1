//! Who the client is behind proxies: `TRUSTED_PROXIES`.
//!
//! `X-Forwarded-For` and `Forwarded` are only as honest as whoever wrote them. The address a
//! connection comes from is the only fact; forwarding headers are believed only when that
//! address is a configured proxy, and then read from the right: each trusted hop vouches for
//! the one before it, and the first address that is not a trusted proxy is the client. A
//! client's own `X-Forwarded-For: 1.2.3.4` is the leftmost entry and is never reached while
//! any untrusted hop stands to its right.

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;
use ipnet::IpNet;
use platform_config::Env;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Loopback and the private ranges: what stands between the gateway and a service (the
/// gateway itself, a mesh sidecar, a cluster's pod network). The default of services; the
/// gateway, at the edge, trusts nobody by default.
pub const INTERNAL_NETWORKS: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

impl TrustedProxies {
    /// Comma-separated CIDRs or single addresses; `None` if any entry is neither.
    pub fn parse(raw: &str) -> Option<Self> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    /// `TRUSTED_PROXIES`, defaulting to `default`.
    pub fn from_env(env: &mut Env, default: &str) -> Self {
        env.optional_with(
            "TRUSTED_PROXIES",
            "comma-separated CIDRs such as 10.0.0.0/8,192.168.1.10",
            Self::parse,
        )
        .or_else(|| Self::parse(default))
        .unwrap_or_default()
    }

    /// No proxy is trusted: every connection's own address is its client.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy; an IPv4-mapped IPv6 address counts as its IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a connection from `peer` carrying `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let forwarded_for = headers.get_all("x-forwarded-for");
        let chain: Vec<Hop> = if forwarded_for.iter().next().is_some() {
            forwarded_for
                .iter()
                .flat_map(|value| value.as_bytes().split(|b| *b == b','))
                .map(|entry| parse_hop(entry.trim_ascii()))
                .collect()
        } else {
            headers
                .get_all("forwarded")
                .iter()
                .flat_map(|value| value.as_bytes().split(|b| *b == b','))
                .map(forwarded_for_param)
                .collect()
        };
        self.walk(peer, &chain)
    }

    /// The first untrusted hop from the right of `chain`, starting after `peer`.
    fn walk(&self, peer: IpAddr, chain: &[Hop]) -> IpAddr {
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Hop::Ip(ip) => {
                    client = *ip;
                    if !self.contains(*ip) {
                        return client;
                    }
                }
                // A trusted proxy relayed something that is not an address (`unknown`, an
                // obfuscated name, garbage): the chain of evidence ends at that proxy.
                Hop::Unknown => return client,
            }
        }
        client
    }

    /// [`TrustedProxies::client_ip`] from raw header lines, for the gateway's fast path
    /// (which has no `HeaderMap`).
    pub fn client_ip_raw<'a>(
        &self,
        peer: IpAddr,
        headers: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let xff = headers
            .clone()
            .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"));
        let mut chain: Vec<Hop> = xff
            .flat_map(|(_, value)| value.split(|b| *b == b','))
            .map(|entry| parse_hop(entry.trim_ascii()))
            .collect();
        if !headers
            .clone()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
        {
            chain = headers
                .filter(|(name, _)| name.eq_ignore_ascii_case("forwarded"))
                .flat_map(|(_, value)| value.split(|b| *b == b','))
                .map(forwarded_for_param)
                .collect();
        }
        self.walk(peer, &chain)
    }
}

/// One entry of a forwarding chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Ip(IpAddr),
    Unknown,
}

/// An `X-Forwarded-For` entry or a `Forwarded` `for=` value: an address, optionally with a
/// port (`1.2.3.4:5`, `[2001:db8::1]:5`), optionally quoted.
fn parse_hop(raw: &[u8]) -> Hop {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Hop::Unknown;
    };
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Hop::Ip(canonical(ip));
    }
    if let Some(rest) = text.strip_prefix('[')
        && let Some((inside, _)) = rest.split_once(']')
        && let Ok(ip) = inside.parse::<Ipv6Addr>()
    {
        return Hop::Ip(canonical(IpAddr::V6(ip)));
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Hop::Ip(canonical(addr.ip()));
    }
    Hop::Unknown
}

/// The `for=` parameter of one `Forwarded` element (RFC 7239 §4).
fn forwarded_for_param(element: &[u8]) -> Hop {
    element
        .split(|b| *b == b';')
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let (name, value) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
            name.eq_ignore_ascii_case(b"for")
                .then(|| parse_hop(&value[1..]))
        })
        .next()
        .unwrap_or(Hop::Unknown)
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket reports) as the
/// IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The key of an address's rate-limit bucket: IPv4 as is, IPv6 by its /64 (one subscriber
/// gets a whole /64, so per-address buckets would let one client have 2^64 of them).
pub fn bucket(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(
            trusted.client_ip(ip("203.0.113.9"), &spoofed),
            ip("203.0.113.9")
        );
        let nobody = TrustedProxies::default();
        assert_eq!(nobody.client_ip(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_behind_trusted_proxies_is_the_client() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.10").unwrap();
        // The client claimed 1.2.3.4 itself; 198.51.100.7 is what the first proxy saw.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(
            trusted.client_ip(ip("192.168.1.10"), &chain),
            ip("198.51.100.7")
        );
        // Split over several header lines, same answer.
        let lines = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
        ]);
        assert_eq!(
            trusted.client_ip(ip("10.9.9.9"), &lines),
            ip("198.51.100.7")
        );
        // Every hop trusted: the leftmost is as far as the evidence goes.
        let internal = headers(&[("x-forwarded-for", "10.2.2.2, 10.1.1.1")]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &internal), ip("10.2.2.2"));
        // Garbage stops the walk at the proxy that relayed it.
        let garbage = headers(&[("x-forwarded-for", "1.2.3.4, nonsense, 10.1.1.1")]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &garbage), ip("10.1.1.1"));
    }

    #[test]
    fn forwarded_is_read_when_x_forwarded_for_is_absent() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let forwarded = headers(&[(
            "forwarded",
            "for=1.2.3.4, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.5;by=10.0.0.1",
        )]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &forwarded),
            ip("2001:db8::7")
        );
        let hidden = headers(&[("forwarded", "for=_hidden, for=10.0.0.5")]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &hidden), ip("10.0.0.5"));
    }

    #[test]
    fn raw_headers_give_the_same_answer() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let raw: Vec<(&str, &[u8])> = vec![
            ("Host", b"x"),
            ("X-Forwarded-For", b"1.2.3.4, 198.51.100.7"),
        ];
        assert_eq!(
            trusted.client_ip_raw(ip("10.0.0.1"), raw.iter().copied()),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client_ip_raw(ip("203.0.113.1"), raw.iter().copied()),
            ip("203.0.113.1")
        );
        let forwarded: Vec<(&str, &[u8])> = vec![("forwarded", b"for=198.51.100.8")];
        assert_eq!(
            trusted.client_ip_raw(ip("10.0.0.1"), forwarded.iter().copied()),
            ip("198.51.100.8")
        );
    }

    #[test]
    fn mapped_addresses_are_ipv4_and_ipv6_buckets_are_slash_64() {
        assert_eq!(canonical(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert!(trusted.contains(ip("::ffff:10.0.0.1")));
        assert_eq!(bucket(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            bucket(ip("2001:db8:1:2:aaaa::1")),
            bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(bucket(ip("2001:db8:1:2::1")), bucket(ip("2001:db8:1:3::1")));
        assert_eq!(bucket(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/8, nope").is_none());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_none());
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
        assert!(TrustedProxies::parse(INTERNAL_NETWORKS).is_some());
    }
}
