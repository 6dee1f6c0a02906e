//! Raw DNS messages built by hand (std only): a query and a fixed-A answer to one. Shared by the test harness
//! and the examples (which include this file with `#[path = "../tests/common/raw.rs"]`).
#![allow(dead_code)]

use std::net::Ipv4Addr;

/// A query for `name`/`qtype` with RD set and no EDNS (letter case kept, empty labels skipped).
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.').filter(|l| !l.is_empty()) {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// A NOERROR answer to the query `q` (RD copied, RA set) echoing its question as sent, with one A record
/// `addr` (TTL `ttl`) unless `a_only` and the question is not for A (then NODATA, no SOA); no EDNS.
/// `None` unless `q` is a query with exactly one complete question.
pub fn fixed_a(q: &[u8], addr: Ipv4Addr, ttl: u32, a_only: bool) -> Option<Vec<u8>> {
    let mut r = Vec::with_capacity(q.len() + 16);
    fixed_a_into(q, addr, ttl, a_only, &mut r)?;
    Some(r)
}

/// [`fixed_a`] written into `r` (cleared first), for a responder that reuses one buffer per answer.
pub fn fixed_a_into(
    q: &[u8],
    addr: Ipv4Addr,
    ttl: u32,
    a_only: bool,
    r: &mut Vec<u8>,
) -> Option<()> {
    if q.len() < 12 || q[2] & 0x80 != 0 || q[4..6] != [0, 1] {
        return None;
    }
    let mut pos = 12;
    loop {
        let len = usize::from(*q.get(pos)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        pos += 1 + len;
    }
    let qend = pos + 5;
    let qtype = q.get(pos + 1..qend)?;
    let answer = !a_only || qtype[..2] == [0, 1];
    r.clear();
    r.extend_from_slice(&q[..2]);
    r.extend_from_slice(&[
        0x80 | (q[2] & 0x01),
        0x80,
        0,
        1,
        0,
        u8::from(answer),
        0,
        0,
        0,
        0,
    ]);
    r.extend_from_slice(&q[12..qend]);
    if answer {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&addr.octets());
    }
    Some(())
}
