//! The kernel's IPv4 neighbour table in `/proc/net/arp` form: which MAC holds which IP on the LAN right now.

use super::Mac;
use std::net::Ipv4Addr;

/// ATF_COM: the entry is complete (the MAC is known).
const ATF_COM: u32 = 0x02;

/// Reads `/proc/net/arp` text: header line, then `IP HWtype Flags HWaddress Mask Device` rows.
/// Incomplete entries and malformed rows are skipped (the kernel's own file has none of the latter).
pub fn parse(text: &str) -> Vec<(Ipv4Addr, Mac)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let (Ok(ip), Some(mac)) = (f[0].parse::<Ipv4Addr>(), Mac::parse(f[3])) else {
            continue;
        };
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & ATF_COM == 0 || mac.is_zero() {
            continue;
        }
        out.push((ip, mac));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_entries_and_skips_the_rest() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    192.168.1.10     0x1         0x2         aa:bb:cc:dd:ee:01     *        eth0\n\
                    192.168.1.11     0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                    garbage line\n\
                    192.168.1.12     0x1         0x6         AA:BB:CC:DD:EE:02     *        eth0\n\
                    192.168.1.999    0x1         0x2         aa:bb:cc:dd:ee:03     *        eth0\n";
        let got = parse(text);
        assert_eq!(
            got,
            vec![
                (
                    "192.168.1.10".parse().unwrap(),
                    Mac::parse("aa:bb:cc:dd:ee:01").unwrap()
                ),
                (
                    "192.168.1.12".parse().unwrap(),
                    Mac::parse("aa:bb:cc:dd:ee:02").unwrap()
                ),
            ]
        );
    }
}
