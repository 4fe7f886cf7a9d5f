//! TRUSTED_PROXIES and TRUSTED_PROXY_HOPS parsed into `TrustedProxies`: the networks
//! of the proxies in front of the service. Who the client is, given those, is
//! decided where requests are served (`api::client_ip`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::{invalid, ConfigError, Vars};

/// An IP network such as `10.0.0.0/8` or `fd00::/8` (a bare address is the
/// network of that one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{raw:?} is not a network like 10.0.0.0/8 or fd00::/8"))?;
        let network = canonical(network);
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{raw:?}: the prefix length must be 0-{bits}"))?,
        };
        let cidr = Cidr { network, prefix };
        let masked = match network {
            IpAddr::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n) & mask_v4(prefix))),
            IpAddr::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n) & mask_v6(prefix))),
        };
        if masked != network {
            // A typo more often than not: say what was probably meant.
            return Err(format!(
                "{raw:?} has bits set past its prefix (the network is {masked}/{prefix})"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, as a dual-stack socket
/// reports IPv4 peers) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies in front of the service (`TRUSTED_PROXIES`, `TRUSTED_PROXY_HOPS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub networks: Vec<Cidr>,
    /// At most this many `X-Forwarded-For` entries are walked; 0: none.
    pub hops: usize,
}

/// TRUSTED_PROXIES and TRUSTED_PROXY_HOPS, which make sense only together: hops
/// without networks would believe `X-Forwarded-For` from anyone (so anyone could
/// pick the address it is limited under), networks without hops would be ignored.
pub(super) fn parse(v: &Vars<'_>) -> Result<TrustedProxies, ConfigError> {
    let networks = v
        .optional("TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.parse().map_err(|e| invalid("TRUSTED_PROXIES", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let hops = v.number("TRUSTED_PROXY_HOPS", 0, 10)?;
    match (networks.is_empty(), hops) {
        (true, 1..) => Err(invalid(
            "TRUSTED_PROXY_HOPS",
            "needs TRUSTED_PROXIES, the networks of the proxies whose X-Forwarded-For \
             is believed (e.g. 10.0.0.0/8)",
        )),
        (false, 0) => Err(invalid(
            "TRUSTED_PROXIES",
            "is set but TRUSTED_PROXY_HOPS is 0: set it to the number of proxies \
             that append to X-Forwarded-For",
        )),
        _ => Ok(TrustedProxies { networks, hops }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_contain() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")), "mapped");
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        assert!(!cidr("fd00::/8").contains(ip("10.0.0.1")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert_eq!(cidr(" 192.168.0.0/16 ").to_string(), "192.168.0.0/16");
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "fd00::/129",
            "nonsense",
            "10.0.0.0/x",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
