//! The kernel's IPv6 neighbour table (NDP), read with one netlink RTM_GETNEIGH dump.
//!
//! Linux has no `/proc` file for IPv6 neighbours and running `ip -6 neigh` per refresh would fork a process,
//! so the background refresher asks the kernel directly: one request, a few replies, no extra crate
//! (`socket2` already opens the socket; the messages are a handful of fixed-layout structs parsed below).

use super::Mac;
use std::net::Ipv6Addr;

const AF_NETLINK: i32 = 16;
const NETLINK_ROUTE: i32 = 0;
const AF_INET6: u8 = 10;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Neighbour states that do not name a live MAC: INCOMPLETE, FAILED, NOARP.
const NUD_USELESS: u16 = 0x01 | 0x20 | 0x40;
const NLMSG_HDR: usize = 16;
const NDMSG: usize = 12;

/// Dumps the IPv6 neighbour table.
pub fn dump() -> std::io::Result<Vec<(Ipv6Addr, Mac)>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read;
    let sock = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_ROUTE)),
    )?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
    let mut req = Vec::with_capacity(NLMSG_HDR + NDMSG);
    req.extend_from_slice(&((NLMSG_HDR + NDMSG) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    req.push(AF_INET6);
    req.extend_from_slice(&[0u8; NDMSG - 1]);
    sock.send(&req)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut sock = sock;
    loop {
        let n = sock.read(&mut buf)?;
        if n == 0 || parse(&buf[..n], &mut out) {
            return Ok(out);
        }
    }
}

/// Reads one datagram of netlink messages into `out`; true when the dump is over (DONE or ERROR).
pub fn parse(mut buf: &[u8], out: &mut Vec<(Ipv6Addr, Mac)>) -> bool {
    while buf.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDR || len > buf.len() {
            return true;
        }
        match kind {
            NLMSG_DONE | NLMSG_ERROR => return true,
            RTM_NEWNEIGH => {
                if let Some(n) = neighbour(&buf[NLMSG_HDR..len]) {
                    out.push(n);
                }
            }
            _ => {}
        }
        buf = &buf[align(len).min(buf.len())..];
    }
    false
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One RTM_NEWNEIGH body: ndmsg, then attributes (destination address, link-layer address).
fn neighbour(body: &[u8]) -> Option<(Ipv6Addr, Mac)> {
    let nd = body.get(..NDMSG)?;
    let state = u16::from_ne_bytes([nd[8], nd[9]]);
    if nd[0] != AF_INET6 || state & NUD_USELESS != 0 {
        return None;
    }
    let (mut dst, mut mac) = (None, None);
    let mut attrs = &body[NDMSG..];
    while attrs.len() >= 4 {
        let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if alen < 4 || alen > attrs.len() {
            break;
        }
        let data = &attrs[4..alen];
        match kind {
            NDA_DST => dst = <[u8; 16]>::try_from(data).ok().map(Ipv6Addr::from),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(data).ok().map(Mac),
            _ => {}
        }
        attrs = &attrs[align(alen).min(attrs.len())..];
    }
    let mac = mac.filter(|m| !m.is_zero())?;
    Some((dst?, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(data);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn msg(kind: u16, state: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![AF_INET6, 0, 0, 0, 2, 0, 0, 0];
        body.extend_from_slice(&state.to_ne_bytes());
        body.extend_from_slice(&[0, 0]);
        for a in attrs {
            body.extend_from_slice(a);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn parses_reachable_neighbours_and_stops_at_done() {
        let ip: Ipv6Addr = "fe80::1".parse().unwrap();
        let mac = [0xaa, 0xbb, 0xcc, 0, 0, 1];
        let mut buf = msg(
            RTM_NEWNEIGH,
            0x02,
            &[attr(NDA_DST, &ip.octets()), attr(NDA_LLADDR, &mac)],
        );
        // An incomplete entry has no usable MAC.
        buf.extend(msg(RTM_NEWNEIGH, 0x01, &[attr(NDA_DST, &ip.octets())]));
        // A truncated attribute is ignored, not read past.
        buf.extend(msg(RTM_NEWNEIGH, 0x02, &[vec![200, 0, 1, 0]]));
        let mut out = Vec::new();
        assert!(!parse(&buf, &mut out));
        assert_eq!(out, vec![(ip, Mac(mac))]);
        assert!(parse(&msg(NLMSG_DONE, 0, &[]), &mut out));
        assert!(parse(
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
            &mut out
        ));
    }

    #[test]
    fn kernel_dump_does_not_fail() {
        // Loopback has no neighbours; the point is that the request/reply exchange works here.
        assert!(dump().is_ok());
    }
}
