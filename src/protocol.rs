//! Protocol rules that shape replies c2sink makes itself: error replies that keep EDNS (RFC 6891), BADVERS
//! for EDNS versions it does not speak, REFUSED to zone transfers, FORMERR to meta types asked as questions,
//! and the minimal answer to ANY (RFC 8482) that keeps c2sink from being an amplifier.

use crate::sinkhole::OUR_PAYLOAD;
use crate::wire::{self, Edns, HEADER_LEN, Query};

/// The query could not be read.
pub const RCODE_FORMERR: u16 = 1;
/// No upstream answered.
pub const RCODE_SERVFAIL: u16 = 2;
/// An opcode other than QUERY.
pub const RCODE_NOTIMP: u16 = 4;
/// Policy says no (access control, rate limit).
pub const RCODE_REFUSED: u16 = 5;
/// EDNS version not supported (extended RCODE, needs an OPT record to carry its upper bits).
pub const RCODE_BADVERS: u16 = 16;

/// RR type HINFO, used for the RFC 8482 answer.
const TYPE_HINFO: u16 = 13;
/// TTL of the RFC 8482 answer (the RFC suggests about an hour).
const ANY_TTL: u32 = 3600;
/// Highest EDNS version c2sink speaks.
pub const EDNS_VERSION: u8 = 0;

/// An error reply to `raw`: header and (when readable) question, with an OPT when the query had one.
///
/// RCODEs above 15 go in the OPT's extended-RCODE field.
pub fn error_reply(raw: &[u8], rcode: u16) -> Vec<u8> {
    let (qlen, edns) = match wire::parse_query(raw) {
        Ok(q) => (q.question.len(), q.edns),
        Err(_) => (0, find_edns(raw)),
    };
    let mut out = wire::short_reply(raw, qlen, (rcode & 0x0f) as u8, false);
    if let Some(e) = edns {
        push_opt_rcode(&mut out, e, rcode);
    }
    out
}

/// Zone transfer QTYPEs (RFC 1995, RFC 5936): a resolver has no zone to hand out.
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
/// The classes a question may ask for here: IN and ANY; in CH only the identity names ([`chaos_answer`]).
const CLASSES_SERVED: [u16; 2] = [1, 255];
/// The obsolete mailbox QTYPEs (RFC 1035): no resolver answers them.
const TYPE_MAILB: u16 = 253;
const TYPE_MAILA: u16 = 254;

/// Why a question is answered with an error before any list, cache or upstream sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unserved {
    /// An EDNS version c2sink does not speak: BADVERS (RFC 6891 section 6.1.3).
    EdnsVersion,
    /// REFUSED, as Unbound answers them: a zone transfer (AXFR, IXFR; through a resolver, it is
    /// reconnaissance), or a class other than IN and ANY (HS, NONE, unassigned ones, and CH but for the
    /// identity names). Forwarded, these met authoritative servers that refuse them without echoing the
    /// question, or told the client about the upstream.
    Refused,
    /// A meta type (OPT, TSIG, TKEY, 128-248) or MAILA/MAILB asked as a question, or a query with records in
    /// its answer or authority section, or in its additional section besides one OPT (a TSIG c2sink cannot
    /// check), or one with TC set (a query is never truncated): FORMERR, as Unbound answers them (RFC 6895
    /// section 3.1: meta types exist only in messages, never in a question).
    FormErr,
}

impl Unserved {
    /// What is wrong with `query`, if it is one c2sink answers with an error of its own.
    pub fn of(query: &Query<'_>) -> Option<Unserved> {
        if query.edns.is_some_and(|e| e.version > EDNS_VERSION) {
            return Some(Unserved::EdnsVersion);
        }
        // Nothing but one OPT belongs in a query's other sections. A TSIG signed for c2sink, or anything
        // else there, would go upstream with the question and decide the answer every client sharing it gets.
        let extra = query.header.arcount > u16::from(query.edns.is_some());
        let truncated = query.header.truncated();
        if query.header.ancount > 0 || query.header.nscount > 0 || extra || truncated {
            return Some(Unserved::FormErr);
        }
        if !CLASSES_SERVED.contains(&query.qclass) && !chaos_identity(query) {
            return Some(Unserved::Refused);
        }
        match query.qtype {
            TYPE_AXFR | TYPE_IXFR => Some(Unserved::Refused),
            wire::TYPE_OPT | 128..=250 | TYPE_MAILB | TYPE_MAILA => Some(Unserved::FormErr),
            _ => None,
        }
    }

