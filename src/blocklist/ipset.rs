//! Address lists (`kind = "ip"`): C2 infrastructure known by IPv4/IPv6 address or network, matched against
//! the addresses in upstream answers.
//!
//! Networks are kept per prefix length in hash maps of masked addresses, so a lookup costs one probe per
//! distinct prefix length in the list (most specific first), whatever the list's size.

use hashbrown::HashMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::IpAddr;

/// A set of networks with most-specific-match lookup.
#[derive(Default)]
pub struct IpSet {
    /// (prefix length, masked address → source line), longest prefixes first.
    v4: Vec<(u8, HashMap<u32, u32>)>,
    v6: Vec<(u8, HashMap<u128, u32>)>,
    len: usize,
}

/// A listed network that contains an address, with where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpHit {
    pub net: IpNet,
    pub line: u32,
}

fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len)))
    }
}

impl IpSet {
    /// Networks held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a network; false when it was already there (the first line is kept).
    pub fn insert(&mut self, net: IpNet, line: u32) -> bool {
        let fresh = match net {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let key = mask4(u32::from(n.addr()), len);
                slot(&mut self.v4, len).try_insert(key, line).is_ok()
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let key = mask6(u128::from(n.addr()), len);
                slot(&mut self.v6, len).try_insert(key, line).is_ok()
            }
        };
        self.len += usize::from(fresh);
        fresh
    }

    /// The most specific listed network containing `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn find(&self, ip: IpAddr) -> Option<IpHit> {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find_map(|(len, m)| {
                    let key = mask4(a, *len);
                    let &line = m.get(&key)?;
                    let net = Ipv4Net::new(key.into(), *len).ok()?;
                    Some(IpHit {
                        net: IpNet::V4(net),
                        line,
                    })
                })
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find_map(|(len, m)| {
                    let key = mask6(a, *len);
                    let &line = m.get(&key)?;
                    let net = Ipv6Net::new(key.into(), *len).ok()?;
                    Some(IpHit {
                        net: IpNet::V6(net),
                        line,
                    })
                })
            }
        }
    }
}

/// The map for one prefix length, created in longest-first order when missing.
fn slot<K>(v: &mut Vec<(u8, HashMap<K, u32>)>, len: u8) -> &mut HashMap<K, u32> {
    let i = match v.iter().position(|(l, _)| *l <= len) {
        Some(i) if v[i].0 == len => i,
        Some(i) => {
            v.insert(i, (len, HashMap::new()));
            i
        }
        None => {
            v.push((len, HashMap::new()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

/// The network on one line of an address list: `192.0.2.1`, `198.51.100.0/24`, `2001:db8::/32`;
/// `#` comments and blank lines give `None`.
pub fn ip_line(line: &str) -> Option<Result<IpNet, String>> {
    let t = line.split('#').next().unwrap_or("").trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(net) = t.parse::<IpNet>() {
        // Host bits set (10.0.0.1/8) are almost always a typo for the network; refuse them loudly.
        if net.trunc() != net {
            return Some(Err(format!(
                "\"{t}\" has host bits set (did you mean {}?)",
                net.trunc()
            )));
        }
        return Some(Ok(net));
    }
    match t.parse::<IpAddr>() {
        Ok(ip) => Some(Ok(IpNet::from(ip.to_canonical()))),
        Err(_) => Some(Err(format!(
            "\"{}\" is not an IP address or network",
            super::parse::short(t)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(lines: &[&str]) -> IpSet {
        let mut s = IpSet::default();
        for (i, l) in lines.iter().enumerate() {
            if let Some(Ok(n)) = ip_line(l) {
                s.insert(n, i as u32 + 1);
            }
        }
        s
    }

    #[test]
    fn addresses_and_networks_match_most_specific_first() {
        let s = set(&[
            "172.93.201.88",
            "198.51.100.0/24",
            "198.51.0.0/16",
            "2001:db8::/32",
        ]);
        let hit = |ip: &str| {
            s.find(ip.parse().expect("ip"))
                .map(|h| (h.net.to_string(), h.line))
        };
        assert_eq!(hit("172.93.201.88"), Some(("172.93.201.88/32".into(), 1)));
        assert_eq!(hit("172.93.201.89"), None);
        assert_eq!(hit("198.51.100.7"), Some(("198.51.100.0/24".into(), 2)));
        assert_eq!(hit("198.51.7.7"), Some(("198.51.0.0/16".into(), 3)));
        assert_eq!(hit("2001:db8:1::5"), Some(("2001:db8::/32".into(), 4)));
        assert_eq!(
            hit("::ffff:172.93.201.88"),
            Some(("172.93.201.88/32".into(), 1))
        );
        assert_eq!(hit("2001:db9::1"), None);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn bad_lines_are_explained() {
        assert!(ip_line("# c").is_none());
        assert!(ip_line("   ").is_none());
        assert!(matches!(ip_line("10.0.0.1/8"), Some(Err(e)) if e.contains("10.0.0.0/8")));
        assert!(matches!(ip_line("example.com"), Some(Err(_))));
        assert!(matches!(ip_line("300.1.1.1"), Some(Err(_))));
        assert!(matches!(ip_line("10.0.0.0/8 # lab"), Some(Ok(_))));
    }
}
