//! The local answer to a blocked name: built in wire format from the query, never sent upstream.

use crate::config::{SinkholeConfig, SinkholeMode};
use crate::wire::{self, HEADER_LEN, Query};
use std::net::{Ipv4Addr, Ipv6Addr};

/// UDP payload size c2sink advertises in its own OPT records (the DNS flag day 2020 value).
pub const OUR_PAYLOAD: u16 = 1232;

const RCODE_NOERROR: u8 = 0;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_REFUSED: u8 = 5;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// SOA MNAME and RNAME of synthesized negative answers: names under `.invalid` so they lead nowhere.
const SOA_MNAME: &[u8] = b"\x06c2sink\x07invalid\x00";
const SOA_RNAME: &[u8] = b"\x0ahostmaster\x06c2sink\x07invalid\x00";

/// Builds sinkhole answers for one configuration.
#[derive(Debug, Clone)]
pub struct Sinkhole {
    pub mode: SinkholeMode,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    ttl: u32,
}

impl Sinkhole {
    /// The server-wide sinkhole from `[sinkhole]`.
    pub fn from_config(c: &SinkholeConfig) -> Self {
        Sinkhole {
            mode: c.mode,
            ipv4: c.ipv4,
            ipv6: c.ipv6,
            ttl: c.ttl,
        }
    }

    /// The answer to `query` (raw bytes `raw`) blocked by `rule` under `mode`.
    ///
    /// `rule` is a suffix of the query name; the synthesized SOA is owned by it, as if c2sink were
    /// authoritative for the blocked zone, so that clients cache the negative answer (RFC 2308).
    pub fn answer(&self, mode: SinkholeMode, query: &Query<'_>, rule: &str) -> Vec<u8> {
        let ttl = self.ttl;
        let mut out = Vec::with_capacity(HEADER_LEN + query.question.len() + 96);
        // The address record's RDATA, on the stack.
        let (v4, v6);
        let address: Option<&[u8]> = match (mode, query.qtype, query.qclass) {
            (SinkholeMode::Null, TYPE_A, CLASS_IN) => Some(&[0; 4]),
            (SinkholeMode::Null, TYPE_AAAA, CLASS_IN) => Some(&[0; 16]),
            (SinkholeMode::Address, TYPE_A, CLASS_IN) => {
                v4 = self.ipv4.map(|a| a.octets());
                v4.as_ref().map(|a| &a[..])
            }
            (SinkholeMode::Address, TYPE_AAAA, CLASS_IN) => {
                v6 = self.ipv6.map(|a| a.octets());
                v6.as_ref().map(|a| &a[..])
            }
            _ => None,
        };
        let (rcode, soa) = match mode {
            SinkholeMode::Refused => (RCODE_REFUSED, false),
            SinkholeMode::Nxdomain => (RCODE_NXDOMAIN, true),
            SinkholeMode::Null | SinkholeMode::Address => (RCODE_NOERROR, address.is_none()),
        };
        let q = query.header.flags;
        // QR, opcode and RD and CD from the query; AA and RA set.
        let flags: u16 = 0x8000 | (q & 0x7900) | 0x0400 | 0x0080 | (q & 0x0010) | u16::from(rcode);
        out.extend_from_slice(&query.header.id.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(query.question);
        if let Some(rdata) = address {
            out.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
            out.extend_from_slice(&query.qtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
            wire::bump_count(&mut out, 1);
        }
        if soa {
            let owner = soa_owner_offset(query, rule);
            out.extend_from_slice(&(0xc000 | owner).to_be_bytes());
            out.extend_from_slice(&wire::TYPE_SOA.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            let rdlen = SOA_MNAME.len() + SOA_RNAME.len() + 20;
            out.extend_from_slice(&(rdlen as u16).to_be_bytes());
            out.extend_from_slice(SOA_MNAME);
            out.extend_from_slice(SOA_RNAME);
            for v in [1u32, 3600, 600, 86_400, ttl] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            wire::bump_count(&mut out, 2);
        }
        if let Some(e) = query.edns {
            wire::push_opt(&mut out, OUR_PAYLOAD, e.dnssec_ok);
            wire::bump_count(&mut out, 3);
        }
        out
    }
}

/// Offset of the rule's name inside the echoed question, for a compression pointer.
fn soa_owner_offset(query: &Query<'_>, rule: &str) -> u16 {
    let rule_labels = if rule.is_empty() {
        0
    } else {
        rule.split('.').count()
    };
    let n = query.label_starts.len();
    let skip = n.saturating_sub(rule_labels);
    match query.label_starts.get(skip) {
        Some(&start) => HEADER_LEN as u16 + u16::from(start),
        // The rule is the whole name (or more): point at the question name.
        None => HEADER_LEN as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Header, answer_shape, parse_query};

    fn q(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    fn sink(mode: SinkholeMode) -> Sinkhole {
        Sinkhole {
            mode,
            ipv4: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6: None,
            ttl: 60,
        }
    }

    #[test]
    fn null_mode_gives_zero_address_to_a_and_nodata_to_txt() {
        let raw = q("CDN.msstorageazure.com", 1);
        let query = parse_query(&raw).expect("query");
        let r = sink(SinkholeMode::Null).answer(SinkholeMode::Null, &query, "msstorageazure.com");
        let h = Header::read(&r).expect("header");
        assert_eq!((h.id, h.rcode(), h.ancount, h.nscount), (0xabcd, 0, 1, 0));
        assert_eq!(&r[r.len() - 4..], &[0, 0, 0, 0]);
        assert_eq!(&r[13..16], b"CDN");

        let raw = q("cdn.msstorageazure.com", 16);
        let query = parse_query(&raw).expect("query");
        let r = sink(SinkholeMode::Null).answer(SinkholeMode::Null, &query, "msstorageazure.com");
        let shape = answer_shape(&r).expect("well formed");
        assert_eq!((shape.header.ancount, shape.header.nscount), (0, 1));
        assert_eq!(shape.negative_ttl, Some(60));
    }

    #[test]
    fn soa_owner_points_at_rule_suffix() {
        let raw = q("a.b.evil.com", 1);
        let query = parse_query(&raw).expect("query");
        assert_eq!(soa_owner_offset(&query, "evil.com"), 12 + 4);
        assert_eq!(soa_owner_offset(&query, "a.b.evil.com"), 12);
    }

    #[test]
    fn address_mode_without_ipv6_gives_nodata_to_aaaa() {
        let raw = q("evil.com", 28);
        let query = parse_query(&raw).expect("query");
        let r = sink(SinkholeMode::Address).answer(SinkholeMode::Address, &query, "evil.com");
        let h = Header::read(&r).expect("header");
        assert_eq!((h.rcode(), h.ancount, h.nscount), (0, 0, 1));
    }
}
