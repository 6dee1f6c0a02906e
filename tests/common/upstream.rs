//! The loopback upstream DNS server every integration test talks to: UDP and TCP on one port, every question
//! recorded, answers from a programmable zone, and faults (silence, garbage, truncation, spoofing, delays,
//! a closed port) switched on at run time.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, MX, NS, SOA, SVCB, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::TYPE_A;
use super::raw::{fixed_a, query};

/// What the test upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Question name, lower case, no trailing dot.
    pub name: String,
    pub qtype: RecordType,
    pub tcp: bool,
    pub dnssec_ok: bool,
    pub options: Vec<u16>,
    /// The query's RD bit.
    pub rd: bool,
    /// Whether the query had an OPT record.
    pub edns: bool,
    /// The query's header flags (octets 2 and 3).
    pub flags: u16,
    /// The query's ID and where it came from.
    pub id: u16,
    pub from: Option<SocketAddr>,
    /// A query c2sink asked again within one try: a UDP query sent again (the same ID from the same address
    /// as an earlier one), so a lost datagram does not cost the whole timeout; or the same query over TCP
    /// without a truncated answer having sent it there (the fallback after unanswered datagrams).
    pub resent: bool,
    /// A UDP query this upstream answered with TC set (c2sink then asks over TCP, which is no resend).
    pub truncated: bool,
}

/// Which answers the upstream gives (before any [`Mode`] fault is applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The test zone:
    /// - `*.refused.test` REFUSED, `*.servfail.test` SERVFAIL, `*.nxdomain.test` NXDOMAIN + SOA,
    ///   `*.nodata.test` NODATA + SOA, `*.silent.test` never answered, `*.slow.test` answered after 1.5 s
    ///   (every SOA here has TTL 300 and MINIMUM 120 unless said otherwise),
    /// - `*.nodata-cname.test` NODATA behind a CNAME: CNAME `end.nodata.test` (TTL 3600) and the SOA of
    ///   `nodata.test` (TTL 3600, MINIMUM 5), no record of the asked type,
    /// - `*.nx-cname.test` NXDOMAIN behind a short CNAME: CNAME `gone.nxdomain.test` (TTL 2) and the SOA of
    ///   `nxdomain.test` (TTL 300, MINIMUM 120),
    /// - `*.opt-first.test` an OPT with an NSID option before another additional record ([`opt_first`]),
    /// - `*.huge.test` TXT records filling a TCP answer to [`HUGE_ANSWER`] octets, no OPT ([`huge`]),
    /// - `*.no-edns.test` FORMERR without OPT or question to a query with EDNS (a server that predates EDNS),
    ///   else as the names below,
    /// - `*.glue.test` A 192.0.2.1 with an NS in authority and 40 A records in additional, whatever the size,
    /// - `*.big.test` 40 TXT records (truncated over UDP beyond min(client payload, 1232)),
    /// - `*.validated.test` sets AD only when the query has AD or DO (as a validating resolver does),
    /// - `*.ad.test` sets AD and adds an Extended DNS Error option when the query has EDNS,
    /// - `*.short-ttl.test` A with TTL 1,
    /// - `*.cname-c2.test` CNAME `hop.cname-ok.test` CNAME `cdn.msstorageazure.com` + A 192.0.2.66 (cloaking),
    /// - `*.cname-ok.test` CNAME `www.example.test` + A 192.0.2.1 (an innocent chain),
    /// - `*.https-c2.test` HTTPS 1 `msstorageazure.com.` (an HTTPS record whose target is a C2 name),
    /// - `*.c2addr.test` A 198.51.100.7, AAAA 2001:db8:bad::7 (addresses for address lists),
    /// - `*.https-hint.test` HTTPS 1 `.` alpn h2, ipv4hint 192.0.2.1 and 198.51.100.7, ipv6hint
    ///   2001:db8:bad::7 (addresses a browser may connect to without asking for A or AAAA),
    /// - anything else: A 192.0.2.1, AAAA 2001:db8::1, TXT "from upstream", MX 10 mail.example.test,
    ///   else NODATA; answers echo EDNS (payload 1232, DO).
    Test,
    /// One A record `addr` with `ttl`, question echoed as sent, no EDNS; with `a_only` other types get
    /// NODATA (no SOA), without it every question gets the A record.
    FixedA {
        addr: Ipv4Addr,
        ttl: u32,
        a_only: bool,
    },
}

