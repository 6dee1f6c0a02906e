//! Names that never leave the network: special-use names (RFC 6761, 7686, 8375), the reverse zones no server
//! can answer (loopback, "this" network, documentation ranges) and those of private and local addresses
//! (RFC 6303, 7793), answered by c2sink itself as Unbound does by default.
//!
//! Forwarding them tells a public resolver which printer or PC a machine on the LAN looked up, and `.onion`
//! must never be sent at all (RFC 7686). `localhost` gets the loopback addresses; everything else NXDOMAIN
//! with an SOA, so that clients cache it. When the upstream is the LAN's own DNS server (which knows the
//! private reverse zones and `home.arpa`), `[upstream] private_names = "forward"` sends those on; `localhost`,
//! `.onion` and `.invalid` are answered here whatever it says.

use crate::config::PrivateNames;
use crate::wire::within;

/// How c2sink answers a special-use name itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// 127.0.0.1 / ::1 for A / AAAA, NODATA for other types.
    Loopback,
    /// `localhost.` for PTR, NODATA for other types: the reverse names of 127.0.0.1 and ::1.
    LoopbackName,
    Nxdomain,
}

/// Zones answered here whatever the config says (RFC 6761 6.3, 6.4; RFC 7686).
const ALWAYS: &[(&str, Local)] = &[
    ("localhost", Local::Loopback),
    ("onion", Local::Nxdomain),
    ("invalid", Local::Nxdomain),
];

/// The reverse zone of ::1 (RFC 6303 4.3), one name.
const IP6_LOOPBACK: &str =
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa";

/// Reverse zones that no DNS server anywhere can answer (RFC 6303 section 4): "this" network, loopback, the
/// broadcast address, the IPv6 unspecified and loopback addresses, and the documentation ranges (RFC 5737,
/// 3849). Answered here whatever `private_names` says: the LAN's own server has them no more than Quad9.
const NEVER_PUBLIC: &[&str] = &[
    "0.in-addr.arpa",
    "127.in-addr.arpa",
    "255.255.255.255.in-addr.arpa",
    "2.0.192.in-addr.arpa",
    "100.51.198.in-addr.arpa",
    "113.0.203.in-addr.arpa",
    "8.b.d.0.1.0.0.2.ip6.arpa",
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
    IP6_LOOPBACK,
];

/// The zone of a [`NEVER_PUBLIC`] name, with `localhost.` for the reverse names of 127.0.0.1 and ::1 (as
/// Unbound answers them).
fn never_public(name: &str) -> Option<(&'static str, Local)> {
    let zone = NEVER_PUBLIC.iter().find(|z| within(name, z))?;
    let how = if name == "1.0.0.127.in-addr.arpa" || name == IP6_LOOPBACK {
        Local::LoopbackName
    } else {
        Local::Nxdomain
    };
    Some((zone, how))
}

/// Zones that only the LAN's own DNS server could answer: private and local address space (RFC 1918,
/// 6598, 3927, 4193, 4291) and the home network's domain (RFC 8375).
fn private_zone(name: &str) -> Option<&'static str> {
    const FIXED: &[&str] = &[
        "home.arpa",
        "10.in-addr.arpa",
        "168.192.in-addr.arpa",
        "254.169.in-addr.arpa",
        "c.f.ip6.arpa",
        "d.f.ip6.arpa",
        "8.e.f.ip6.arpa",
        "9.e.f.ip6.arpa",
        "a.e.f.ip6.arpa",
        "b.e.f.ip6.arpa",
    ];
    /// 172.16.0.0/12 and 100.64.0.0/10, one zone per second octet.
    const RANGES: &[(&str, std::ops::RangeInclusive<u8>, &[&str])] = &[
        (
            "172.in-addr.arpa",
            16..=31,
            &[
                "16.172.in-addr.arpa",
                "17.172.in-addr.arpa",
                "18.172.in-addr.arpa",
                "19.172.in-addr.arpa",
                "20.172.in-addr.arpa",
                "21.172.in-addr.arpa",
                "22.172.in-addr.arpa",
                "23.172.in-addr.arpa",
                "24.172.in-addr.arpa",
                "25.172.in-addr.arpa",
                "26.172.in-addr.arpa",
                "27.172.in-addr.arpa",
                "28.172.in-addr.arpa",
                "29.172.in-addr.arpa",
                "30.172.in-addr.arpa",
                "31.172.in-addr.arpa",
            ],
        ),
        ("100.in-addr.arpa", 64..=127, &[]),
    ];
    if let Some(z) = FIXED.iter().find(|z| within(name, z)) {
        return Some(z);
    }
    for (parent, octets, zones) in RANGES {
        if !within(name, parent) || name.len() == parent.len() {
            continue;
        }
        let rest = &name[..name.len() - parent.len() - 1];
        let octet = rest.rsplit('.').next()?.parse::<u8>().ok()?;
        if octets.contains(&octet) {
            let i = usize::from(octet - octets.start());
            // 100.64.0.0/10 has too many zones to list: the SOA is owned by the parent.
            return Some(zones.get(i).copied().unwrap_or(parent));
        }
    }
    None
}

