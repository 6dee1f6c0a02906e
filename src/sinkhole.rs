//! The local answer to a blocked name: built in wire format from the query, never sent upstream.

use crate::blocklist::{RuleAction, Verdict};
use crate::config::{ListConfig, SinkholeConfig, SinkholeMode};
use crate::wire::{self, HEADER_LEN, Query};
use std::net::{Ipv4Addr, Ipv6Addr};

/// UDP payload size c2sink advertises in its own OPT records (the DNS flag day 2020 value).
pub const OUR_PAYLOAD: u16 = wire::MAX_UDP_ANSWER;

const RCODE_NOERROR: u8 = 0;
use crate::wire::RCODE_NXDOMAIN;
const RCODE_REFUSED: u8 = 5;
const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// SOA MNAME and RNAME of synthesized negative answers: names under `.invalid` so they lead nowhere.
const SOA_MNAME: &[u8] = b"\x06c2sink\x07invalid\x00";
const SOA_RNAME: &[u8] = b"\x0ahostmaster\x06c2sink\x07invalid\x00";
/// Bytes of the SOA record of a negative answer: the fixed part, both names, five 32-bit fields.
const SOA_RR_LEN: usize = 12 + SOA_MNAME.len() + SOA_RNAME.len() + 20;

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

    /// The answer to `query` blocked by `rule` under `mode` with this sinkhole's addresses.
    ///
    /// `rule` is a suffix of the query name; the synthesized SOA is owned by it, as if c2sink were
    /// authoritative for the blocked zone, so that clients cache the negative answer (RFC 2308).
    pub fn answer(&self, mode: SinkholeMode, query: &Query<'_>, rule: &str) -> Vec<u8> {
        self.build(self.mode_answer(mode, self.ipv4, self.ipv6), query, rule)
    }

    fn mode_answer(
        &self,
        mode: SinkholeMode,
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<Ipv6Addr>,
    ) -> Answer<'static> {
        const NULL4: &[Ipv4Addr] = &[Ipv4Addr::UNSPECIFIED];
        const NULL6: &[Ipv6Addr] = &[Ipv6Addr::UNSPECIFIED];
        match mode {
            SinkholeMode::Null => Answer::Addresses(NULL4, NULL6),
            SinkholeMode::Nxdomain => Answer::Nxdomain,
            SinkholeMode::Refused => Answer::Refused,
            SinkholeMode::Address => Answer::Address(ipv4, ipv6),
        }
    }

    /// The answer to a query that `verdict` blocks, and the action name for the block event; `None` bytes
    /// mean send nothing (RPZ `rpz-drop.`).
    ///
    /// RPZ rules' own actions come first, then the list's `action` (with its own `ipv4`/`ipv6`), then
    /// `[sinkhole]`.
    pub fn respond(
        &self,
        verdict: &Verdict<'_>,
        query: &Query<'_>,
    ) -> (Option<Vec<u8>>, &'static str) {
        let zone = verdict.rule.name;
        let (answer, action) = match verdict.rule.rule.action {
            RuleAction::Drop => return (None, "drop"),
            RuleAction::Nxdomain => (Answer::Nxdomain, "nxdomain"),
            RuleAction::Nodata => (Answer::Nodata, "nodata"),
            RuleAction::LocalData => {
                let (v4, v6) = verdict
                    .local
                    .map(|d| (&d.v4[..], &d.v6[..]))
                    .unwrap_or_default();
                // The zone's own TTL, as BIND and Unbound answer RPZ local data; never longer than `ttl`, which
                // bounds how long a name taken off a list stays blocked in clients' caches.
                let ttl = verdict
                    .local
                    .and_then(|d| d.ttl)
                    .map_or(self.ttl, |t| t.min(self.ttl));
                return (
                    Some(self.build_ttl(Answer::Addresses(v4, v6), query, zone, ttl)),
                    "local-data",
                );
            }
            RuleAction::Default => self.list_answer(&verdict.list.config),
        };
        (Some(self.build(answer, query, zone)), action)
    }

    /// The answer to a query blocked by what its upstream answer contains (an address on an `ip` list):
    /// the list's action, else `[sinkhole]`; a negative answer's SOA is owned by the question name.
    pub fn respond_to_answer(
        &self,
        list: &ListConfig,
        query: &Query<'_>,
    ) -> (Vec<u8>, &'static str) {
        let (answer, action) = self.list_answer(list);
        (self.build(answer, query, &query.name), action)
    }

    /// A list's own action (with its own addresses), falling back to `[sinkhole]`.
    fn list_answer(&self, list: &ListConfig) -> (Answer<'static>, &'static str) {
        let mode = list.action.unwrap_or(self.mode);
        let answer = self.mode_answer(mode, list.ipv4.or(self.ipv4), list.ipv6.or(self.ipv6));
        (answer, mode.as_str())
    }

    /// The answer to a special-use name c2sink answers itself ([`crate::special`]): the loopback addresses
    /// for `localhost`, else NXDOMAIN, with an SOA owned by `zone` so that clients cache it. The zone's own
    /// name exists (it holds the SOA): NODATA there, as Unbound answers its local zones.
    pub fn special(&self, local: crate::special::Local, query: &Query<'_>, zone: &str) -> Vec<u8> {
        const LO4: &[Ipv4Addr] = &[Ipv4Addr::LOCALHOST];
        const LO6: &[Ipv6Addr] = &[Ipv6Addr::LOCALHOST];
        let answer = match local {
            crate::special::Local::Loopback => Answer::Addresses(LO4, LO6),
            crate::special::Local::LoopbackName => Answer::Ptr(b"\x09localhost\x00"),
            crate::special::Local::Nxdomain if query.name == zone => Answer::Nodata,
            crate::special::Local::Nxdomain => Answer::Nxdomain,
        };
        self.build(answer, query, zone)
    }

    /// Writes an answer in wire format.
    fn build(&self, answer: Answer<'_>, query: &Query<'_>, rule: &str) -> Vec<u8> {
        self.build_ttl(answer, query, rule, self.ttl)
    }

    /// [`build`](Self::build) with records (and the SOA of a NODATA) of TTL `ttl`.
    fn build_ttl(&self, answer: Answer<'_>, query: &Query<'_>, rule: &str, ttl: u32) -> Vec<u8> {
        let (v4, v6): (&[Ipv4Addr], &[Ipv6Addr]) = match &answer {
            Answer::Addresses(v4, v6) => (v4, v6),
            Answer::Address(v4, v6) => (v4.as_slice(), v6.as_slice()),
            _ => (&[], &[]),
        };
        // The addresses that answer the question, as RDATA; read in place (no list is built per answer).
        let (v4, v6) = match (query.qclass == CLASS_IN, query.qtype) {
            (true, TYPE_A) => (v4, &[][..]),
            (true, TYPE_AAAA) => (&[][..], v6),
            _ => (&[][..], &[][..]),
        };
        // A PTR answer's RDATA (a name in wire form), for a PTR question.
        let ptr = match answer {
            Answer::Ptr(name) if query.qclass == CLASS_IN && query.qtype == TYPE_PTR => Some(name),
            _ => None,
        };
        let records = v4.len() + v6.len() + usize::from(ptr.is_some());
        // The SOA of the zone a negative answer stands for, asked at that zone's own name: the SOA is the
        // answer (NOERROR), not a claim that the name has none, or none at all (as Unbound answers it).
        let soa_asked = query.qtype == wire::TYPE_SOA && query.name == rule;
        let (rcode, soa) = match answer {
            Answer::Refused => (RCODE_REFUSED, false),
            _ if soa_asked => (RCODE_NOERROR, true),
            Answer::Nxdomain => (RCODE_NXDOMAIN, true),
            _ => (RCODE_NOERROR, records == 0),
        };
        let mut out = wire::local_answer(query, true, rcode, 96);
        let record = |out: &mut Vec<u8>, rdata: &[u8]| {
            let ([t0, t1], [c0, c1]) = (query.qtype.to_be_bytes(), CLASS_IN.to_be_bytes());
            let ([l0, l1], [s0, s1, s2, s3]) =
                ((rdata.len() as u16).to_be_bytes(), ttl.to_be_bytes());
            // Owner (a pointer to the question name), type, class, TTL, RDLENGTH: one copy, then the data.
            out.extend_from_slice(&[
                0xc0,
                HEADER_LEN as u8,
                t0,
                t1,
                c0,
                c1,
                s0,
                s1,
                s2,
                s3,
                l0,
                l1,
            ]);
            out.extend_from_slice(rdata);
            wire::bump_count(out, 1);
        };
        v4.iter().for_each(|a| record(&mut out, &a.octets()));
        v6.iter().for_each(|a| record(&mut out, &a.octets()));
        ptr.iter().for_each(|name| record(&mut out, name));
        if soa {
            // Owner, type, class, TTL, RDLENGTH, then the fixed RDATA: built on the stack, copied once.
            let mut rr = [0u8; SOA_RR_LEN];
            rr[..2].copy_from_slice(&(0xc000 | soa_owner_offset(query, rule)).to_be_bytes());
            rr[2..4].copy_from_slice(&wire::TYPE_SOA.to_be_bytes());
            rr[4..6].copy_from_slice(&data_class(query.qclass).to_be_bytes());
            rr[6..10].copy_from_slice(&ttl.to_be_bytes());
            rr[10..12].copy_from_slice(&((SOA_RR_LEN - 12) as u16).to_be_bytes());
            let names = 12 + SOA_MNAME.len();
            rr[12..names].copy_from_slice(SOA_MNAME);
            rr[names..names + SOA_RNAME.len()].copy_from_slice(SOA_RNAME);
            let serials = names + SOA_RNAME.len();
            for (i, v) in [1u32, 3600, 600, 86_400, ttl].into_iter().enumerate() {
                rr[serials + 4 * i..serials + 4 * i + 4].copy_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(&rr);
            wire::bump_count(&mut out, if soa_asked { 1 } else { 2 });
        }
        if let Some(e) = query.edns {
            wire::push_opt(&mut out, OUR_PAYLOAD, e.dnssec_ok);
            wire::bump_count(&mut out, 3);
        }
        out
    }
}