/// A fault applied to every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer normally.
    Answer,
    /// Receive and record, never answer (a black-holed server).
    Silent,
    /// Answer with the right ID but a body that is not a valid message.
    Garbage,
    /// Answer with the right ID but cut in the middle of the answer record.
    Truncated,
    /// First a reply with a wrong ID, then one for another question, then the real answer.
    SpoofFirst,
    /// The right ID and question, but the last record's RDATA one octet longer than the RDLENGTH of an A
    /// says (5): a message clients reject. Meant for [`Zone::FixedA`] answers to A, whose last record is it.
    LongA,
}

struct State {
    zone: Zone,
    mode: Mutex<Mode>,
    delays: Mutex<HashMap<String, Duration>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// A real DNS server on loopback (UDP and TCP, same port). Names whose first label is `blackhole` are never
/// answered in any zone, those whose first label is `udp-dropped` only over TCP (a rate-limited server), those
/// whose first label is `tc-only` truncated over UDP and never over TCP (after any [`Upstream::delay`]);
/// for those whose first label is `lossy`, the first query over UDP is lost (not
/// answered) and later ones are answered. Each query is answered on its own thread (TCP answers may come out
/// of order).
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstream {
    /// The test zone on 127.0.0.1, free port.
    pub fn start() -> Upstream {
        Self::with_zone("127.0.0.1:0".parse().expect("addr"), Zone::Test)
    }

    /// The test zone on the given address (port 0 = free port, same for UDP and TCP).
    pub fn start_on(addr: SocketAddr) -> Upstream {
        Self::with_zone(addr, Zone::Test)
    }

    /// Answers every question with one A record `addr` (TTL 300).
    pub fn answering(addr: Ipv4Addr) -> Upstream {
        let zone = Zone::FixedA {
            addr,
            ttl: 300,
            a_only: false,
        };
        Self::with_zone("127.0.0.1:0".parse().expect("addr"), zone)
    }

    /// Answers A questions with `addr` (TTL `ttl`), other types with NODATA.
    pub fn answering_a(addr: Ipv4Addr, ttl: u32) -> Upstream {
        let zone = Zone::FixedA {
            addr,
            ttl,
            a_only: true,
        };
        Self::with_zone("127.0.0.1:0".parse().expect("addr"), zone)
    }

    /// Starts serving `zone` on `addr`.
    pub fn with_zone(addr: SocketAddr, zone: Zone) -> Upstream {
        let state = Arc::new(State {
            zone,
            mode: Mutex::new(Mode::Answer),
            delays: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let mut up = Upstream {
            addr,
            state,
            threads: Vec::new(),
        };
        up.bind(addr);
        up
    }

    fn bind(&mut self, addr: SocketAddr) {
        let mut last = None;
        for _ in 0..50 {
            let udp = match UdpSocket::bind(addr) {
                Ok(u) => u,
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            let actual = udp.local_addr().expect("local addr");
            let tcp = match TcpListener::bind(actual) {
                Ok(t) => t,
                Err(e) => {
                    last = Some(e);
                    if addr.port() != 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    continue;
                }
            };
            self.addr = actual;
            self.state.stop.store(false, Ordering::SeqCst);
            udp.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            tcp.set_nonblocking(true).expect("nonblocking");
            let st = self.state.clone();
            self.threads
                .push(std::thread::spawn(move || udp_loop(udp, st)));
            let st = self.state.clone();
            self.threads
                .push(std::thread::spawn(move || tcp_loop(tcp, st)));
            return;
        }
        panic!("cannot bind test upstream on {addr}: {last:?}");
    }

    /// Closes the sockets: queries to it now meet a closed port.
    pub fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Binds the same port again after `stop`.
    pub fn restart(&mut self) {
        let addr = self.addr;
        self.bind(addr);
    }

    /// Switches the fault applied to answers from now on.
    pub fn set_mode(&self, m: Mode) {
        *self.state.mode.lock().expect("lock") = m;
    }

    /// Answers questions for `name` only after `d`.
    pub fn delay(&self, name: &str, d: Duration) {
        self.state
            .delays
            .lock()
            .expect("lock")
            .insert(name.to_ascii_lowercase(), d);
    }

    /// Every query received so far, in order; a UDP query sent again counts once.
    pub fn seen(&self) -> Vec<Seen> {
        let all = self.state.seen.lock().expect("lock").clone();
        all.into_iter().filter(|s| !s.resent).collect()
    }

    /// Every query datagram or TCP message received so far, resent ones too, in order.
    pub fn datagrams(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Every question name received so far (lower case), in order.
    pub fn names(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.name).collect()
    }

    /// How many times `name` (any case, no trailing dot) was asked.
    pub fn count(&self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        self.seen().iter().filter(|s| s.name == name).count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn udp_loop(sock: UdpSocket, st: Arc<State>) {
    let sock = Arc::new(sock);
    let mut buf = [0u8; 4096];
    while !st.stop.load(Ordering::SeqCst) {
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let q = buf[..n].to_vec();
        record(&st, &q, Some(src));
        let (sock, st) = (sock.clone(), st.clone());
        std::thread::spawn(move || {
            for r in respond(&q, false, &st) {
                if r.get(2).is_some_and(|f| f & 0x02 != 0) {
                    mark_truncated(&st, &q);
                }
                let _ = sock.send_to(&r, src);
            }
        });
    }
}

fn tcp_loop(listener: TcpListener, st: Arc<State>) {
    while !st.stop.load(Ordering::SeqCst) {
        let Ok((stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let st = st.clone();
        std::thread::spawn(move || {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let writer = Arc::new(Mutex::new(stream.try_clone().expect("clone")));
            let mut rd = stream;
            loop {
                let mut lb = [0u8; 2];
                if rd.read_exact(&mut lb).is_err() {
                    return;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(lb))];
                if rd.read_exact(&mut q).is_err() {
                    return;
                }
                record(&st, &q, None);
                let (w, st) = (writer.clone(), st.clone());
                std::thread::spawn(move || {
                    for r in respond(&q, true, &st) {
                        let mut f = (r.len() as u16).to_be_bytes().to_vec();
                        f.extend_from_slice(&r);
                        let _ = w.lock().expect("lock").write_all(&f);
                    }
                });
            }
        });
    }
}

/// Question name (lower case, dotted, no trailing dot) and type of a raw query.
fn read_question(q: &[u8]) -> Option<(String, u16)> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(pos)?);
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos + 1..pos + 1 + len)?).to_ascii_lowercase());
        pos += 1 + len;
    }
    let t = q.get(pos + 1..pos + 3)?;
    Some((labels.join("."), u16::from_be_bytes([t[0], t[1]])))
}

/// Records a query that came over UDP from `udp_from`, or over TCP.
fn record(st: &State, q: &[u8], udp_from: Option<SocketAddr>) {
    let tcp = udp_from.is_none();
    let id = q.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let Some((name, qtype)) = read_question(q) else {
        return;
    };
    let edns = Message::from_vec(q).is_ok_and(|m| m.edns.is_some());
    let (dnssec_ok, options) = match Message::from_vec(q).ok().and_then(|m| m.edns) {
        Some(e) => (
            e.flags().dnssec_ok,
            e.options()
                .as_ref()
                .iter()
                .map(|(c, _)| u16::from(*c))
                .collect(),
        ),
        None => (false, vec![]),
    };
    let mut seen = st.seen.lock().expect("lock");
    let asked_by_udp = |s: &&Seen| !s.tcp && s.id == id && s.name == name;
    let resent = match udp_from {
        Some(_) => seen.iter().filter(asked_by_udp).any(|s| s.from == udp_from),
        None => {
            seen.iter().filter(asked_by_udp).count() > 0
                && !seen.iter().filter(asked_by_udp).any(|s| s.truncated)
        }
    };
    seen.push(Seen {
        name,
        qtype: RecordType::from(qtype),
        tcp,
        dnssec_ok,
        options,
        rd: q.get(2).is_some_and(|f| f & 0x01 != 0),
        edns,
        flags: q.get(2..4).map_or(0, |f| u16::from_be_bytes([f[0], f[1]])),
        id,
        from: udp_from,
        resent,
        truncated: false,
    });
}

/// Notes that the UDP query `q` was answered with TC set, before the answer is sent.
fn mark_truncated(st: &State, q: &[u8]) {
    let id = q.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let Some((name, _)) = read_question(q) else {
        return;
    };
    for s in st.seen.lock().expect("lock").iter_mut() {
        if !s.tcp && s.id == id && s.name == name {
            s.truncated = true;
        }
    }
}

/// The upstream's replies to one query: the zone's answer (after any delay for the name) with the mode's fault.
fn respond(q: &[u8], tcp: bool, st: &State) -> Vec<Vec<u8>> {
    let Some((name, _)) = read_question(q) else {
        return vec![];
    };
    if name.split('.').next() == Some("blackhole") {
        return vec![];
    }
    // `record` has run: this query is in `seen`.
    let udp_asks = || {
        let seen = st.seen.lock().expect("lock");
        seen.iter().filter(|s| s.name == name && !s.tcp).count()
    };
    // Rate limited (nsd's RRL drops a limited answer or sends it truncated; the TCP answer always comes).
    if !tcp && name.split('.').next() == Some("udp-dropped") {
        return vec![];
    }
    if !tcp && name.split('.').next() == Some("lossy") && udp_asks() == 1 {
        return vec![];
    }
    let delay = st.delays.lock().expect("lock").get(&name).copied();
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    // Truncated over UDP, never answered over TCP (a server whose TCP a firewall drops).
    if name.split('.').next() == Some("tc-only") {
        return if tcp {
            vec![]
        } else {
            truncated_empty(q).into_iter().collect()
        };
    }
    let good = match st.zone {
        Zone::Test if name.ends_with(".opt-first.test") => opt_first(q),
        Zone::Test if name.ends_with(".huge.test") => huge(q, tcp),
        Zone::Test => Message::from_vec(q).ok().and_then(|m| test_zone(&m, tcp)),
        Zone::FixedA { addr, ttl, a_only } => fixed_a(q, addr, ttl, a_only),
    };
    let Some(good) = good else {
        return vec![];
    };
    match *st.mode.lock().expect("lock") {
        Mode::Answer => vec![good],
        Mode::Silent => vec![],
        Mode::Garbage => {
            let mut g = good[..12].to_vec();
            g.extend_from_slice(&[0xff; 40]);
            vec![g]
        }
        Mode::Truncated => vec![good[..good.len() - 3].to_vec()],
        Mode::SpoofFirst => {
            let Some(mut wrong_id) = fixed_a(q, Ipv4Addr::new(6, 6, 6, 6), 300, false) else {
                return vec![good];
            };
            wrong_id[0] ^= 0x55;
            let other = query(u16::from_be_bytes([q[0], q[1]]), "spoofed.example", TYPE_A);
            let wrong_q = fixed_a(&other, Ipv4Addr::new(6, 6, 6, 7), 300, false).expect("answer");
            vec![wrong_id, wrong_q, good]
        }
        Mode::LongA => {
            let mut long = good;
            let n = long.len();
            long[n - 6..n - 4].copy_from_slice(&5u16.to_be_bytes());
            long.push(9);
            vec![long]
        }
    }
}

/// The question echoed with TC set and nothing else: "ask me over TCP".
fn truncated_empty(q: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(q).ok()?;
    let mut r = response_to(&msg);
    r.add_query(msg.queries.first()?.clone());
    r.metadata.truncation = true;
    r.to_vec().ok()
}

/// A fresh response to `msg` with header bits and question copied, as the test zone builds them.
fn response_to(msg: &Message) -> Message {
    let mut r = Message::new(msg.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_desired = msg.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.checking_disabled = msg.metadata.checking_disabled;
    r
}

fn soa(zone: &str) -> Record {
    soa_timed(zone, 300, 120)
}

/// The SOA of `zone` with TTL `ttl` and MINIMUM `minimum`.
fn soa_timed(zone: &str, ttl: u32, minimum: u32) -> Record {
    let zone = Name::from_str(zone).expect("zone");
    Record::from_rdata(
        zone,
        ttl,
        RData::SOA(SOA::new(
            Name::from_str("ns.upstream.test.").expect("n"),
            Name::from_str("admin.upstream.test.").expect("n"),
            7,
            3600,
            600,
            86400,
            minimum,
        )),
    )
}

/// `*.opt-first.test` (in [`Zone::Test`]): A 192.0.2.1, then an OPT record carrying an NSID option
/// ("up-nsid") that is not the last record: an A record (owner: a pointer to the question) follows it, as a
/// careless upstream may write, whatever EDNS the query had.
fn opt_first(q: &[u8]) -> Option<Vec<u8>> {
    let mut m = fixed_a(q, Ipv4Addr::new(192, 0, 2, 1), 300, false)?;
    m[10..12].copy_from_slice(&2u16.to_be_bytes());
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 3, 0, 7]);
    m.extend_from_slice(b"up-nsid");
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 9]);
    Some(m)
}

