//! DNS wire-format reading and patching: the few facts the query path needs, without building a full message.
//!
//! c2sink forwards the client's bytes and relays the upstream's bytes, so that nothing the client and the
//! upstream say to each other is lost in a re-encode. This module reads just enough of a message to decide
//! (question, EDNS flags) and patches just enough of an answer to reuse it (ID, question case, TTLs).

use std::fmt;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// RR type of the EDNS(0) pseudo-record.
pub const TYPE_OPT: u16 = 41;
/// RR type of SOA, needed for negative-answer TTLs.
pub const TYPE_SOA: u16 = 6;
/// RR type of ANY, which gets a minimal answer.
pub const TYPE_ANY: u16 = 255;

/// Why a message could not be read; each maps to FORMERR or a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message shorter than a DNS header")]
    ShortHeader,
    #[error("message ends inside a name or record")]
    Truncated,
    #[error("label longer than 63 octets")]
    LabelTooLong,
    #[error("name longer than 255 octets")]
    NameTooLong,
    #[error("compression pointer where none is allowed, or pointer loop")]
    BadPointer,
    #[error("unsupported label type")]
    BadLabel,
    #[error("expected exactly one question")]
    QuestionCount,
    #[error("more than one OPT record")]
    DuplicateOpt,
    #[error("record data that does not fit its type")]
    BadRdata,
    #[error("OPT record not owned by the root, or options running past its data")]
    BadOpt,
}

/// The header fields c2sink acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    /// Reads the fixed header; every later decision starts here.
    pub fn read(msg: &[u8]) -> Result<Self, WireError> {
        if msg.len() < HEADER_LEN {
            return Err(WireError::ShortHeader);
        }
        let u = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        Ok(Header {
            id: u(0),
            flags: u(2),
            qdcount: u(4),
            ancount: u(6),
            nscount: u(8),
            arcount: u(10),
        })
    }
    /// QR bit: responses arriving on a server socket are dropped.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    /// OPCODE field; only QUERY (0) is served.
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
    /// RCODE field (low four bits).
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }
    /// TC bit: a truncated UDP answer is retried over TCP.
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }
}

/// EDNS facts of a query that change what the answer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Edns {
    /// Advertised UDP payload size (never below 512).
    pub payload: u16,
    /// DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// EDNS version the client speaks.
    pub version: u8,
}

/// A parsed query: what the pipeline needs to check lists, key the cache and answer.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub header: Header,
    /// The question name in lower case, dotted, without the trailing dot ("" for the root).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question section exactly as sent (name in the client's case, type, class).
    pub question: &'a [u8],
    /// Offsets (from the start of the name) where each label begins, for pointers into the question.
    pub label_starts: LabelStarts,
    /// The query's OPT record, if any.
    pub edns: Option<Edns>,
    /// The options of that OPT record (empty without one), for the client hints routers add.
    pub edns_options: &'a [u8],
}

impl Query<'_> {
    /// Largest answer to send the client over UDP: what it offers, at most [`MAX_UDP_ANSWER`].
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.payload.clamp(512, MAX_UDP_ANSWER)),
            None => 512,
        }
    }
    /// True when `name` needed no escapes, so that its labels start at the offsets in `label_starts`
    /// (without escapes, the text is the wire name less its first length octet and the root label).
    pub fn name_is_plain(&self) -> bool {
        self.name.len() + 6 == self.question.len()
    }
    /// CD bit, part of the cache key.
    pub fn checking_disabled(&self) -> bool {
        self.header.flags & 0x0010 != 0
    }
}

/// True when the name text `name` is `zone` or below it (both lower case, no trailing dot): the one test of
/// "in this zone" that the sinkhole's SOA, special-use names and `[[forward]]` zones share.
pub fn within(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// Largest UDP answer sent, whatever buffer a client offers: DNS Flag Day 2020's size, which is not
/// fragmented on common paths (Unbound's `max-udp-size`); a bigger answer gets TC and goes over TCP.
pub const MAX_UDP_ANSWER: u16 = 1232;

/// NXDOMAIN: the name does not exist (RFC 1035 section 4.1.1).
pub const RCODE_NXDOMAIN: u8 = 3;

/// Reads a query: header, exactly one question, and its OPT record.
pub fn parse_query(msg: &[u8]) -> Result<Query<'_>, WireError> {
    let header = Header::read(msg)?;
    if header.qdcount != 1 {
        return Err(WireError::QuestionCount);
    }
    let qstart = HEADER_LEN;
    // First pass: check the labels and find where the name ends, so the text is built in one allocation.
    let mut label_starts = LabelStarts::default();
    let mut pos = qstart;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)? as usize;
        if len & 0xc0 == 0xc0 {
            return Err(WireError::BadPointer);
        }
        if len & 0xc0 != 0 {
            return Err(WireError::BadLabel);
        }
        if len == 0 {
            pos += 1;
            break;
        }
        if len > 63 {
            return Err(WireError::LabelTooLong);
        }
        if pos + 1 + len > msg.len() {
            return Err(WireError::Truncated);
        }
        // pos - qstart < 255 is guaranteed by the length check below, so at most 128 labels.
        label_starts.push((pos - qstart) as u8);
        pos += 1 + len;
        // 255 octets at most, the root label included (RFC 1035 3.1).
        if pos - qstart > 254 {
            return Err(WireError::NameTooLong);
        }
    }
    let name = name_text(&msg[qstart..pos], &label_starts);
    let fixed = msg.get(pos..pos + 4).ok_or(WireError::Truncated)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    let question = &msg[qstart..pos + 4];
    pos += 4;

    let mut edns = None;
    let mut edns_options: &[u8] = &[];
    let records = usize::from(header.ancount) + usize::from(header.nscount);
    for _ in 0..records {
        pos = skip_record(msg, pos)?.next;
    }
    for _ in 0..header.arcount {
        let owner_is_root = msg.get(pos) == Some(&0);
        let rr = skip_record(msg, pos)?;
        if rr.rtype == TYPE_OPT {
            if edns.is_some() {
                return Err(WireError::DuplicateOpt);
            }
            // RFC 6891 6.1.2: the owner is the root, and the options fill the RDATA exactly; Unbound answers
            // FORMERR to either mistake, and so does c2sink.
            let options = msg.get(rr.rdata_at..rr.next).unwrap_or_default();
            if !owner_is_root || !options_fit(options) {
                return Err(WireError::BadOpt);
            }
            let ttl = rr.ttl;
            edns = Some(Edns {
                payload: rr.class,
                dnssec_ok: ttl & 0x8000 != 0,
                version: ((ttl >> 16) & 0xff) as u8,
            });
            edns_options = msg.get(rr.rdata_at..rr.next).unwrap_or_default();
        }
        pos = rr.next;
    }
    Ok(Query {
        header,
        name,
        qtype,
        qclass,
        question,
        label_starts,
        edns,
        edns_options,
    })
}

/// Whether EDNS options (code, length, data; RFC 6891 6.1.2) fill `rdata` exactly.
fn options_fit(rdata: &[u8]) -> bool {
    let mut rest = rdata;
    while !rest.is_empty() {
        let Some(&[_, _, l0, l1]) = rest.get(..4) else {
            return false;
        };
        match rest.get(4 + usize::from(u16::from_be_bytes([l0, l1]))..) {
            Some(tail) => rest = tail,
            None => return false,
        }
    }
    true
}

