//! Who the client is, for the per-IP rate limits: `X-Forwarded-For` is believed
//! only when it comes from a proxy on a network in `TRUSTED_PROXIES` (anyone
//! else could write anything in it), and IPv6 clients are keyed by their /64,
//! which one subscriber usually holds whole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};

use crate::config::{canonical, TrustedProxies};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The key a per-IP limit counts a client under: an IPv4 address, or the /64
/// of an IPv6 address (a subscriber gets at least a /64 and can pick any address
/// in it, so per address would be no limit at all).
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The client's address. The TCP peer, unless the peer is a trusted proxy:
    /// then `X-Forwarded-For` is walked from the right, each entry being the
    /// address the hop before it saw, for as long as the entries are trusted
    /// proxies themselves and at most `hops` entries. The last entry walked is
    /// the client. An entry that is not an IP address ends the walk at the
    /// proxy that wrote it.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip()));
        if self.hops == 0 || !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let mut walked = 0;
        // Several headers are one list, in order; walked from its end.
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for entry in value.rsplit(',') {
                let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                    return client;
                };
                client = canonical(ip);
                walked += 1;
                if walked == self.hops || !self.trusts(client) {
                    return client;
                }
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(rate_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(rate_key(ip("2001:db8:1:2::ffff")), ip("2001:db8:1:2::"));
        assert_ne!(rate_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(rate_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(rate_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    fn proxies(networks: &[&str], hops: usize) -> TrustedProxies {
        TrustedProxies {
            networks: networks.iter().map(|n| cidr(n)).collect(),
            hops,
        }
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 2], 9)));
        let h = forwarded(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(proxies(&[], 0).client_ip(peer, &h), ip("10.0.0.2"));
        assert_eq!(
            proxies(&["192.168.0.0/16"], 1).client_ip(peer, &h),
            ip("10.0.0.2"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            proxies(&["10.0.0.0/8"], 0).client_ip(peer, &h),
            ip("10.0.0.2")
        );
        assert_eq!(
            proxies(&["10.0.0.0/8"], 1).client_ip(peer, &h),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies(&["10.0.0.0/8"], 2).client_ip(peer, &h),
            ip("203.0.113.7"),
            "an entry that is not a trusted proxy is the client, whatever the hops"
        );
    }

    #[test]
    fn the_walk_goes_through_trusted_hops_only_up_to_the_count() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 2], 9)));
        let chain = forwarded(&["6.6.6.6, 203.0.113.7", "10.0.0.5"]);
        let trusted = ["10.0.0.0/8"];
        assert_eq!(proxies(&trusted, 1).client_ip(peer, &chain), ip("10.0.0.5"));
        assert_eq!(
            proxies(&trusted, 2).client_ip(peer, &chain),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies(&trusted, 5).client_ip(peer, &chain),
            ip("203.0.113.7")
        );
        let garbage = forwarded(&["203.0.113.7, not-an-ip"]);
        assert_eq!(
            proxies(&trusted, 2).client_ip(peer, &garbage),
            ip("10.0.0.2"),
            "the proxy that wrote garbage is the client"
        );
        assert_eq!(
            proxies(&trusted, 1).client_ip(peer, &HeaderMap::new()),
            ip("10.0.0.2")
        );
        let mapped = Some(SocketAddr::from((
            "::ffff:10.0.0.2".parse::<Ipv6Addr>().unwrap(),
            9,
        )));
        assert_eq!(
            proxies(&trusted, 1).client_ip(mapped, &forwarded(&["::ffff:198.51.100.1"])),
            ip("198.51.100.1"),
            "mapped peers and entries are IPv4"
        );
    }
}