/// Octets of a `*.huge.test` answer over TCP: an OPT record (11 octets) added to it passes 65,535.
pub const HUGE_ANSWER: usize = 65_530;

/// `*.huge.test` (in [`Zone::Test`]): over TCP, TXT records (owner: a pointer to the question) filling the
/// answer to [`HUGE_ANSWER`] octets, with no OPT whatever the query had; over UDP, TC and no record.
fn huge(q: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let qend = 12 + q.get(12..)?.iter().position(|&b| b == 0)? + 5;
    let mut m = q.get(..qend)?.to_vec();
    m[2] = 0x80 | (q[2] & 0x01) | if tcp { 0 } else { 0x02 };
    m[3] = 0x80;
    m[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    if !tcp {
        return Some(m);
    }
    // A TXT record of `size` octets: pointer, type, class, TTL, RDLENGTH, then one string.
    let push = |m: &mut Vec<u8>, size: usize| {
        m.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 1, 44]);
        m.extend_from_slice(&((size - 12) as u16).to_be_bytes());
        m.push((size - 13) as u8);
        m.resize(m.len() + size - 13, b'x');
    };
    let mut count = 0u16;
    while HUGE_ANSWER - m.len() > 268 {
        let left = HUGE_ANSWER - m.len();
        push(&mut m, if left > 268 + 13 { 268 } else { left - 140 });
        count += 1;
    }
    let left = HUGE_ANSWER - m.len();
    push(&mut m, left);
    m[6..8].copy_from_slice(&(count + 1).to_be_bytes());
    Some(m)
}

