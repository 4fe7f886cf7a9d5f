//! Where a notification may be sent: the URL rules (scheme, no userinfo,
//! length) and the address rules that keep deliveries from reaching this
//! service's own network (SSRF): loopback, private, link-local, unique-local,
//! multicast, unspecified and cloud metadata addresses are refused outside
//! development, on the addresses the host resolves to, at creation and again
//! at every delivery (which then connects to the very address it checked).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use url::{Host, Url};

use crate::domain::FieldError;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL or its address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("must be an absolute https:// URL{0}")]
    Scheme(&'static str),
    #[error("must be at most {MAX_URL_LEN} characters")]
    TooLong,
    #[error("must not carry a user name or password")]
    UserInfo,
    #[error("host {host} resolves to {addr}, a {kind} address, which is not allowed")]
    Forbidden {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
    #[error("host {0} does not resolve")]
    Unresolved(String),
}

impl TargetError {
    pub fn field(&self, pointer: &str) -> FieldError {
        FieldError::new(pointer, self.to_string())
    }
}

/// An endpoint URL that passed the URL rules (the address rules need DNS: see
/// `resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(Url);

impl EndpointUrl {
    /// `allow_insecure` (development only): `http://` is accepted too.
    pub fn parse(raw: &str, allow_insecure: bool) -> Result<Self, TargetError> {
        let scheme_hint = if allow_insecure {
            " (or http:// in development)"
        } else {
            ""
        };
        if raw.len() > MAX_URL_LEN {
            return Err(TargetError::TooLong);
        }
        let url = Url::parse(raw).map_err(|_| TargetError::Scheme(scheme_hint))?;
        let scheme_ok = url.scheme() == "https" || (allow_insecure && url.scheme() == "http");
        if !scheme_ok || url.host().is_none() {
            return Err(TargetError::Scheme(scheme_hint));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::UserInfo);
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host as written (for the HTTP client's `resolve` override).
    pub fn host(&self) -> String {
        match self.0.host() {
            Some(Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }

    /// The addresses to connect to, each checked: every address the host
    /// resolves to must be allowed (one forbidden address refuses the host,
    /// so a name cannot mix a public and a private answer). `allow_insecure`
    /// skips the address rules (development).
    pub async fn resolve(&self, allow_insecure: bool) -> Result<Vec<SocketAddr>, TargetError> {
        let port = self.0.port_or_known_default().unwrap_or(443);
        let host = self.host();
        let addrs: Vec<SocketAddr> = match self.0.host() {
            Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            _ => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|_| TargetError::Unresolved(host.clone()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(TargetError::Unresolved(host));
        }
        if !allow_insecure {
            for a in &addrs {
                if let Some(kind) = forbidden(a.ip()) {
                    return Err(TargetError::Forbidden {
                        host,
                        addr: a.ip(),
                        kind,
                    });
                }
            }
        }
        Ok(addrs)
    }
}

/// The kind of a non-public address, or None for an address deliveries may use.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // IPv4 inside IPv6 (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96) is
            // judged as the IPv4 address it reaches.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let v4 =
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return forbidden_v4(v4);
            }
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] & 0xfe00 == 0xfc00 {
                // fc00::/7, cloud metadata (fd00:ec2::254) included.
                Some("unique-local")
            } else if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
                Some("link-local")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] {
        Some("metadata")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("reserved")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused_and_public_ones_pass() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(forbidden(ip).is_some(), "{bad} must be refused");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert_eq!(forbidden(ip), None, "{good} must pass");
        }
    }

    #[test]
    fn urls_need_https_outside_development_and_no_userinfo() {
        assert!(EndpointUrl::parse("https://example.com/hook", false).is_ok());
        assert!(matches!(
            EndpointUrl::parse("http://example.com/hook", false),
            Err(TargetError::Scheme(_))
        ));
        assert!(EndpointUrl::parse("http://example.com/hook", true).is_ok());
        assert!(matches!(
            EndpointUrl::parse("ftp://example.com/", true),
            Err(TargetError::Scheme(_))
        ));
        assert_eq!(
            EndpointUrl::parse("https://u:p@example.com/", false),
            Err(TargetError::UserInfo)
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(EndpointUrl::parse(&long, false), Err(TargetError::TooLong));
        assert!(EndpointUrl::parse("not a url", false).is_err());
    }

    #[tokio::test]
    async fn literal_addresses_are_checked_without_dns() {
        let url = EndpointUrl::parse("https://127.0.0.1:8443/x", false).unwrap();
        assert!(matches!(
            url.resolve(false).await,
            Err(TargetError::Forbidden {
                kind: "loopback",
                ..
            })
        ));
        assert_eq!(
            url.resolve(true).await.unwrap(),
            vec!["127.0.0.1:8443".parse().unwrap()]
        );
        let v6 = EndpointUrl::parse("https://[::1]/x", false).unwrap();
        assert_eq!(v6.host(), "[::1]");
        assert!(v6.resolve(false).await.is_err());
    }
}