/// The class of the SOA in a negative answer: the question's (a CH or HS question gets a CH or HS SOA, as
/// RFC 2308 has it in the zone's class); IN for the QCLASS-only values ANY (255) and NONE (254).
fn data_class(qclass: u16) -> u16 {
    match qclass {
        254 | 255 => CLASS_IN,
        c => c,
    }
}

/// The kinds of local answer.
enum Answer<'a> {
    /// These addresses for A / AAAA questions, NODATA for other types or when none is given.
    Addresses(&'a [Ipv4Addr], &'a [Ipv6Addr]),
    /// The same with at most one address each (`address` mode).
    Address(Option<Ipv4Addr>, Option<Ipv6Addr>),
    /// This name (wire form) for PTR questions, NODATA for other types.
    Ptr(&'static [u8]),
    Nodata,
    Nxdomain,
    Refused,
}

/// Offset of the rule's name inside the echoed question, for a compression pointer.
fn soa_owner_offset(query: &Query<'_>, rule: &str) -> u16 {
    if !wire::within(&query.name, rule) {
        // Blocked through a CNAME target: the SOA is owned by the question name.
        return HEADER_LEN as u16;
    }
    if query.name_is_plain() && !rule.is_empty() {
        // Without escapes the rule starts at the same offset in the text as in the wire name.
        let at = query.name.len() - rule.len();
        return HEADER_LEN as u16 + u16::try_from(at).unwrap_or(0);
    }
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
        crate::wire::test_message(0xabcd, 0x0100, name, qtype)
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
        // A label holding a dot: the text "a\\.b.evil.com" is longer than the wire name, whose offsets count.
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'.', b'b'];
        m.extend_from_slice(b"\x04evil\x03com\x00\x00\x01\x00\x01");
        let query = parse_query(&m).unwrap();
        assert_eq!(query.name, "a\\.b.evil.com");
        assert_eq!(soa_owner_offset(&query, "evil.com"), 12 + 4);
        assert_eq!(soa_owner_offset(&query, "com"), 12 + 9);
    }

    #[test]
    fn address_mode_without_ipv6_gives_nodata_to_aaaa() {
        let raw = q("evil.com", 28);
        let query = parse_query(&raw).expect("query");
        let r = sink(SinkholeMode::Address).answer(SinkholeMode::Address, &query, "evil.com");
        let h = Header::read(&r).expect("header");
        assert_eq!((h.rcode(), h.ancount, h.nscount), (0, 0, 1));
    }

    #[test]
    fn the_soa_asked_at_the_zone_itself_is_the_answer() {
        for mode in [SinkholeMode::Null, SinkholeMode::Nxdomain] {
            let raw = q("Evil.com", 6);
            let query = parse_query(&raw).expect("query");
            let r = sink(mode).answer(mode, &query, "evil.com");
            let h = Header::read(&r).expect("header");
            assert_eq!((h.rcode(), h.ancount, h.nscount), (0, 1, 0), "{mode:?}");
            // Below the zone, or another type at it: the negative answer with the SOA in authority.
            for (name, qtype) in [("a.evil.com", 6), ("evil.com", 16)] {
                let raw = q(name, qtype);
                let query = parse_query(&raw).expect("query");
                let r = sink(mode).answer(mode, &query, "evil.com");
                let h = Header::read(&r).expect("header");
                assert_eq!((h.ancount, h.nscount), (0, 1), "{mode:?} {name} {qtype}");
            }
        }
    }

    #[test]
    fn negative_answer_soa_takes_the_question_class() {
        // (question class, SOA class): CH and HS keep theirs; ANY and NONE are not classes of data.
        for (qclass, soa_class) in [(3u16, 3u16), (4, 4), (1, 1), (255, 1), (254, 1)] {
            let mut raw = q("evil.com", 1);
            let n = raw.len();
            raw[n - 2..].copy_from_slice(&qclass.to_be_bytes());
            let query = parse_query(&raw).expect("query");
            let r = sink(SinkholeMode::Nxdomain).answer(SinkholeMode::Nxdomain, &query, "evil.com");
            let h = Header::read(&r).expect("header");
            assert_eq!(
                (h.rcode(), h.ancount, h.nscount),
                (3, 0, 1),
                "class {qclass}"
            );
            // The SOA's owner is a 2-byte pointer right after the question; then type, then class.
            let at = HEADER_LEN + query.question.len() + 4;
            assert_eq!(&r[at..at + 2], &soa_class.to_be_bytes(), "class {qclass}");
        }
    }
}
