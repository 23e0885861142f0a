//! Which completion webhook URLs the fleet calls (server-side request forgery rules).
//!
//! In AWS only `https` URLs whose host resolves to public addresses are called: no loopback,
//! private, shared (CGNAT), link-local (the instance metadata service at 169.254.169.254
//! included), unique-local (fd00:ec2::254 included), multicast, documentation or reserved
//! ranges, also when written as an IPv4-mapped, NAT64 or 6to4 IPv6 address. The URL is read with
//! the parser the HTTP client uses (WHATWG), so `http://0x7f.1/` is 127.0.0.1 for both.
//!
//! The rules are checked at submit ([`Destination::parse`], and the adapter resolves the host)
//! and again at delivery, on the addresses the connection will use ([`Rules::check_address`]), so
//! that a name that resolves elsewhere later (DNS rebinding) is refused too.
//!
//! Local runs (`make dev`) may also call loopback receivers, over `http` or `https`:
//! `http://127.0.0.1:…` and `http://localhost:…`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use url::{Host, Url};

/// Longest URL accepted: the URL is kept on the task's state item, which every write of the
/// task rewrites (and is billed for), so it is bounded to one write unit.
pub const MAX_URL_LEN: usize = 1024;

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DestinationError {
    #[error("`webhook_url` is not an absolute URL")]
    NotAUrl,
    #[error("`webhook_url` is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("`webhook_url` must use https")]
    Scheme,
    #[error("`webhook_url` must not carry a user name or password")]
    Credentials,
    #[error("`webhook_url` must name a host")]
    NoHost,
    #[error("`webhook_url` points at a non-public address ({0})")]
    NotPublic(IpAddr),
    #[error("`webhook_url` points at a local host name")]
    LocalName,
}

/// What may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules {
    /// Local runs only: loopback receivers, over http too.
    pub allow_loopback: bool,
}

/// A webhook URL that passed the rules that can be checked without resolving its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    url: Url,
}

impl Destination {
    /// Checks a submitted URL.
    pub fn parse(text: &str, rules: Rules) -> Result<Self, DestinationError> {
        if text.len() > MAX_URL_LEN {
            return Err(DestinationError::TooLong);
        }
        let url = Url::parse(text).map_err(|_| DestinationError::NotAUrl)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DestinationError::Credentials);
        }
        let loopback = match url.host() {
            None => return Err(DestinationError::NoHost),
            Some(Host::Domain(name)) => is_local_name(name),
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback && rules.allow_loopback => {}
            _ => return Err(DestinationError::Scheme),
        }
        match url.host() {
            Some(Host::Domain(_)) if loopback && !rules.allow_loopback => return Err(DestinationError::LocalName),
            Some(Host::Ipv4(ip)) => rules.check_address(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => rules.check_address(IpAddr::V6(ip))?,
            _ => {}
        }
        Ok(Self { url })
    }

    /// The URL, as the parser normalised it.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The host name to resolve, if the URL names one rather than an address.
    pub fn host_name(&self) -> Option<&str> {
        match self.url.host() {
            Some(Host::Domain(name)) => Some(name),
            _ => None,
        }
    }
}

impl Rules {
    /// Whether an address the host resolved to may be called.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), DestinationError> {
        let allowed = is_public(ip) || (self.allow_loopback && ip.is_loopback());
        if allowed { Ok(()) } else { Err(DestinationError::NotPublic(ip)) }
    }
}

