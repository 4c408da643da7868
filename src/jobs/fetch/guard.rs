//! Which addresses a download may reach: the public internet only, unless the
//! operator allows private networks or names trusted addresses.
//!
//! The tables follow IANA's special-purpose address registries: every block
//! that is not globally reachable is refused, and so are multicast and the
//! reserved ranges. IPv6 forms that carry an IPv4 address (mapped, NAT64,
//! 6to4) are judged by that address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::redirect;
use url::{Host, Url};

use super::{FetchError, FetchLimits};

/// IPv4 blocks that are not the public internet, as (network, prefix length).
const V4_BLOCKED: &[(Ipv4Addr, u32)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network", with 0.0.0.0
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, cloud metadata
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // TEST-NET-1
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, with 255.255.255.255
];

/// IPv6 blocks that are not the public internet. The IPv4-carrying forms are
/// handled by [`embedded_v4`] before this table is read.
const V6_BLOCKED: &[(Ipv6Addr, u32)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // IPv4-compatible, with :: and ::1
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments, Teredo
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16), // segment routing SIDs
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // deprecated site-local
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

const GLOBAL_UNICAST: (Ipv6Addr, u32) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// Addresses that do not belong to the public internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_private_v4(ip),
        IpAddr::V6(ip) => match embedded_v4(ip) {
            Some(v4) => is_private_v4(v4),
            None => {
                let ip = u128::from(ip);
                // Only 2000::/3 is allocated for global unicast; the rest is reserved.
                !within(ip, u128::from(GLOBAL_UNICAST.0), GLOBAL_UNICAST.1, 128)
                    || V6_BLOCKED
                        .iter()
                        .any(|&(net, len)| within(ip, u128::from(net), len, 128))
            }
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    V4_BLOCKED.iter().any(|&(net, len)| {
        within(
            u128::from(u32::from(ip)),
            u128::from(u32::from(net)),
            len,
            32,
        )
    })
}

/// Whether the first `len` of the `width` low bits of `ip` and `net` agree.
fn within(ip: u128, net: u128, len: u32, width: u32) -> bool {
    let shift = width - len;
    ip.checked_shr(shift) == net.checked_shr(shift)
}

/// The IPv4 address an IPv6 one actually reaches: IPv4-mapped
/// (`::ffff:0:0/96`), well-known NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let o = ip.octets();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

fn check_address(ip: IpAddr, limits: &FetchLimits) -> Result<(), FetchError> {
    if !limits.allow_private && is_private(ip) && !limits.trusted_addresses.contains(&ip) {
        return Err(FetchError::PrivateAddress(ip));
    }
    Ok(())
}

/// A client for one hop that connects only to addresses checked here, so a
/// DNS answer that changes between the check and the connection (rebinding)
/// cannot reach a private network. It follows no redirects itself.
pub async fn pinned_client(url: &Url, limits: &FetchLimits) -> Result<reqwest::Client, FetchError> {
    let builder = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        // A proxy would resolve the host itself, defeating the pinning.
        .no_proxy();
    let builder = match url.host().ok_or(FetchError::NoHost)? {
        Host::Ipv4(ip) => {
            check_address(ip.into(), limits)?;
            builder
        }
        Host::Ipv6(ip) => {
            check_address(ip.into(), limits)?;
            builder
        }
        Host::Domain(domain) => {
            let port = url.port_or_known_default().ok_or(FetchError::NoHost)?;
            let resolve_error = |reason: String| FetchError::Resolve {
                host: domain.to_owned(),
                reason,
            };
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((domain, port))
                .await
                .map_err(|err| resolve_error(err.to_string()))?
                .collect();
            if addrs.is_empty() {
                return Err(resolve_error("no addresses".to_owned()));
            }
            for addr in &addrs {
                check_address(addr.ip(), limits)?;
            }
            builder.resolve_to_addrs(domain, &addrs)
        }
    };
    builder.build().map_err(super::request_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(ip: &str) -> bool {
        is_private(ip.parse().unwrap())
    }

    #[test]
    fn every_special_purpose_ipv4_block_is_refused() {
        for (first, last) in [
            ("0.0.0.0", "0.255.255.255"),
            ("10.0.0.0", "10.255.255.255"),
            ("100.64.0.0", "100.127.255.255"),
            ("127.0.0.0", "127.255.255.255"),
            ("169.254.0.0", "169.254.255.255"),
            ("172.16.0.0", "172.31.255.255"),
            ("192.0.0.0", "192.0.0.255"),
            ("192.0.2.0", "192.0.2.255"),
            ("192.88.99.0", "192.88.99.255"),
            ("192.168.0.0", "192.168.255.255"),
            ("198.18.0.0", "198.19.255.255"),
            ("198.51.100.0", "198.51.100.255"),
            ("203.0.113.0", "203.0.113.255"),
            ("224.0.0.0", "239.255.255.255"),
            ("240.0.0.0", "255.255.255.254"),
            ("255.255.255.255", "255.255.255.255"),
        ] {
            assert!(private(first), "{first}");
            assert!(private(last), "{last}");
        }
    }

    #[test]
    fn the_neighbours_of_each_ipv4_block_are_public() {
        for ip in [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
        ] {
            assert!(!private(ip), "{ip}");
        }
    }

    #[test]
    fn every_special_purpose_ipv6_block_is_refused() {
        for ip in [
            "::",
            "::1",
            "::a00:1",      // ::/96, IPv4-compatible 10.0.0.1
            "::808:808",    // ::/96 even around a public IPv4
            "64:ff9b:1::1", // local-use NAT64
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "100::", // discard-only
            "100::ffff:ffff:ffff:ffff",
            "2001::1", // Teredo
            "2001:0:ffff::1",
            "2001:1ff:ffff::1", // end of 2001::/23
            "2001:db8::1",      // documentation
            "2001:db8:ffff::1",
            "3fff::1",
            "5f00::1",
            "fc00::1", // unique local
            "fdff:ffff::1",
            "fe80::1", // link-local
            "febf:ffff::1",
            "fec0::1",
            "ff02::1", // multicast
            "ff0e::1",
        ] {
            assert!(private(ip), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_are_judged_by_their_ipv4() {
        for (ip, is_private) in [
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:198.18.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("64:ff9b::a9fe:a9fe", true), // NAT64 of 169.254.169.254
            ("64:ff9b::7f00:1", true),
            ("64:ff9b::808:808", false),
            ("2002:c0a8:0101::1", true), // 6to4 of 192.168.1.1
            ("2002:7f00:1::1", true),
            ("2002:0808:0808::1", false),
        ] {
            assert_eq!(private(ip), is_private, "{ip}");
        }
    }

    #[test]
    fn public_ipv6_is_allowed() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:200::1", // just past 2001::/23
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "3ffe::1",
        ] {
            assert!(!private(ip), "{ip}");
        }
        // Outside 2000::/3 nothing is global unicast.
        for ip in ["64:ff9b:2::1", "4000::1", "1::1"] {
            assert!(private(ip), "{ip}");
        }
    }

    #[test]
    fn trusted_addresses_pass_in_strict_mode() {
        let loopback: IpAddr = "127.0.0.2".parse().unwrap();
        let strict = FetchLimits {
            allow_private: false,
            trusted_addresses: vec![loopback],
            ..FetchLimits::default()
        };
        assert!(check_address(loopback, &strict).is_ok());
        assert!(matches!(
            check_address("127.0.0.1".parse().unwrap(), &strict),
            Err(FetchError::PrivateAddress(_))
        ));
    }
}