/// Offsets of a name's labels, held inline: a query's name never needs an allocation for them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LabelStarts {
    len: u8,
    /// A 255-octet name has at most 128 labels.
    at: [u8; 128],
}

impl Default for LabelStarts {
    fn default() -> Self {
        LabelStarts {
            len: 0,
            at: [0; 128],
        }
    }
}

impl LabelStarts {
    fn push(&mut self, at: u8) {
        if let Some(slot) = self.at.get_mut(usize::from(self.len)) {
            *slot = at;
            self.len += 1;
        }
    }
}

impl std::ops::Deref for LabelStarts {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.at[..usize::from(self.len)]
    }
}

impl fmt::Debug for LabelStarts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The dotted lower-case text of an already checked wire name (`wire` = the name's octets, root included).
fn name_text(wire: &[u8], labels: &[u8]) -> String {
    let mut text = Vec::with_capacity(wire.len());
    for &at in labels {
        let at = usize::from(at);
        let label = &wire[at + 1..at + 1 + usize::from(wire[at])];
        if !text.is_empty() {
            text.push(b'.');
        }
        // One table lookup per byte; a 0 marks a byte that needs escaping, then the label is redone slowly.
        let from = text.len();
        let mut escape = false;
        text.extend(label.iter().map(|&b| {
            let folded = FOLD[usize::from(b)];
            escape |= folded == 0;
            folded
        }));
        if escape {
            text.truncate(from);
            for &b in label {
                push_label_byte(&mut text, b);
            }
        }
    }
    // Only ASCII is ever pushed (other octets are escaped), so this cannot fail.
    String::from_utf8(text).unwrap_or_default()
}

/// Each octet as it appears in a lower-case name, or 0 when it must be escaped (not printable, `.`, `\`).
static FOLD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = (b as u8).to_ascii_lowercase();
        b += 1;
    }
    t[b'.' as usize] = 0;
    t[b'\\' as usize] = 0;
    t
};

/// Appends one byte of a label to a dotted lower-case name, escaping what is not printable.
fn push_label_byte(name: &mut Vec<u8>, b: u8) {
    match b {
        b'A'..=b'Z' => name.push(b + 32),
        b'.' | b'\\' => {
            name.push(b'\\');
            name.push(b);
        }
        0x21..=0x7e => name.push(b),
        _ => name.extend_from_slice(&[b'\\', b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10]),
    }
}

/// Where a record sits in a message.
#[derive(Debug, Clone, Copy)]
pub struct RecordPos {
    /// Offset of the owner name, where the record starts.
    pub start: usize,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Offset of the TTL field.
    pub ttl_at: usize,
    /// Offset of the RDATA.
    pub rdata_at: usize,
    pub rdlen: usize,
    /// Offset just past the record.
    pub next: usize,
}

/// Skips a possibly compressed name, returning the offset just past it (pointers are not followed).
pub fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, WireError> {
    let start = pos;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(WireError::Truncated)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                // Not followed, but it must point back past the header: a pointer to itself or ahead is a
                // broken (or hostile) message that clients reject, so it is never cached or relayed.
                if target >= pos || target < HEADER_LEN {
                    return Err(WireError::BadPointer);
                }
                return Ok(pos + 2);
            }
            0x00 => {
                if len == 0 {
                    return Ok(pos + 1);
                }
                pos += 1 + usize::from(len);
                if pos - start > 254 {
                    return Err(WireError::NameTooLong);
                }
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// Reads one resource record's fixed fields and skips it.
pub fn skip_record(msg: &[u8], pos: usize) -> Result<RecordPos, WireError> {
    let p = skip_name(msg, pos)?;
    let f = msg.get(p..p + 10).ok_or(WireError::Truncated)?;
    let rtype = u16::from_be_bytes([f[0], f[1]]);
    let class = u16::from_be_bytes([f[2], f[3]]);
    let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
    let rdlen = usize::from(u16::from_be_bytes([f[8], f[9]]));
    let rdata_at = p + 10;
    let next = rdata_at + rdlen;
    if next > msg.len() {
        return Err(WireError::Truncated);
    }
    Ok(RecordPos {
        start: pos,
        rtype,
        class,
        ttl,
        ttl_at: p + 4,
        rdata_at,
        rdlen,
        next,
    })
}

/// The shape of an upstream answer: checked once, then reused for every cache hit.
#[derive(Debug, Clone)]
pub struct AnswerShape {
    pub header: Header,
    /// Offsets of TTL fields of every record except OPT.
    pub ttl_offsets: Vec<u32>,
    /// Smallest TTL over answer and authority records (additional excluded as resolvers do), if any.
    pub min_ttl: Option<u32>,
    /// TTL for a negative answer: min(SOA TTL, SOA MINIMUM) from the authority section.
    pub negative_ttl: Option<u32>,
    /// Number of answer records.
    pub answers: u16,
    /// Whether the answer section holds a record of the asked type (any record, for ANY): a NOERROR answer
    /// without one is NODATA (RFC 2308 section 2.2), a CNAME before it or not.
    pub has_asked_type: bool,
    /// Which of `ttl_offsets` are the authority section's: a negative answer shows them as its negative TTL.
    pub authority_ttls: std::ops::Range<usize>,
    /// Names and addresses inside the answer that lists must also be checked against; `None` for the common
    /// answer with nothing to inspect (no allocation).
    pub inspect: Option<std::sync::Arc<Inspect>>,
    /// The OPT record in the additional section, if any ([`own_opt_at`] rewrites it without a second walk).
    pub opt: Option<RecordPos>,
    /// Octets the header, question and records take: whatever follows is not part of the message.
    pub len: usize,
}

/// What an answer points at: CNAME/DNAME targets and HTTPS/SVCB targets, in answer order.
///
/// Malware hides a C2 name behind an innocent one (`innocent.example CNAME cdn.c2.example`), so the targets
/// are checked like the question; kept with cached answers so a list change applies to them at once.
/// Addresses are not collected here (most answers are plain A records and most setups have no address
/// list): [`answer_addresses`] reads them only when an address list exists.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inspect {
    /// Lower-case target names, without trailing dot.
    pub targets: Vec<String>,
}

/// The addresses in an answer's answer section (for address lists): A and AAAA records, and the `ipv4hint`
/// and `ipv6hint` of SVCB/HTTPS records, which a browser may connect to without asking for A or AAAA
/// (RFC 9460 section 7.3); empty if it does not parse.
pub fn answer_addresses(msg: &[u8]) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let Ok(header) = Header::read(msg) else {
        return out;
    };
    let mut pos = HEADER_LEN;
    for _ in 0..header.qdcount {
        match skip_name(msg, pos) {
            Ok(p) => pos = p + 4,
            Err(_) => return out,
        }
    }
    for _ in 0..header.ancount {
        let Ok(rr) = skip_record(msg, pos) else {
            return out;
        };
        let rdata = &msg[rr.rdata_at..rr.next];
        match (rr.rtype, rdata.len()) {
            (TYPE_A, 4) => out.push(std::net::IpAddr::from([
                rdata[0], rdata[1], rdata[2], rdata[3],
            ])),
            (TYPE_AAAA, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                out.push(std::net::IpAddr::from(a));
            }
            (TYPE_SVCB | TYPE_HTTPS, _) => svcb_hints(msg, &rr, &mut out),
            _ => {}
        }
        pos = rr.next;
    }
    out
}

/// SvcParamKeys whose values are addresses (RFC 9460 section 14.3.2).
const SVC_IPV4HINT: u16 = 4;
const SVC_IPV6HINT: u16 = 6;