/// `localhost` and its subdomains (RFC 6761 reserves them for loopback).
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether an address is globally reachable (IANA special-purpose registries).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network"
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local, instance metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // Addresses that carry an IPv4 address: judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(segments[6], segments[7])); // NAT64
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded(segments[1], segments[2])); // 6to4
    }
    let first = segments[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || segments[..6] == [0; 6] // IPv4-compatible (deprecated)
        || (first == 0x0064 && segments[1] == 0xff9b) // local-use NAT64 (64:ff9b:1::/48)
        || (first == 0x0100 && segments[1..4] == [0; 3]) // discard-only
        || (first == 0x2001 && segments[1] < 0x0200) // IETF protocol assignments, Teredo
        || (first == 0x2001 && segments[1] == 0x0db8) // documentation
        || (first == 0x3fff && segments[1] < 0x1000) // documentation
        || (first & 0xfe00) == 0xfc00 // unique local, fd00:ec2::254 included
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (first & 0xff00) == 0xff00) // multicast
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: Rules = Rules { allow_loopback: false };
    const LOCAL: Rules = Rules { allow_loopback: true };

    fn refused(url: &str, rules: Rules) -> DestinationError {
        Destination::parse(url, rules).expect_err(url)
    }

    #[test]
    fn in_aws_a_public_https_url_is_accepted() {
        let destination = Destination::parse("https://hooks.example.com/taskfleet?x=1", AWS).unwrap();
        assert_eq!(destination.host_name(), Some("hooks.example.com"));
        assert!(Destination::parse("https://93.184.215.14:8443/hook", AWS).is_ok());
        assert!(Destination::parse("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", AWS).is_ok());
    }

    #[test]
    fn in_aws_only_https_is_called() {
        assert_eq!(refused("http://hooks.example.com/", AWS), DestinationError::Scheme);
        assert_eq!(refused("ftp://hooks.example.com/", AWS), DestinationError::Scheme);
        assert_eq!(refused("http://127.0.0.1:9000/", AWS), DestinationError::Scheme);
    }

    #[test]
    fn loopback_private_link_local_and_metadata_addresses_are_refused() {
        for url in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:a9fe:a9fe::1]/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
        ] {
            assert!(matches!(refused(url, AWS), DestinationError::NotPublic(_)), "{url}");
        }
    }

    #[test]
    fn other_spellings_of_an_address_are_read_as_the_http_client_reads_them() {
        for url in ["https://0x7f.1/", "https://2130706433/", "https://0177.0.0.1/", "https://127.1/"] {
            assert_eq!(refused(url, AWS), DestinationError::NotPublic(IpAddr::V4(Ipv4Addr::LOCALHOST)), "{url}");
        }
    }

    #[test]
    fn local_names_credentials_and_garbage_are_refused() {
        assert_eq!(refused("https://localhost/", AWS), DestinationError::LocalName);
        assert_eq!(refused("https://api.localhost./", AWS), DestinationError::LocalName);
        assert_eq!(refused("https://user:pw@hooks.example.com/", AWS), DestinationError::Credentials);
        assert_eq!(refused("hooks.example.com/path", AWS), DestinationError::NotAUrl);
        assert_eq!(refused("https://", AWS), DestinationError::NotAUrl);
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(refused(&long, AWS), DestinationError::TooLong);
    }

    #[test]
    fn local_runs_also_call_loopback_receivers_over_http() {
        assert!(Destination::parse("http://127.0.0.1:9000/hook", LOCAL).is_ok());
        assert!(Destination::parse("http://localhost:9000/hook", LOCAL).is_ok());
        assert!(Destination::parse("https://[::1]:9000/hook", LOCAL).is_ok());
        assert_eq!(refused("http://hooks.example.com/", LOCAL), DestinationError::Scheme);
        assert!(matches!(refused("https://10.0.0.1/", LOCAL), DestinationError::NotPublic(_)), "only loopback");
    }

    #[test]
    fn at_delivery_every_resolved_address_is_checked_again() {
        assert!(AWS.check_address("93.184.215.14".parse().unwrap()).is_ok());
        assert!(AWS.check_address("10.0.0.7".parse().unwrap()).is_err(), "a name rebound to a private address");
        assert!(AWS.check_address("127.0.0.1".parse().unwrap()).is_err());
        assert!(LOCAL.check_address("127.0.0.1".parse().unwrap()).is_ok());
        assert!(LOCAL.check_address("192.168.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn public_addresses_are_told_apart_from_special_purpose_ones() {
        for public in ["8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "2600:1f18::1", "2a00:1450::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for special in ["198.18.0.1", "192.0.2.1", "203.0.113.9", "2001:db8::1", "2001::1", "ff02::1", "::"] {
            assert!(!is_public(special.parse().unwrap()), "{special}");
        }
    }
}