fn test_zone(msg: &Message, tcp: bool) -> Option<Vec<u8>> {
    let q = msg.queries.first()?.clone();
    let lname = q.name().to_ascii().to_ascii_lowercase();
    let name = q.name().clone();
    let mut r = response_to(msg);
    r.add_query(q.clone());
    let client_payload = msg.edns.as_ref().map_or(512, |e| e.max_payload().max(512));
    if let Some(e) = &msg.edns {
        let mut out = Edns::new();
        out.set_max_payload(1232);
        out.set_dnssec_ok(e.flags().dnssec_ok);
        r.set_edns(out);
    }
    let ends = |z: &str| lname.ends_with(z);
    if ends(".no-edns.test.") && msg.edns.is_some() {
        // As an old server that does not know EDNS answers a query with OPT: FORMERR, no OPT, no question.
        let mut bare = response_to(msg);
        bare.metadata.response_code = ResponseCode::FormErr;
        return bare.to_vec().ok();
    }
    if ends(".bare-refused.test.") {
        // As nsd refuses what it does not serve: REFUSED with no question section.
        let mut bare = response_to(msg);
        bare.metadata.response_code = ResponseCode::Refused;
        return bare.to_vec().ok();
    }
    if ends(".bare-nxdomain.test.") {
        // A broken upstream (or a spoofer): NXDOMAIN with an SOA but no question section.
        let mut bare = response_to(msg);
        bare.metadata.response_code = ResponseCode::NXDomain;
        bare.add_authority(soa("bare-nxdomain.test."));
        return bare.to_vec().ok();
    }
    if ends(".norec.test.") && !msg.metadata.recursion_desired {
        // As a recursive resolver answers a non-recursive query for a name it has not cached.
        r.metadata.response_code = ResponseCode::Refused;
        return r.to_vec().ok();
    }
    if ends(".silent.test.") {
        return None;
    }
    if ends(".slow.test.") {
        std::thread::sleep(Duration::from_millis(1500));
    }
    if ends(".auth.test.") {
        // Answers as an authoritative server does (a LAN's DHCP DNS server, nsd): AA set, no recursion
        // offered, CD not echoed.
        r.metadata.authoritative = true;
        r.metadata.recursion_available = false;
        r.metadata.checking_disabled = false;
    }
    if ends(".refused.test.") {
        r.metadata.response_code = ResponseCode::Refused;
    } else if ends(".servfail.test.") {
        r.metadata.response_code = ResponseCode::ServFail;
    } else if ends(".nxdomain.test.") {
        r.metadata.response_code = ResponseCode::NXDomain;
        r.add_authority(soa("nxdomain.test."));
    } else if ends(".nodata.test.") {
        r.add_authority(soa("nodata.test."));
    } else if ends(".nodata-cname.test.") || ends(".nx-cname.test.") {
        let (target, cname_ttl, authority) = if ends(".nodata-cname.test.") {
            ("end.nodata.test.", 3600, soa_timed("nodata.test.", 3600, 5))
        } else {
            r.metadata.response_code = ResponseCode::NXDomain;
            ("gone.nxdomain.test.", 2, soa("nxdomain.test."))
        };
        let target = Name::from_str(target).expect("name");
        r.add_answer(Record::from_rdata(
            name,
            cname_ttl,
            RData::CNAME(CNAME(target)),
        ));
        r.add_authority(authority);
    } else if ends(".cname-c2.test.") || ends(".cname-ok.test.") {
        let n = |s: &str| Name::from_str(s).expect("name");
        let (chain, last): (Vec<&str>, &str) = if ends(".cname-c2.test.") {
            (
                vec!["hop.cname-ok.test.", "cdn.msstorageazure.com."],
                "192.0.2.66",
            )
        } else {
            (vec!["www.example.test."], "192.0.2.1")
        };
        let mut owner = name.clone();
        for t in chain {
            r.add_answer(Record::from_rdata(
                owner.clone(),
                300,
                RData::CNAME(CNAME(n(t))),
            ));
            owner = n(t);
        }
        if q.query_type() == RecordType::A {
            r.add_answer(Record::from_rdata(
                owner,
                300,
                RData::A(last.parse().expect("ip")),
            ));
        }
    } else if ends(".https-c2.test.") && q.query_type() == RecordType::HTTPS {
        let target = Name::from_str("msstorageazure.com.").expect("name");
        r.add_answer(Record::from_rdata(
            name,
            300,
            RData::HTTPS(HTTPS(SVCB::new(1, target, vec![]))),
        ));
    } else if ends(".https-hint.test.") && q.query_type() == RecordType::HTTPS {
        use hickory_proto::rr::rdata::svcb::{Alpn, IpHint, SvcParamKey, SvcParamValue};
        let params = vec![
            (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["h2".to_string()])),
            ),
            (
                SvcParamKey::Ipv4Hint,
                SvcParamValue::Ipv4Hint(IpHint(vec![
                    A::new(192, 0, 2, 1),
                    A::new(198, 51, 100, 7),
                ])),
            ),
            (
                SvcParamKey::Ipv6Hint,
                SvcParamValue::Ipv6Hint(IpHint(vec![AAAA::new(
                    0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 7,
                )])),
            ),
        ];
        r.add_answer(Record::from_rdata(
            name,
            300,
            RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), params))),
        ));
    } else if ends(".glue.test.") && q.query_type() == RecordType::A {
        // A small answer with a large additional section (as an AD server's answers carry glue): sent whole
        // whatever the size, for c2sink to fit to its client.
        r.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        r.add_authority(Record::from_rdata(
            Name::from_str("glue.test.").expect("name"),
            300,
            RData::NS(NS(Name::from_str("ns0.glue.test.").expect("name"))),
        ));
        for i in 0..40u8 {
            r.add_additional(Record::from_rdata(
                Name::from_str(&format!("ns{i}.glue.test.")).expect("name"),
                300,
                RData::A(A::new(192, 0, 2, i)),
            ));
        }
    } else if ends(".big.test.") && q.query_type() == RecordType::TXT {
        for i in 0..40 {
            r.add_answer(Record::from_rdata(
                name.clone(),
                300,
                RData::TXT(TXT::new(vec![format!("{i:02} {}", "x".repeat(47))])),
            ));
        }
        let limit = usize::from(client_payload.min(1232));
        if !tcp && r.to_vec().ok()?.len() > limit {
            r.answers.clear();
            r.metadata.truncation = true;
        }
    } else {
        let ttl = if ends(".short-ttl.test.") { 1 } else { 300 };
        let c2addr = ends(".c2addr.test.");
        let rdata = match q.query_type() {
            RecordType::A if c2addr => Some(RData::A(A::new(198, 51, 100, 7))),
            RecordType::AAAA if c2addr => {
                Some(RData::AAAA(AAAA::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 7)))
            }
            RecordType::A => Some(RData::A(A::new(192, 0, 2, 1))),
            RecordType::AAAA => Some(RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            RecordType::TXT => Some(RData::TXT(TXT::new(vec!["from upstream".into()]))),
            RecordType::MX => Some(RData::MX(MX::new(
                10,
                Name::from_str("mail.example.test.").expect("n"),
            ))),
            _ => None,
        };
        match rdata {
            Some(d) => {
                r.add_answer(Record::from_rdata(name, ttl, d));
            }
            None => {
                r.add_authority(soa("test."));
            }
        }
        // Like a validating resolver (RFC 6840 5.7): AD only when the query asked for it with AD or DO.
        if ends(".validated.test.")
            && (msg.metadata.authentic_data
                || msg.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok))
        {
            r.metadata.authentic_data = true;
        }
        if ends(".chatty.test.")
            && let Some(e) = r.edns.as_mut()
        {
            // What a BIND or nsd upstream adds: its NSID (RFC 5001) and a cookie (RFC 7873) for the asker.
            e.options_mut()
                .insert(EdnsOption::Unknown(3, b"upstream-nsid".to_vec()));
            e.options_mut().insert(EdnsOption::Unknown(10, vec![9; 24]));
        }
        if ends(".ad.test.") {
            r.metadata.authentic_data = true;
            if let Some(e) = r.edns.as_mut() {
                // Extended DNS Error (RFC 8914) code 15, info 0 = Other, with text.
                let mut data = vec![0u8, 0u8];
                data.extend_from_slice(b"c2sink-test");
                e.options_mut().insert(EdnsOption::Unknown(15, data));
            }
        }
    }
    r.to_vec().ok()
}

/// A UDP socket that reads queries and never answers: an upstream that is down without ICMP errors.
pub struct Blackhole {
    pub addr: SocketAddr,
    /// Queries received; one sent again (same ID, same source) counts once.
    pub received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Blackhole {
    /// Starts on 127.0.0.1 with a free port.
    pub fn start() -> Blackhole {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut queries = std::collections::HashSet::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, src)) = sock.recv_from(&mut buf)
                    && n >= 2
                    && queries.insert((src, buf[0], buf[1]))
                {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Blackhole {
            addr,
            received,
            stop,
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
