//! What a forwarding router tells about the real client inside the query: its MAC (EDNS option 65001, as
//! dnsmasq `--add-mac` sends it) and its subnet (EDNS Client Subnet, option 8, RFC 7871).
//!
//! Read only for queries that produce an event, never on the plain forwarding path. Both stop at c2sink
//! unless `[upstream] send_client_hints` is on: the query goes upstream with c2sink's own OPT record
//! (`wire::own_opt`), which keeps them only then.

use super::Mac;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EDNS Client Subnet (RFC 7871).
pub const OPT_ECS: u16 = 8;
/// The client's MAC, as dnsmasq `--add-mac` sends it.
pub const OPT_DNSMASQ_MAC: u16 = 65001;

/// Client facts found in a query's OPT record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    pub mac: Option<Mac>,
    /// Address and source prefix length from EDNS Client Subnet.
    pub subnet: Option<(IpAddr, u8)>,
}

/// Reads the hints in the options of a query's OPT record (`Query::edns_options`); anything malformed just
/// yields no hints.
pub fn hints(options: &[u8]) -> Hints {
    read(options).unwrap_or_default()
}

fn read(mut opts: &[u8]) -> Option<Hints> {
    let mut out = Hints::default();
    while opts.len() >= 4 {
        let code = u16::from_be_bytes([opts[0], opts[1]]);
        let len = usize::from(u16::from_be_bytes([opts[2], opts[3]]));
        let data = opts.get(4..4 + len)?;
        match code {
            OPT_DNSMASQ_MAC => out.mac = dnsmasq_mac(data),
            OPT_ECS => out.subnet = ecs(data),
            _ => {}
        }
        opts = &opts[4 + len..];
    }
    Some(out)
}

/// The address of a full-length client subnet (/32, /128): one machine behind the router, not a network.
pub fn full_length(subnet: Option<(IpAddr, u8)>) -> Option<IpAddr> {
    let (a, p) = subnet?;
    (p == if a.is_ipv4() { 32 } else { 128 }).then_some(a.to_canonical())
}

/// The raw MAC and client-subnet options of a query's OPT record, in order (empty when it has none): with
/// `send_client_hints` on they go upstream, which may answer per device, so they are part of the cache key.
pub fn hint_options(mut opts: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while opts.len() >= 4 {
        let code = u16::from_be_bytes([opts[0], opts[1]]);
        let len = usize::from(u16::from_be_bytes([opts[2], opts[3]]));
        let Some(whole) = opts.get(..4 + len) else {
            break;
        };
        if code == OPT_ECS || code == OPT_DNSMASQ_MAC {
            out.extend_from_slice(whole);
        }
        opts = &opts[4 + len..];
    }
    out
}

/// dnsmasq sends the 6 bytes, or with `--add-mac=text` the colon-separated form.
fn dnsmasq_mac(data: &[u8]) -> Option<Mac> {
    match <[u8; 6]>::try_from(data) {
        Ok(b) => Some(Mac(b)),
        Err(_) => Mac::parse(std::str::from_utf8(data).ok()?),
    }
}

/// FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, ADDRESS (only the prefix's bytes).
fn ecs(data: &[u8]) -> Option<(IpAddr, u8)> {
    let family = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
    let prefix = *data.get(2)?;
    let addr = data.get(4..)?;
    match family {
        1 if prefix <= 32 && addr.len() <= 4 => {
            let mut b = [0u8; 4];
            b[..addr.len()].copy_from_slice(addr);
            Some((IpAddr::V4(Ipv4Addr::from(b)), prefix))
        }
        2 if prefix <= 128 && addr.len() <= 16 => {
            let mut b = [0u8; 16];
            b[..addr.len()].copy_from_slice(addr);
            Some((IpAddr::V6(Ipv6Addr::from(b)), prefix))
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A query for "a." with one OPT record holding `opts`.
    pub fn query_with_options(opts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, b'a', 0, 0, 1, 0, 1];
        let mut rdata = Vec::new();
        for (code, data) in opts {
            rdata.extend_from_slice(&code.to_be_bytes());
            rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
            rdata.extend_from_slice(data);
        }
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
        m
    }

    /// The OPT options of a query, as the pipeline hands them to [`super::hints`].
    pub fn options_of(q: &[u8]) -> &[u8] {
        crate::wire::parse_query(q).map_or(&[], |p| p.edns_options)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{options_of, query_with_options};
    use super::*;

    #[test]
    fn reads_mac_and_client_subnet() {
        let q = query_with_options(&[
            (10, vec![1, 2, 3, 4, 5, 6, 7, 8]),
            (65001, vec![0xaa, 0xbb, 0xcc, 0, 0, 1]),
            (8, vec![0, 1, 24, 0, 10, 1, 2]),
        ]);
        let h = hints(options_of(&q));
        assert_eq!(h.mac, Mac::parse("aa:bb:cc:00:00:01"));
        assert_eq!(h.subnet, Some(("10.1.2.0".parse().unwrap(), 24)));
        let q = query_with_options(&[(65001, b"AA:BB:CC:00:00:02".to_vec())]);
        assert_eq!(hints(options_of(&q)).mac, Mac::parse("aa:bb:cc:00:00:02"));
        let q = query_with_options(&[(8, vec![0, 2, 48, 0, 0x20, 1, 0xd, 0xb8, 0, 1])]);
        assert_eq!(
            hints(options_of(&q)).subnet,
            Some(("2001:db8:1::".parse().unwrap(), 48))
        );
    }

    #[test]
    fn malformed_options_give_no_hints() {
        // Option length runs past the record.
        assert_eq!(
            hints(&[0xfd, 0xe9, 0, 50, 1, 2, 3, 4, 5, 6]),
            Hints::default()
        );
        assert_eq!(hints(&[0xfd, 0xe9, 0]), Hints::default());
        let q = query_with_options(&[(8, vec![0, 1, 40, 0, 1, 2, 3, 4, 5])]);
        assert_eq!(hints(options_of(&q)).subnet, None);
        assert_eq!(hints(&[]), Hints::default());
    }
}