/// Appends the `ipv4hint` and `ipv6hint` addresses of the SVCB/HTTPS record `rr` to `out`; a record that
/// does not read adds what it held up to there.
fn svcb_hints(msg: &[u8], rr: &RecordPos, out: &mut Vec<std::net::IpAddr>) {
    // SvcPriority (2 octets), TargetName, then SvcParams: key, length, value.
    let Ok(params_at) = skip_name(msg, rr.rdata_at + 2) else {
        return;
    };
    let mut params = msg.get(params_at..rr.next).unwrap_or_default();
    while let [k0, k1, l0, l1, rest @ ..] = params {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let Some(value) = rest.get(..len) else {
            return;
        };
        match u16::from_be_bytes([*k0, *k1]) {
            SVC_IPV4HINT => out.extend(
                value
                    .chunks_exact(4)
                    .map(|a| std::net::IpAddr::from([a[0], a[1], a[2], a[3]])),
            ),
            SVC_IPV6HINT => out.extend(value.chunks_exact(16).map(|a| {
                let mut b = [0u8; 16];
                b.copy_from_slice(a);
                std::net::IpAddr::from(b)
            })),
            _ => {}
        }
        params = &rest[len..];
    }
}

/// RR types whose RDATA names another name that the client will go on to use.
const TYPE_CNAME: u16 = 5;
const TYPE_DNAME: u16 = 39;
const TYPE_SVCB: u16 = 64;
const TYPE_HTTPS: u16 = 65;
/// RR type A: also the question under which a cached answer for ANY is looked up.
pub const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// Reads a possibly compressed name at `pos` as lower-case dotted text (pointers followed, loops refused).
pub fn read_name(msg: &[u8], mut pos: usize) -> Result<String, WireError> {
    // Only ASCII is pushed (other octets are escaped), so the bytes are valid UTF-8.
    let mut name: Vec<u8> = Vec::new();
    let mut jumps = 0;
    let mut wire_len = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(WireError::Truncated)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                jumps += 1;
                // Pointers must go backwards; a bounded count stops loops either way.
                if target >= pos || jumps > 64 {
                    return Err(WireError::BadPointer);
                }
                pos = target;
            }
            0x00 => {
                if len == 0 {
                    return Ok(String::from_utf8_lossy(&name).into_owned());
                }
                let l = usize::from(len);
                let label = msg.get(pos + 1..pos + 1 + l).ok_or(WireError::Truncated)?;
                wire_len += 1 + l;
                if wire_len > 254 {
                    return Err(WireError::NameTooLong);
                }
                if !name.is_empty() {
                    name.push(b'.');
                }
                for &b in label {
                    push_label_byte(&mut name, b);
                }
                pos += 1 + l;
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// Walks a whole answer: proves it is well formed and finds its TTLs.
pub fn answer_shape(msg: &[u8]) -> Result<AnswerShape, WireError> {
    let header = Header::read(msg)?;
    let mut pos = HEADER_LEN;
    let mut qtype = None;
    for _ in 0..header.qdcount {
        pos = skip_name(msg, pos)? + 4;
        if pos > msg.len() {
            return Err(WireError::Truncated);
        }
        qtype.get_or_insert(u16::from_be_bytes([msg[pos - 4], msg[pos - 3]]));
    }
    let mut has_asked_type = false;
    let mut authority_ttls = 0..0;
    let mut ttl_offsets = Vec::new();
    let mut min_ttl: Option<u32> = None;
    let mut negative_ttl = None;
    let mut opts = 0;
    let mut opt = None;
    let mut inspect: Option<Inspect> = None;
    // Where each CNAME's owner is, and which target it gave: to put a chain listed out of order in order.
    let mut cnames: Vec<(usize, usize)> = Vec::new();
    let sections = [
        (header.ancount, 0u8),
        (header.nscount, 1),
        (header.arcount, 2),
    ];
    for (count, section) in sections {
        if section == 1 {
            authority_ttls.start = ttl_offsets.len();
        }
        for _ in 0..count {
            let rr = skip_record(msg, pos)?;
            if rr.rtype == TYPE_OPT {
                opts += 1;
                if opts > 1 {
                    return Err(WireError::DuplicateOpt);
                }
                if section == 2 {
                    opt = Some(rr);
                }
            } else {
                check_rdata(msg, &rr)?;
                ttl_offsets.push(rr.ttl_at as u32);
                let ttl = ttl_value(rr.ttl);
                if section < 2 {
                    min_ttl = Some(min_ttl.map_or(ttl, |m| m.min(ttl)));
                }
                if section == 0 {
                    has_asked_type |= qtype == Some(rr.rtype) || qtype == Some(TYPE_ANY);
                    if rr.rtype == TYPE_CNAME {
                        cnames.push((rr.start, inspect.as_ref().map_or(0, |i| i.targets.len())));
                    }
                    inspect_record(msg, &rr, &mut inspect)?;
                }
                if section == 1 && rr.rtype == TYPE_SOA && rr.rdlen >= 22 {
                    // SOA MINIMUM is the last 4 octets of the RDATA.
                    let m = rr.next - 4;
                    let minimum = u32::from_be_bytes([msg[m], msg[m + 1], msg[m + 2], msg[m + 3]]);
                    negative_ttl = Some(ttl.min(minimum));
                }
            }
            pos = rr.next;
        }
        if section == 1 {
            authority_ttls.end = ttl_offsets.len();
        }
    }
    if let Some(i) = inspect.as_mut()
        && !cnames.is_empty()
        && i.targets.len() >= 2
    {
        in_resolution_order(msg, &cnames, &mut i.targets);
    }
    Ok(AnswerShape {
        header,
        ttl_offsets,
        min_ttl,
        negative_ttl,
        answers: header.ancount,
        has_asked_type,
        authority_ttls,
        inspect: inspect.map(std::sync::Arc::new),
        opt,
        len: pos,
    })
}

/// Class IN, the one whose A and AAAA RDATA are an address.
const CLASS_IN: u16 = 1;

/// Refuses a record whose RDATA cannot be what its type says: an A or AAAA (class IN) of another length than
/// an address, a CNAME or DNAME whose target name does not end where its RDATA does, an SVCB or HTTPS whose
/// TargetName runs past it. Clients reject such an answer ("malformed message"); cached, it was served to
/// every client for its TTL, and what the lists were checked against (an address, a target read past its
/// record) was not what the record held.
fn check_rdata(msg: &[u8], rr: &RecordPos) -> Result<(), WireError> {
    let fits = match (rr.rtype, rr.class) {
        (TYPE_A, CLASS_IN) => rr.rdlen == 4,
        (TYPE_AAAA, CLASS_IN) => rr.rdlen == 16,
        (TYPE_CNAME | TYPE_DNAME, _) => skip_name(msg, rr.rdata_at) == Ok(rr.next),
        (TYPE_SVCB | TYPE_HTTPS, _) => {
            rr.rdlen > 2 && skip_name(msg, rr.rdata_at + 2).is_ok_and(|end| end <= rr.next)
        }
        _ => true,
    };
    if fits {
        Ok(())
    } else {
        Err(WireError::BadRdata)
    }
}

/// Puts the CNAME targets among `targets` in the order a resolver follows them from the question, which
/// upstreams nearly always list them in but need not (RFC 1034 does not require it): the chain of a block
/// event reads from the question to the C2 name. `cnames`: each CNAME's owner offset and its target's index.
/// Targets off that chain (HTTPS, DNAME, a stray CNAME) follow in answer order.
fn in_resolution_order(msg: &[u8], cnames: &[(usize, usize)], targets: &mut Vec<String>) {
    let Ok(mut at) = read_name(msg, HEADER_LEN) else {
        return;
    };
    let owners: Vec<(Option<String>, usize)> = cnames
        .iter()
        .map(|&(owner, target)| (read_name(msg, owner).ok(), target))
        .collect();
    let mut used = vec![false; targets.len()];
    let mut ordered = Vec::with_capacity(targets.len());
    while let Some(&(_, t)) = owners
        .iter()
        .find(|(owner, t)| !used.get(*t).copied().unwrap_or(true) && owner.as_deref() == Some(&at))
    {
        used[t] = true;
        at.clone_from(&targets[t]);
        ordered.push(targets[t].clone());
    }
    for (t, name) in targets.iter().enumerate() {
        if !used[t] {
            ordered.push(name.clone());
        }
    }
    *targets = ordered;
}

/// Collects what one answer-section record points at.
fn inspect_record(
    msg: &[u8],
    rr: &RecordPos,
    inspect: &mut Option<Inspect>,
) -> Result<(), WireError> {
    match rr.rtype {
        TYPE_CNAME | TYPE_DNAME => {
            let t = read_name(msg, rr.rdata_at)?;
            inspect.get_or_insert_with(Inspect::default).targets.push(t);
        }
        TYPE_SVCB | TYPE_HTTPS if rr.rdlen > 2 => {
            // SvcPriority (2 octets), then TargetName (uncompressed; "." means the owner itself).
            let t = read_name(msg, rr.rdata_at + 2)?;
            if !t.is_empty() {
                inspect.get_or_insert_with(Inspect::default).targets.push(t);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Sets the message ID.
pub fn set_id(msg: &mut [u8], id: u16) {
    if msg.len() >= 2 {
        msg[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// A TTL as RFC 2181 section 8 reads it: one with the top bit set (above 2^31 - 1) counts as 0.
pub fn ttl_value(raw: u32) -> u32 {
    if raw > i32::MAX as u32 { 0 } else { raw }
}

/// Rewrites each TTL at `offsets` (from [`AnswerShape::ttl_offsets`]) as `f` of its RFC 2181 value.
pub fn set_ttls(msg: &mut [u8], offsets: &[u32], f: impl Fn(u32) -> u32) {
    for &at in offsets {
        let at = at as usize;
        if let Some(field) = msg.get_mut(at..at + 4) {
            let raw = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&f(ttl_value(raw)).to_be_bytes());
        }
    }
}

/// Makes an upstream's answer c2sink's own: RA set (c2sink recurses for its clients) and AA cleared (it holds
/// no zone), as any recursive resolver's answer reads (RFC 1035 section 4.1.1); an authoritative upstream
/// (a `[[forward]]` zone's DHCP server) would otherwise make clients warn that recursion is not available.
pub fn as_recursive(msg: &mut [u8]) {
    if msg.len() >= 4 {
        msg[2] &= !0x04;
        msg[3] |= 0x80;
    }
}

/// Where the OPT record of a message is: `Some(None)` when it has none, `None` when the message does not read.
pub fn opt_record(msg: &[u8]) -> Option<Option<RecordPos>> {
    let h = Header::read(msg).ok()?;
    let mut pos = HEADER_LEN;
    for _ in 0..h.qdcount {
        pos = skip_name(msg, pos).ok()? + 4;
    }
    for _ in 0..usize::from(h.ancount) + usize::from(h.nscount) {
        pos = skip_record(msg, pos).ok()?.next;
    }
    for _ in 0..h.arcount {
        let rr = skip_record(msg, pos).ok()?;
        if rr.rtype == TYPE_OPT {
            return Some(Some(rr));
        }
        pos = rr.next;
    }
    Some(None)
}

/// EDNS option code of Extended DNS Errors (RFC 8914): the one option an upstream's answer keeps.
pub const OPT_EDE: u16 = 15;

/// Makes the OPT record of `msg` c2sink's own for the next hop, as RFC 6891 section 6.1.1 has it (an OPT is
/// hop by hop: never forwarded or cached as it came): UDP payload `payload`, every flag but DO cleared, and
/// only the options `keep` accepts. A client's cookie, padding or NSID request is not the upstream's
/// business, nor the upstream's cookie or NSID the next client's. Returns whether the message's length
/// changed (options went; an OPT followed by other records keeps its length, below); a message without
/// OPT, or one that does not read, is left as it is.
pub fn own_opt(msg: &mut Vec<u8>, payload: u16, keep: impl Fn(u16) -> bool) -> bool {
    match opt_record(msg) {
        Some(Some(rr)) => own_opt_at(msg, rr, payload, keep),
        _ => false,
    }
}

/// [`own_opt`] for an OPT record already found (by [`answer_shape`]) at `rr`.
pub fn own_opt_at(
    msg: &mut Vec<u8>,
    rr: RecordPos,
    payload: u16,
    keep: impl Fn(u16) -> bool,
) -> bool {
    if rr.next > msg.len() || rr.rdata_at < 10 {
        return false;
    }
    // CLASS is the payload; the TTL holds extended RCODE, version and the flags (DO is the top bit).
    let class_at = rr.ttl_at - 2;
    msg[class_at..class_at + 2].copy_from_slice(&payload.to_be_bytes());
    msg[rr.ttl_at + 2] &= 0x80;
    msg[rr.ttl_at + 3] = 0;
    let Some(opts) = msg.get(rr.rdata_at..rr.next) else {
        return false;
    };
    let mut kept = Vec::new();
    let mut rest = opts;
    while rest.len() >= 4 {
        let code = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let Some(whole) = rest.get(..4 + len) else {
            break;
        };
        if keep(code) {
            kept.extend_from_slice(whole);
        }
        rest = &rest[4 + len..];
    }
    if kept.len() == opts.len() {
        return false;
    }
    // A malformed tail is dropped with the options: it is not passed on either.
    if rr.next != msg.len() {
        // A record after the OPT (rare: TSIG, or a careless upstream) may point into itself or past it;
        // cutting bytes would move its target. What must go is overwritten by one Padding option of zeros
        // (RFC 7830 allows it in answers) of the same length, so no byte after it moves.
        // A malformed tail shorter than an option header cannot be covered: left as it came.
        let gone = opts.len() - kept.len();
        let Some(fill) = gone.checked_sub(4).and_then(|n| u16::try_from(n).ok()) else {
            return false;
        };
        kept.extend_from_slice(&OPT_PADDING.to_be_bytes());
        kept.extend_from_slice(&fill.to_be_bytes());
        kept.resize(opts.len(), 0);
        msg[rr.rdata_at..rr.next].copy_from_slice(&kept);
        return false;
    }
    let Ok(rdlen) = u16::try_from(kept.len()) else {
        return false;
    };
    msg[rr.rdata_at - 2..rr.rdata_at].copy_from_slice(&rdlen.to_be_bytes());
    msg.splice(rr.rdata_at..rr.next, kept);
    true
}

/// EDNS Padding (RFC 7830).
const OPT_PADDING: u16 = 12;

/// Pads a query that has an OPT record to a multiple of `block` octets with the Padding option (RFC 7830),
/// so that the length of an encrypted query does not give its name away (RFC 8467 4.1 recommends 128).
/// A query without OPT, one already a whole number of blocks, or one that does not read, is left as it is.
pub fn pad(msg: &mut Vec<u8>, block: usize) {
    if msg.len().is_multiple_of(block) {
        return;
    }
    // Only an OPT that ends the message: bytes put inside it would move the names records after it point at.
    let Some(Some(rr)) = opt_record(msg) else {
        return;
    };
    let fill = (block - (msg.len() + 4) % block) % block;
    if rr.next != msg.len() || msg.len() + 4 + fill > usize::from(u16::MAX) {
        return;
    }
    let Ok(rdlen) = u16::try_from(rr.rdlen + 4 + fill) else {
        return;
    };
    let mut option = Vec::with_capacity(4 + fill);
    option.extend_from_slice(&OPT_PADDING.to_be_bytes());
    option.extend_from_slice(&(fill as u16).to_be_bytes());
    option.resize(4 + fill, 0);
    msg[rr.rdata_at - 2..rr.rdata_at].copy_from_slice(&rdlen.to_be_bytes());
    msg.splice(rr.next..rr.next, option);
}

/// Whether the query `raw` carries an EDNS Padding option: its answer over TLS or HTTPS must then be padded
/// too (RFC 7830 section 4), or the answer's length would give away the name the query hid.
pub fn padding_asked(raw: &[u8]) -> bool {
    let Some(Some(rr)) = opt_record(raw) else {
        return false;
    };
    let mut options = raw.get(rr.rdata_at..rr.next).unwrap_or_default();
    while let [c0, c1, l0, l1, rest @ ..] = options {
        if u16::from_be_bytes([*c0, *c1]) == OPT_PADDING {
            return true;
        }
        options = rest
            .get(usize::from(u16::from_be_bytes([*l0, *l1]))..)
            .unwrap_or_default();
    }
    false
}

/// Block length for answers to padded queries over TLS and HTTPS (RFC 8467 section 4.1).
pub const ANSWER_PAD_BLOCK: usize = 468;

/// Makes an answer (from the cache, or fetched for another client asking the same) the answer to this
/// client's query `raw`: its ID, its RD and CD bits whatever the upstream or the client that filled the
/// cache sent (RD is copied from the query, RFC 1035 section 4.1.1, and so is CD, RFC 4035 section 3.2.2,
/// which some authoritative upstreams clear), and its question as it wrote it (same name up to letter
/// case, so the same length).
pub fn answer_as_asked(msg: &mut [u8], query: &Query<'_>, raw: &[u8]) {
    set_id(msg, query.header.id);
    if msg.len() >= 4 {
        let rd_cd = query.header.flags & 0x0110;
        let flags = (u16::from_be_bytes([msg[2], msg[3]]) & !0x0110) | rd_cd;
        msg[2..4].copy_from_slice(&flags.to_be_bytes());
    }
    let end = HEADER_LEN + query.question.len();
    if msg.len() >= end && raw.len() >= end {
        msg[HEADER_LEN..end].copy_from_slice(&raw[HEADER_LEN..end]);
    }
}

/// `msg` without what a resolver may leave out to fit `limit` octets (RFC 2181 section 9): first the
/// additional section (all but its OPT record), then the authority section too, unless `keep_authority`
/// (a DNSSEC client needs its proofs, RFC 4035 section 3.1) or the answer is negative (its SOA is what lets
/// the client cache it, RFC 2308 section 5). `None` when even that does not fit, or `msg` does not read:
/// then only TC will do.
pub fn without_extras(msg: &[u8], limit: usize, keep_authority: bool) -> Option<Vec<u8>> {
    let header = Header::read(msg).ok()?;
    let keep_authority = keep_authority || header.ancount == 0 || header.rcode() == RCODE_NXDOMAIN;
    let mut pos = HEADER_LEN;
    for _ in 0..header.qdcount {
        pos = skip_name(msg, pos).ok()? + 4;
    }
    for _ in 0..header.ancount {
        pos = skip_record(msg, pos).ok()?.next;
    }
    let answer_end = pos;
    for _ in 0..header.nscount {
        pos = skip_record(msg, pos).ok()?.next;
    }
    let authority_end = pos;
    let mut opt: &[u8] = &[];
    for _ in 0..header.arcount {
        let rr = skip_record(msg, pos).ok()?;
        if rr.rtype == TYPE_OPT {
            opt = msg.get(pos..rr.next)?;
        }
        pos = rr.next;
    }
    // Records only point back at earlier names, so cutting the later sections leaves every pointer whole.
    let tries = [(authority_end, header.nscount), (answer_end, 0)];
    let (end, nscount) = tries
        .into_iter()
        .take(if keep_authority { 1 } else { 2 })
        .find(|&(end, _)| end + opt.len() <= limit)?;
    let mut out = Vec::with_capacity(end + opt.len());
    out.extend_from_slice(msg.get(..end)?);
    out.extend_from_slice(opt);
    out[8..10].copy_from_slice(&nscount.to_be_bytes());
    out[10..12].copy_from_slice(&u16::from(!opt.is_empty()).to_be_bytes());
    Some(out)
}

/// A minimal reply carrying only the header and the question, with the given RCODE and TC bit.
///
/// Used for errors (FORMERR, SERVFAIL, REFUSED, NOTIMP) and for "retry over TCP".
pub fn short_reply(query: &[u8], question_len: usize, rcode: u8, truncated: bool) -> Vec<u8> {
    let qlen = if query.len() >= HEADER_LEN + question_len {
        question_len
    } else {
        0
    };
    let mut out = Vec::with_capacity(HEADER_LEN + qlen);
    let (id, qflags) = if query.len() >= 4 {
        (
            u16::from_be_bytes([query[0], query[1]]),
            u16::from_be_bytes([query[2], query[3]]),
        )
    } else {
        (0, 0)
    };
    // QR, opcode and RD from the query, RA set.
    let mut flags = 0x8000 | (qflags & 0x7900) | 0x0080 | u16::from(rcode & 0x0f);
    if truncated {
        flags |= 0x0200;
    }
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, u8::from(qlen > 0), 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&query[HEADER_LEN..HEADER_LEN + qlen]);
    out
}

/// The header and echoed question of an answer c2sink makes itself (sinkhole, health, CH and ANY answers):
/// the query's ID, opcode, RD and CD; RA set, AA when `authoritative`; `rcode`; one question and no records
/// yet (each added one is counted with [`bump_count`]). `room` is the capacity wanted past the question.
pub fn local_answer(query: &Query<'_>, authoritative: bool, rcode: u8, room: usize) -> Vec<u8> {
    let q = query.header.flags;
    let aa = if authoritative { 0x0400 } else { 0 };
    let flags: u16 = 0x8000 | (q & 0x7900) | aa | 0x0080 | (q & 0x0010) | u16::from(rcode & 0x0f);
    let mut out = Vec::with_capacity(HEADER_LEN + query.question.len() + room);
    let ([i0, i1], [f0, f1]) = (query.header.id.to_be_bytes(), flags.to_be_bytes());
    out.extend_from_slice(&[i0, i1, f0, f1, 0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(query.question);
    out
}

/// Appends an OPT record advertising our payload size, echoing the DO bit as RFC 3225 asks.
pub fn push_opt(out: &mut Vec<u8>, payload: u16, dnssec_ok: bool) {
    let [t0, t1] = TYPE_OPT.to_be_bytes();
    let [p0, p1] = payload.to_be_bytes();
    // Root owner, type, payload size, extended RCODE and version 0, flags (DO), no options: one copy.
    out.extend_from_slice(&[
        0,
        t0,
        t1,
        p0,
        p1,
        0,
        0,
        if dnssec_ok { 0x80 } else { 0 },
        0,
        0,
        0,
    ]);
}

/// Removes the OPT record at `rr` when it is the message's last record (as OPT nearly always is; one further
/// in is left, as removing it could break a later record's name pointer); returns whether it did.
pub fn remove_last_opt(msg: &mut Vec<u8>, rr: RecordPos) -> bool {
    if rr.next != msg.len() || rr.start < HEADER_LEN {
        return false;
    }
    msg.truncate(rr.start);
    let ar = u16::from_be_bytes([msg[10], msg[11]]).saturating_sub(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
    true
}

/// Sets the DO bit of the OPT record at `rr` (RFC 3225: a response's DO is the query's).
pub fn set_dnssec_ok(msg: &mut [u8], rr: RecordPos, dnssec_ok: bool) {
    if let Some(flags) = msg.get_mut(rr.ttl_at + 2) {
        *flags = (*flags & 0x7f) | if dnssec_ok { 0x80 } else { 0 };
    }
}

/// Increments a section count (0 question .. 3 additional) of a message being built.
pub fn bump_count(out: &mut [u8], index: usize) {
    let at = 4 + index * 2;
    let v = u16::from_be_bytes([out[at], out[at + 1]]).saturating_add(1);
    out[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Renders an RR type the way dig does, for events and logs.
pub fn type_name(t: u16) -> std::borrow::Cow<'static, str> {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        44 => "SSHFP",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        52 => "TLSA",
        59 => "CDS",
        60 => "CDNSKEY",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return std::borrow::Cow::Owned(format!("TYPE{t}")),
    };
    std::borrow::Cow::Borrowed(s)
}

/// A one-question message (class IN) for unit tests of the modules that read or answer queries.
#[cfg(test)]
pub(crate) fn test_message(id: u16, flags: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_whose_data_does_not_fit_their_type_make_the_answer_malformed() {
        // An answer to a.b A: one record at the question's name (`c0 0c`) of `rtype` with `rdata`.
        let answer = |rtype: u16, class: u16, rdata: &[u8]| {
            let mut m = test_message(1, 0x8180, "a.b", 1);
            m[7] = 1;
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&class.to_be_bytes());
            m.extend_from_slice(&[0, 0, 0, 60]);
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
            m
        };
        let shape = |rtype, class, rdata: &[u8]| answer_shape(&answer(rtype, class, rdata)).err();
        assert_eq!(shape(TYPE_A, CLASS_IN, &[192, 0, 2, 1]), None);
        assert_eq!(
            shape(TYPE_A, CLASS_IN, &[192, 0, 2, 1, 9]),
            Some(WireError::BadRdata)
        );
        assert_eq!(
            shape(TYPE_A, CLASS_IN, &[192, 0, 2]),
            Some(WireError::BadRdata)
        );
        assert_eq!(shape(TYPE_AAAA, CLASS_IN, &[0; 16]), None);
        assert_eq!(
            shape(TYPE_AAAA, CLASS_IN, &[0; 4]),
            Some(WireError::BadRdata)
        );
        // CH A holds a name and an address: any length.
        assert_eq!(shape(TYPE_A, 3, &[0, 0, 1]), None);
        assert_eq!(shape(TYPE_CNAME, CLASS_IN, b"\x01c\xc0\x0c"), None);
        // A target name running past its RDATA (the CNAME says 2 octets, the name takes 5).
        let mut over = answer(TYPE_CNAME, CLASS_IN, b"\x01c");
        over.extend_from_slice(&[0xc0, 12]);
        assert_eq!(answer_shape(&over).err(), Some(WireError::BadRdata));
        // Octets in the RDATA after the target.
        assert_eq!(
            shape(TYPE_CNAME, CLASS_IN, b"\x01c\x00\x07"),
            Some(WireError::BadRdata)
        );
        assert_eq!(shape(TYPE_HTTPS, CLASS_IN, &[0, 1, 0]), None);
        assert_eq!(shape(TYPE_HTTPS, CLASS_IN, &[0]), Some(WireError::BadRdata));
        assert_eq!(
            shape(TYPE_HTTPS, CLASS_IN, &[0, 1, 3, b'x']),
            Some(WireError::BadRdata)
        );
    }

    #[test]
    fn padded_queries_are_whole_blocks_and_still_read() {
        use crate::clients::edns::tests_support::query_with_options;
        for opts in [vec![], vec![(8u16, vec![0, 1, 24, 0, 10, 1, 2])]] {
            let mut q = query_with_options(&opts);
            pad(&mut q, 128);
            assert_eq!(q.len(), 128);
            let rr = opt_record(&q).flatten().expect("opt");
            assert_eq!(rr.next, q.len(), "the padding is inside the OPT record");
            assert!(parse_query(&q).is_ok());
        }
        let mut long = test_message(1, 0x0100, &"a".repeat(60), 1);
        push_opt(&mut long, 1232, false);
        bump_count(&mut long, 3);
        for _ in 0..2 {
            pad(&mut long, 128);
            assert_eq!(long.len(), 128, "padding a padded query changes nothing");
        }
        // No OPT: nothing to pad with.
        let mut plain = test_message(1, 0x0100, "a.b", 1);
        let before = plain.clone();
        pad(&mut plain, 128);
        assert_eq!(plain, before);
        // An OPT with a record after it: growing it would move what that record's names point at.
        let mut inner = test_message(1, 0x0100, "a.b", 1);
        push_opt(&mut inner, 1232, false);
        inner.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        inner[10..12].copy_from_slice(&2u16.to_be_bytes());
        let before = inner.clone();
        pad(&mut inner, 128);
        assert_eq!(inner, before);
    }

    #[test]
    fn a_padding_option_in_a_query_is_found_among_others() {
        use crate::clients::edns::tests_support::query_with_options;
        let cookie = (10u16, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(!padding_asked(&query_with_options(&[])));
        assert!(!padding_asked(&query_with_options(std::slice::from_ref(
            &cookie
        ))));
        assert!(padding_asked(&query_with_options(&[
            cookie,
            (12, vec![0; 20])
        ])));
        assert!(!padding_asked(&test_message(1, 0x0100, "a.b", 1)), "no OPT");
    }

    #[test]
    fn own_opt_sets_payload_keeps_do_and_only_the_options_asked_for() {
        use crate::clients::edns::tests_support::query_with_options;
        let cookie = (10, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let ecs = (8, vec![0, 1, 32, 0, 10, 1, 2, 3]);
        let mut q = query_with_options(&[
            (65001, vec![0xaa, 0, 0, 0, 0, 1]),
            cookie.clone(),
            ecs.clone(),
        ]);
        // Flags: DO and an undefined bit; payload 4096.
        let ttl_at = |m: &[u8]| opt_record(m).flatten().expect("opt").ttl_at;
        let at = ttl_at(&q);
        q[at + 2] = 0x80 | 0x10;
        assert!(own_opt(&mut q, 1232, |c| c == 8));
        let mut want = query_with_options(&[ecs]);
        let w = ttl_at(&want);
        want[w + 2] = 0x80;
        want[w - 2..w].copy_from_slice(&1232u16.to_be_bytes());
        assert_eq!(q, want);
        assert!(
            parse_query(&q).is_ok_and(|p| p.edns.is_some_and(|e| e.dnssec_ok && e.payload == 1232))
        );
        // Nothing to take out: the length stays, the payload is still ours.
        let mut q = query_with_options(std::slice::from_ref(&cookie));
        assert!(!own_opt(&mut q, 1232, |_| true));
        assert_eq!(
            parse_query(&q).expect("q").edns.map(|e| e.payload),
            Some(1232)
        );
        // Every option out: an empty OPT is left.
        let mut q = query_with_options(&[cookie]);
        assert!(own_opt(&mut q, 4096, |_| false));
        assert_eq!(q, query_with_options(&[]));
        // No OPT, or a message cut anywhere: never a panic, nothing changed.
        let mut plain = test_message(1, 0x0100, "a.b", 1);
        let before = plain.clone();
        assert!(!own_opt(&mut plain, 1232, |_| false));
        assert_eq!(plain, before);
        let full = query_with_options(&[(8, vec![0, 1, 24, 0, 10, 1, 2])]);
        for cut in 0..full.len() {
            let mut m = full[..cut].to_vec();
            let _ = own_opt(&mut m, 1232, |_| false);
        }
    }

    #[test]
    fn a_cname_chain_listed_out_of_order_is_inspected_in_resolution_order() {
        let wire_name = |n: &str| {
            let mut out = Vec::new();
            for l in n.split('.') {
                out.push(l.len() as u8);
                out.extend_from_slice(l.as_bytes());
            }
            out.push(0);
            out
        };
        let record = |m: &mut Vec<u8>, owner: &str, rtype: u16, rdata: &[u8]| {
            m.extend_from_slice(&wire_name(owner));
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        };
        let mut m = test_message(1, 0x8180, "Q.example", 1);
        m[6..8].copy_from_slice(&4u16.to_be_bytes());
        record(&mut m, "z.example", TYPE_CNAME, &wire_name("cdn.evil.test"));
        record(
            &mut m,
            "www.other.test",
            TYPE_CNAME,
            &wire_name("stray.test"),
        );
        record(&mut m, "q.example", TYPE_CNAME, &wire_name("z.example"));
        record(&mut m, "cdn.evil.test", TYPE_A, &[192, 0, 2, 1]);
        let shape = answer_shape(&m).expect("shape");
        let targets = &shape.inspect.as_deref().expect("targets").targets;
        assert_eq!(targets, &["z.example", "cdn.evil.test", "stray.test"]);
        // A DNAME and the CNAME synthesized from it: the name followed first, then the DNAME's target.
        let mut m = test_message(1, 0x8180, "q.a.example", 1);
        m[6..8].copy_from_slice(&2u16.to_be_bytes());
        record(&mut m, "a.example", TYPE_DNAME, &wire_name("b.test"));
        record(&mut m, "q.a.example", TYPE_CNAME, &wire_name("q.b.test"));
        let shape = answer_shape(&m).expect("shape");
        let targets = &shape.inspect.as_deref().expect("targets").targets;
        assert_eq!(targets, &["q.b.test", "b.test"]);
    }

    #[test]
    fn own_opt_before_other_records_moves_no_byte_after_it() {
        use crate::clients::edns::tests_support::query_with_options;
        use hickory_proto::op::Message;
        let mut m = query_with_options(&[(10, vec![1, 2, 3, 4, 5, 6, 7, 8]), (15, vec![0, 3])]);
        // Two A records after the OPT, the second named by a pointer to the first's name.
        let first = m.len();
        m.extend_from_slice(&[
            1, b'x', 1, b'a', 0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1,
        ]);
        m.extend_from_slice(&[
            0xc0,
            first as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            60,
            0,
            4,
            192,
            0,
            2,
            2,
        ]);
        m[11] = 3;
        let before = m.clone();
        let rr = opt_record(&m).flatten().expect("opt");
        assert!(!own_opt(&mut m, 1232, |c| c == OPT_EDE), "the length stays");
        assert_eq!(m.len(), before.len());
        assert_eq!(
            m[rr.next..],
            before[rr.next..],
            "nothing after the OPT moved"
        );
        // The extended error stays; the cookie's 12 bytes became one Padding option of zeros.
        assert_eq!(
            m[rr.rdata_at..rr.next],
            [0, 15, 0, 2, 0, 3, 0, 12, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let parsed = Message::from_vec(&m).expect("still a message");
        let names: Vec<String> = parsed
            .additionals
            .iter()
            .map(|r| r.name.to_ascii())
            .collect();
        assert_eq!(names, ["x.a.", "x.a."]);
        // A malformed tail shorter than an option header cannot be covered: the options stay as they came.
        let mut m = query_with_options(&[(15, vec![0, 3])]);
        let rr = opt_record(&m).flatten().expect("opt");
        let rdlen_at = rr.rdata_at - 2;
        m.extend_from_slice(&[0, 9]);
        m[rdlen_at + 1] += 2;
        m.extend_from_slice(&[1, b'x', 0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        m[11] = 2;
        let before = m.clone();
        assert!(!own_opt(&mut m, 1232, |c| c == OPT_EDE));
        assert_eq!(m[rr.rdata_at..], before[rr.rdata_at..]);
    }

    fn query_bytes(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            push_opt(&mut m, 4096, true);
        }
        m
    }

    /// An HTTPS answer's hints are read whatever params come first, and a record cut anywhere reads
    /// without a panic, giving at most the addresses it held whole.
    #[test]
    fn svcb_hints_are_read_and_a_cut_record_is_safe() {
        let mut m = query_bytes("h.example", TYPE_HTTPS, false);
        m[2] |= 0x80;
        m[7] = 1;
        let mut rdata = vec![0, 1, 0]; // priority 1, target "."
        rdata.extend_from_slice(&[0, 1, 0, 3, 2, b'h', b'2']); // alpn h2
        rdata.extend_from_slice(&[0, 4, 0, 8, 192, 0, 2, 1, 198, 51, 100, 7]);
        rdata.extend_from_slice(&[0, 6, 0, 16]);
        rdata.extend_from_slice(
            &"2001:db8:bad::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        m.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 44]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
        let want: Vec<std::net::IpAddr> = ["192.0.2.1", "198.51.100.7", "2001:db8:bad::7"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(answer_addresses(&m), want);
        for cut in 0..m.len() {
            let got = answer_addresses(&m[..cut]);
            assert!(got.len() <= want.len(), "{cut}");
        }
        // A hint value that is not a whole number of addresses yields the whole ones only.
        let at = m.len() - 16 - 4 - 12 + 2;
        m[at + 1] = 7;
        assert_eq!(answer_addresses(&m), want[..1]);
    }

    #[test]
    fn query_name_is_lowercased_and_question_kept_as_sent() {
        let m = query_bytes("CDN.MsStorageAzure.com", 16, true);
        let q = parse_query(&m).expect("valid query");
        assert_eq!(q.name, "cdn.msstorageazure.com");
        assert_eq!(q.qtype, 16);
        assert_eq!(&q.question[1..4], b"CDN");
        assert_eq!(&q.label_starts[..], &[0, 4, 19]);
        let e = q.edns.expect("edns");
        assert!(e.dnssec_ok);
        assert_eq!(e.payload, 4096);
    }

    #[test]
    fn malformed_queries_are_rejected() {
        assert_eq!(parse_query(&[0; 5]).unwrap_err(), WireError::ShortHeader);
        let mut m = query_bytes("a.com", 1, false);
        m[5] = 2;
        assert_eq!(parse_query(&m).unwrap_err(), WireError::QuestionCount);
        let mut m = query_bytes("a.com", 1, false);
        m.truncate(m.len() - 2);
        assert_eq!(parse_query(&m).unwrap_err(), WireError::Truncated);
        let mut m = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&m).unwrap_err(), WireError::BadPointer);
        let mut m = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.push(64);
        m.extend_from_slice(&[b'a'; 64]);
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        // A length octet of 64 has the 01 label-type bits: an unsupported label type.
        assert_eq!(parse_query(&m).unwrap_err(), WireError::BadLabel);
        let mut m = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&m).unwrap_err(), WireError::NameTooLong);
        // 255 octets with the root label is the most a name may have; 256 is one too many.
        for (last, ok) in [(61u8, true), (62, false)] {
            let mut m = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for len in [63, 63, 63, last] {
                m.push(len);
                m.extend(std::iter::repeat_n(b'a', usize::from(len)));
            }
            m.extend_from_slice(&[0, 0, 1, 0, 1]);
            let r = parse_query(&m);
            assert_eq!(r.is_ok(), ok, "last label {last}: {:?}", r.err());
            assert_eq!(skip_name(&m, 12).is_ok(), ok);
            assert_eq!(read_name(&m, 12).is_ok(), ok);
        }
    }

    #[test]
    fn a_skipped_name_may_only_point_back_past_the_header() {
        // "a.com" at 12, then a name "x" + pointer to 12: fine.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[1, b'a', 3, b'c', b'o', b'm', 0]);
        m.extend_from_slice(&[1, b'x', 0xc0, 12]);
        assert_eq!(skip_name(&m, 19), Ok(23));
        // To itself, ahead, into the header.
        for target in [21u8, 22, 30, 4] {
            let mut bad = m.clone();
            bad[22] = target;
            bad.extend_from_slice(&[0; 10]);
            assert_eq!(skip_name(&bad, 19), Err(WireError::BadPointer), "{target}");
        }
    }

    #[test]
    fn compressed_names_are_read_and_pointer_loops_refused() {
        // header, then "a.com" at 12, then a name "x" + pointer to 12.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[1, b'A', 3, b'c', b'o', b'm', 0]);
        m.extend_from_slice(&[1, b'x', 0xc0, 12]);
        assert_eq!(read_name(&m, 19).as_deref(), Ok("x.a.com"));
        // A pointer to itself.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[0xc0, 12]);
        assert_eq!(read_name(&m, 12), Err(WireError::BadPointer));
        // Two pointers pointing at each other.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[0xc0, 14, 0xc0, 12]);
        assert!(read_name(&m, 14).is_err());
    }

    #[test]
    fn odd_bytes_in_labels_are_escaped() {
        let mut m = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[3, b'a', b'.', 0x01, 0, 0, 1, 0, 1]);
        let q = parse_query(&m).expect("valid");
        assert_eq!(q.name, "a\\.\\001");
    }

    #[test]
    fn every_octet_reads_the_same_on_the_fast_and_the_escaping_path() {
        for b in 0..=255u8 {
            let mut m = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&[3, b'A', b, b'z', 2, b'N', b'L', 0, 0, 1, 0, 1]);
            let q = parse_query(&m).expect("valid");
            let mut want = Vec::new();
            for c in [b'A', b, b'z'] {
                push_label_byte(&mut want, c);
            }
            want.extend_from_slice(b".nl");
            assert_eq!(q.name.as_bytes(), &want[..], "octet {b}");
        }
    }

    #[test]
    fn short_reply_echoes_question_and_sets_rcode() {
        let m = query_bytes("a.com", 1, false);
        let q = parse_query(&m).expect("valid");
        let r = short_reply(&m, q.question.len(), 2, false);
        let h = Header::read(&r).expect("header");
        assert!(h.is_response());
        assert_eq!(h.rcode(), 2);
        assert_eq!(h.id, 0x1234);
        assert_eq!(&r[12..], q.question);
    }

    #[test]
    fn an_answer_ends_after_its_last_record_and_its_do_bit_can_be_set() {
        let mut m = test_message(7, 0x8180, "a.example", 1);
        push_opt(&mut m, 1232, false);
        bump_count(&mut m, 3);
        let whole = m.len();
        m.extend_from_slice(&[0xde, 0xad]);
        let shape = answer_shape(&m).expect("well formed");
        assert_eq!(shape.len, whole, "trailing octets are not the answer's");
        let opt = shape.opt.expect("OPT");
        set_dnssec_ok(&mut m, opt, true);
        assert_eq!(m[opt.ttl_at + 2], 0x80);
        set_dnssec_ok(&mut m, opt, false);
        assert_eq!(m[opt.ttl_at + 2], 0);
    }

    #[test]
    fn without_extras_drops_additional_then_authority_and_keeps_the_opt() {
        // An answer: one A record, then `ns` authority and `ar` additional A records, then an OPT.
        let build = |ns: u16, ar: u16| {
            let mut m = test_message(7, 0x8180, "a.example", 1);
            let rr = [0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1];
            for _ in 0..1 + ns + ar {
                m.extend_from_slice(&rr);
            }
            push_opt(&mut m, 1232, true);
            m[6..8].copy_from_slice(&1u16.to_be_bytes());
            m[8..10].copy_from_slice(&ns.to_be_bytes());
            m[10..12].copy_from_slice(&(ar + 1).to_be_bytes());
            m
        };
        let counts = |m: &[u8]| {
            let h = Header::read(m).expect("header");
            (h.ancount, h.nscount, h.arcount)
        };
        let m = build(2, 30);
        let head = m.len() - 11 - 33 * 16;
        // Room for the authority: only the additional A records go, the OPT stays (and the message reads).
        let fit = without_extras(&m, head + 3 * 16 + 11, false).expect("fits");
        assert_eq!((counts(&fit), fit.len()), ((1, 2, 1), head + 3 * 16 + 11));
        assert!(answer_shape(&fit).expect("well formed").opt.is_some());
        // Room for the answer alone: the authority goes too, unless it must stay (DNSSEC).
        let fit = without_extras(&m, head + 16 + 11, false).expect("fits");
        assert_eq!(counts(&fit), (1, 0, 1));
        assert!(without_extras(&m, head + 16 + 11, true).is_none());
        // Not even the answer: TC is the only way.
        assert!(without_extras(&m, head + 11, false).is_none());
        // A negative answer keeps its SOA (authority), the client's only way to cache it.
        let mut nx = m.clone();
        nx[3] = (nx[3] & 0xf0) | RCODE_NXDOMAIN;
        assert!(without_extras(&nx, head + 16 + 11, false).is_none());
        assert_eq!(
            counts(&without_extras(&nx, head + 3 * 16 + 11, false).expect("fits")),
            (1, 2, 1)
        );
    }

    #[test]
    fn an_opt_record_is_removed_only_when_it_is_the_last_record() {
        let mut m = test_message(7, 0x8180, "a.example", 1);
        push_opt(&mut m, 1232, false);
        bump_count(&mut m, 3);
        let plain = test_message(7, 0x8180, "a.example", 1);
        let opt = answer_shape(&m).expect("shape").opt.expect("OPT");
        assert!(remove_last_opt(&mut m, opt));
        assert_eq!(m, plain);
        // An OPT with a record after it stays.
        let mut m = test_message(7, 0x8180, "a.example", 1);
        push_opt(&mut m, 1232, false);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        m[10..12].copy_from_slice(&2u16.to_be_bytes());
        let before = m.clone();
        let opt = answer_shape(&m).expect("shape").opt.expect("OPT");
        assert!(!remove_last_opt(&mut m, opt));
        assert_eq!(m, before);
    }
}