    /// The answer's name in a block event's `action` (for a listed name asked this way).
    pub fn action(self) -> &'static str {
        match self {
            Unserved::EdnsVersion => "badvers",
            Unserved::Refused => "refused",
            Unserved::FormErr => "formerr",
        }
    }

    /// The error reply to `raw` for this reason.
    pub fn reply(self, raw: &[u8]) -> Vec<u8> {
        let rcode = match self {
            Unserved::EdnsVersion => RCODE_BADVERS,
            Unserved::Refused => RCODE_REFUSED,
            Unserved::FormErr => RCODE_FORMERR,
        };
        error_reply(raw, rcode)
    }
}

/// The minimal RFC 8482 answer to an ANY query: one HINFO "RFC8482" "" record for the name.
pub fn any_answer(query: &Query<'_>) -> Vec<u8> {
    // QR, opcode, RD and CD from the query; RA set, AA not; NOERROR.
    let mut out = wire::local_answer(query, false, 0, 40);
    wire::bump_count(&mut out, 1);
    out.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
    out.extend_from_slice(&TYPE_HINFO.to_be_bytes());
    out.extend_from_slice(&query.qclass.to_be_bytes());
    out.extend_from_slice(&ANY_TTL.to_be_bytes());
    let rdata: &[u8] = b"\x07RFC8482\x00";
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    if let Some(e) = query.edns {
        push_opt_rcode(&mut out, e, 0);
    }
    out
}

/// RR type TXT.
const TYPE_TXT: u16 = 16;
/// Class CHAOS, where servers answer questions about themselves (RFC 4892).
const CLASS_CH: u16 = 3;
/// What `version.bind` and `version.server` get: enough for an admin to see that a client's queries reach
/// c2sink, and no version number to look up vulnerabilities by.
pub const CHAOS_VERSION: &str = "c2sink";

/// c2sink's own answer to the CH TXT names that ask a server who it is (RFC 4892), as Unbound answers them:
/// forwarded, they told the client who the upstream is. `version.bind` and `version.server` get
/// [`CHAOS_VERSION`]; `id.server` and `hostname.bind` get REFUSED (Unbound's `hide-identity`): the name of
/// the host or container means nothing to a client and is one more fact for a scan.
#[inline]
pub fn chaos_answer(query: &Query<'_>, raw: &[u8]) -> Option<Vec<u8>> {
    // Every query asks this: the class test stays in the caller, the rest out of line.
    if query.qclass != CLASS_CH {
        return None;
    }
    chaos_identity_answer(query, raw)
}

/// [`chaos_answer`] for a CH question.
#[inline(never)]
fn chaos_identity_answer(query: &Query<'_>, raw: &[u8]) -> Option<Vec<u8>> {
    if !chaos_identity(query) {
        return None;
    }
    match query.name.as_str() {
        "version.bind" | "version.server" => Some(own_txt(query, Some(CHAOS_VERSION))),
        _ => Some(error_reply(raw, RCODE_REFUSED)),
    }
}

/// Whether `query` is a CH TXT (or ANY) question for one of the names that ask a server who it is.
fn chaos_identity(query: &Query<'_>) -> bool {
    query.qclass == CLASS_CH
        && matches!(query.qtype, TYPE_TXT | wire::TYPE_ANY)
        && matches!(
            query.name.as_str(),
            "version.bind" | "version.server" | "id.server" | "hostname.bind"
        )
}

/// An authoritative answer from c2sink's own data: one TXT record `text` (TTL 0, the question's class) for
/// the question's name, or NODATA when `text` is `None`.
pub fn own_txt(query: &Query<'_>, text: Option<&str>) -> Vec<u8> {
    let mut out = wire::local_answer(query, true, 0, 40);
    if let Some(text) = text {
        // One character-string: at most 255 bytes (the texts here are constants far below that).
        let text = &text.as_bytes()[..text.len().min(255)];
        out.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
        out.extend_from_slice(&TYPE_TXT.to_be_bytes());
        out.extend_from_slice(&query.qclass.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(text.len() as u16 + 1).to_be_bytes());
        out.push(text.len() as u8);
        out.extend_from_slice(text);
        wire::bump_count(&mut out, 1);
    }
    if let Some(e) = query.edns {
        wire::push_opt(&mut out, OUR_PAYLOAD, e.dnssec_ok);
        wire::bump_count(&mut out, 3);
    }
    out
}