/// The zone of a name answered here whatever the config says (`localhost`, `.onion`, `.invalid`: not even a
/// `[[forward]]` zone sends them on), or `None`.
pub fn always_zone(name: &str) -> Option<(&'static str, Local)> {
    let last = name.rsplit('.').next().unwrap_or(name);
    ALWAYS
        .iter()
        .find(|(z, _)| *z == last)
        .map(|&(z, how)| (z, how))
}

/// The zone `name` falls in and how it is answered, or `None` when it goes upstream. A name in a
/// `[[forward]]` zone is asked [`always_zone`] instead: the admin's own server may hold any other zone.
pub fn zone_of(name: &str, private: PrivateNames) -> Option<(&'static str, Local)> {
    // Nearly every name ends in neither: one comparison of the last label, no more.
    let last = name.rsplit('.').next().unwrap_or(name);
    match last {
        "arpa" => never_public(name).or_else(|| {
            (private == PrivateNames::Local)
                .then(|| private_zone(name).map(|z| (z, Local::Nxdomain)))
                .flatten()
        }),
        "localhost" | "onion" | "invalid" => always_zone(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_and_private_names_are_found_and_others_are_not() {
        let local = PrivateNames::Local;
        for (name, zone, how) in [
            ("localhost", "localhost", Local::Loopback),
            ("printer.localhost", "localhost", Local::Loopback),
            ("x.onion", "onion", Local::Nxdomain),
            ("bar.invalid", "invalid", Local::Nxdomain),
            ("wpad.home.arpa", "home.arpa", Local::Nxdomain),
            ("3.2.1.10.in-addr.arpa", "10.in-addr.arpa", Local::Nxdomain),
            (
                "10.1.168.192.in-addr.arpa",
                "168.192.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "1.0.16.172.in-addr.arpa",
                "16.172.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "1.0.31.172.in-addr.arpa",
                "31.172.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "1.0.64.100.in-addr.arpa",
                "100.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "5.0.254.169.in-addr.arpa",
                "254.169.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
                "d.f.ip6.arpa",
                Local::Nxdomain,
            ),
            ("0.8.e.f.ip6.arpa", "8.e.f.ip6.arpa", Local::Nxdomain),
            (
                "1.0.0.127.in-addr.arpa",
                "127.in-addr.arpa",
                Local::LoopbackName,
            ),
            (
                "5.5.5.127.in-addr.arpa",
                "127.in-addr.arpa",
                Local::Nxdomain,
            ),
            ("127.in-addr.arpa", "127.in-addr.arpa", Local::Nxdomain),
            ("1.0.0.0.in-addr.arpa", "0.in-addr.arpa", Local::Nxdomain),
            (
                "255.255.255.255.in-addr.arpa",
                "255.255.255.255.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "7.2.0.192.in-addr.arpa",
                "2.0.192.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "7.100.51.198.in-addr.arpa",
                "100.51.198.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "7.113.0.203.in-addr.arpa",
                "113.0.203.in-addr.arpa",
                Local::Nxdomain,
            ),
            (
                "1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
                "8.b.d.0.1.0.0.2.ip6.arpa",
                Local::Nxdomain,
            ),
            (IP6_LOOPBACK, IP6_LOOPBACK, Local::LoopbackName),
            (
                "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
                "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
                Local::Nxdomain,
            ),
        ] {
            assert_eq!(zone_of(name, local), Some((zone, how)), "{name}");
        }
        for name in [
            "example.com",
            "notlocalhost",
            "localhost.example.com",
            "onion.example",
            "8.8.8.8.in-addr.arpa",
            "1.0.15.172.in-addr.arpa",
            "1.0.32.172.in-addr.arpa",
            "172.in-addr.arpa",
            "1.0.63.100.in-addr.arpa",
            "1.0.128.100.in-addr.arpa",
            "x.100.in-addr.arpa",
            "in-addr.arpa",
            "arpa",
            "xhome.arpa",
            "1.0.0.128.in-addr.arpa",
            "7.3.0.192.in-addr.arpa",
            "254.255.255.255.in-addr.arpa",
            "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
        ] {
            assert_eq!(zone_of(name, local), None, "{name}");
        }
        // Forwarded when the upstream is the LAN's own server; localhost, .onion and .invalid never are.
        let fwd = PrivateNames::Forward;
        assert_eq!(zone_of("3.2.1.10.in-addr.arpa", fwd), None);
        assert_eq!(zone_of("wpad.home.arpa", fwd), None);
        assert_eq!(zone_of("x.onion", fwd), Some(("onion", Local::Nxdomain)));
        assert_eq!(
            zone_of("1.0.0.127.in-addr.arpa", fwd),
            Some(("127.in-addr.arpa", Local::LoopbackName))
        );
        assert_eq!(
            zone_of("localhost", fwd),
            Some(("localhost", Local::Loopback))
        );
    }
}