/// Appends our OPT record (echoing DO) with the upper bits of `rcode`, and counts it.
fn push_opt_rcode(out: &mut Vec<u8>, e: Edns, rcode: u16) {
    let start = out.len();
    wire::push_opt(out, OUR_PAYLOAD, e.dnssec_ok);
    // OPT layout: name (1), type (2), class (2), then TTL = extended RCODE, version, flags.
    out[start + 5] = (rcode >> 4) as u8;
    out[start + 6] = EDNS_VERSION;
    wire::bump_count(out, 3);
}

/// The EDNS facts of a message that `parse_query` rejected, read leniently: the first OPT found, if any.
pub fn find_edns(msg: &[u8]) -> Option<Edns> {
    let h = wire::Header::read(msg).ok()?;
    let mut pos = HEADER_LEN;
    for _ in 0..h.qdcount {
        pos = wire::skip_name(msg, pos).ok()? + 4;
    }
    let records = usize::from(h.ancount) + usize::from(h.nscount);
    for _ in 0..records {
        pos = wire::skip_record(msg, pos).ok()?.next;
    }
    for _ in 0..h.arcount {
        let rr = wire::skip_record(msg, pos).ok()?;
        if rr.rtype == wire::TYPE_OPT {
            return Some(Edns {
                payload: rr.class,
                dnssec_ok: rr.ttl & 0x8000 != 0,
                version: ((rr.ttl >> 16) & 0xff) as u8,
            });
        }
        pos = rr.next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Header, answer_shape, parse_query};

    fn query(name: &str, qtype: u16, opt: Option<(u8, bool)>) -> Vec<u8> {
        let mut m = wire::test_message(0x4242, 0x0100, name, qtype);
        if let Some((version, dnssec_ok)) = opt {
            wire::push_opt(&mut m, 4096, dnssec_ok);
            let n = m.len();
            m[n - 5] = version;
            m[11] = 1;
        }
        m
    }

    #[test]
    fn only_chaos_identity_questions_are_answered_here() {
        let ch = |name: &str, qtype: u16, qclass: u16| {
            let mut m = wire::test_message(9, 0x0100, name, qtype);
            let n = m.len();
            m[n - 2..].copy_from_slice(&qclass.to_be_bytes());
            m
        };
        let raw = ch("Version.Bind", TYPE_TXT, CLASS_CH);
        let r = chaos_answer(&parse_query(&raw).expect("q"), &raw).expect("answered");
        let shape = answer_shape(&r).expect("well formed");
        assert_eq!((shape.header.rcode(), shape.header.ancount), (0, 1));
        assert!(r.ends_with(b"\x06c2sink"));
        assert_eq!(&r[13..20], b"Version");
        let raw = ch("hostname.bind", wire::TYPE_ANY, CLASS_CH);
        let r = chaos_answer(&parse_query(&raw).expect("q"), &raw).expect("answered");
        assert_eq!(Header::read(&r).expect("h").rcode(), RCODE_REFUSED as u8);
        // The same names in class IN, other types, and other CH names are not answered here: the first goes
        // on like any IN question, the others are refused before (as Unbound refuses them).
        for (name, qtype, qclass, why) in [
            ("version.bind", TYPE_TXT, 1, None),
            ("version.bind", 1, CLASS_CH, Some(Unserved::Refused)),
            ("authors.bind", TYPE_TXT, CLASS_CH, Some(Unserved::Refused)),
        ] {
            let raw = ch(name, qtype, qclass);
            let q = parse_query(&raw).expect("q");
            assert!(chaos_answer(&q, &raw).is_none(), "{name}");
            assert_eq!(Unserved::of(&q), why, "{name}");
        }
        let raw = ch("version.bind", TYPE_TXT, CLASS_CH);
        assert_eq!(Unserved::of(&parse_query(&raw).expect("q")), None);
    }

    #[test]
    fn any_gets_one_hinfo_record() {
        let raw = query("Example.com", wire::TYPE_ANY, Some((0, true)));
        let q = parse_query(&raw).expect("query");
        let r = any_answer(&q);
        let shape = answer_shape(&r).expect("well formed");
        assert_eq!((shape.header.ancount, shape.header.arcount), (1, 1));
        assert_eq!(shape.header.id, 0x4242);
        assert!(r.windows(8).any(|w| w == b"\x07RFC8482"));
        assert_eq!(&r[13..20], b"Example");
    }

    #[test]
    fn unknown_edns_version_gets_badvers_in_opt() {
        let raw = query("a.com", 1, Some((1, false)));
        let q = parse_query(&raw).expect("query");
        let r = Unserved::of(&q).expect("badvers").reply(&raw);
        let h = Header::read(&r).expect("header");
        assert_eq!((h.rcode(), h.qdcount, h.arcount), (0, 1, 1));
        let opt = find_edns(&r).expect("opt");
        assert_eq!(opt.version, 0);
        // Extended RCODE 1 in the OPT TTL's first byte: 1 << 4 | 0 = 16.
        let n = r.len();
        assert_eq!(r[n - 6], 1);
        let raw0 = query("a.com", 1, Some((0, false)));
        assert!(Unserved::of(&parse_query(&raw0).expect("q")).is_none());
    }

    #[test]
    fn zone_transfers_are_refused_and_meta_types_are_formerr() {
        let cases = [
            (TYPE_AXFR, Some(Unserved::Refused), RCODE_REFUSED),
            (TYPE_IXFR, Some(Unserved::Refused), RCODE_REFUSED),
            (wire::TYPE_OPT, Some(Unserved::FormErr), RCODE_FORMERR),
            (128, Some(Unserved::FormErr), RCODE_FORMERR),
            (250, Some(Unserved::FormErr), RCODE_FORMERR),
            (TYPE_MAILA, Some(Unserved::FormErr), RCODE_FORMERR),
        ];
        // Classes: IN and ANY are served; CH (but for its identity names, below), HS, NONE and unassigned
        // ones refused.
        for (qclass, why) in [
            (1u16, None),
            (255, None),
            (3, Some(Unserved::Refused)),
            (4, Some(Unserved::Refused)),
            (254, Some(Unserved::Refused)),
            (2, Some(Unserved::Refused)),
            (65535, Some(Unserved::Refused)),
        ] {
            let mut q = query("a.com", 1, None);
            let n = q.len();
            q[n - 2..].copy_from_slice(&qclass.to_be_bytes());
            assert_eq!(
                Unserved::of(&parse_query(&q).expect("q")),
                why,
                "class {qclass}"
            );
        }
        // A query carrying a record in its answer or authority section.
        let mut q = query("a.com", 1, None);
        q.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        q[7] = 1;
        assert_eq!(
            Unserved::of(&parse_query(&q).expect("q")),
            Some(Unserved::FormErr)
        );
        q[7] = 0;
        q[9] = 1;
        assert_eq!(
            Unserved::of(&parse_query(&q).expect("q")),
            Some(Unserved::FormErr)
        );
        // In the additional section: one OPT is fine, anything else is not.
        q[9] = 0;
        q[11] = 1;
        assert_eq!(
            Unserved::of(&parse_query(&q).expect("q")),
            Some(Unserved::FormErr)
        );
        let with_opt = query("a.com", 1, Some((0, false)));
        assert_eq!(Unserved::of(&parse_query(&with_opt).expect("q")), None);
        for (qtype, why, rcode) in cases {
            let raw = query("a.com", qtype, None);
            let got = Unserved::of(&parse_query(&raw).expect("q"));
            assert_eq!(got, why, "type {qtype}");
            let h = Header::read(&got.expect("unserved").reply(&raw)).expect("header");
            assert_eq!(
                (u16::from(h.rcode()), h.qdcount),
                (rcode, 1),
                "type {qtype}"
            );
        }
        // Ordinary and unassigned data types, ANY and type 0 are questions like any other.
        for qtype in [1, 16, 65, 127, 255, 256, 65535, 0] {
            let raw = query("a.com", qtype, None);
            assert_eq!(
                Unserved::of(&parse_query(&raw).expect("q")),
                None,
                "type {qtype}"
            );
        }
    }

    #[test]
    fn formerr_keeps_opt_when_query_had_one() {
        let mut raw = query("a.com", 1, Some((0, true)));
        raw[5] = 2; // claims two questions
        let r = error_reply(&raw, RCODE_FORMERR);
        let h = Header::read(&r).expect("header");
        assert_eq!((h.rcode(), h.qdcount, h.arcount), (1, 0, 0));
        // Unreadable claim of two questions: the OPT cannot be found either, so none is added.
        let raw = query("a.com", 1, Some((0, true)));
        let mut dup = raw.clone();
        wire::push_opt(&mut dup, 512, false);
        dup[11] = 2;
        let r = error_reply(&dup, RCODE_FORMERR);
        let h = Header::read(&r).expect("header");
        assert_eq!((h.rcode(), h.arcount), (1, 1));
        assert!(find_edns(&r).expect("opt").dnssec_ok);
    }
}
