//! DNS client helpers: raw wire queries (any flags, any source address on loopback) and hickory-built ones,
//! over UDP and TCP, plus a strict reader for replies.

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RecordType};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::raw::query;

pub const TYPE_A: u16 = 1;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_HINFO: u16 = 13;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const NOERROR: u16 = 0;
pub const FORMERR: u16 = 1;
pub const SERVFAIL: u16 = 2;
pub const NOTIMP: u16 = 4;
pub const REFUSED: u16 = 5;
pub const BADVERS: u16 = 16;

/// A fresh query ID per call, so concurrent tests never reuse one.
pub fn next_id() -> u16 {
    static N: AtomicU16 = AtomicU16::new(1);
    N.fetch_add(7919, Ordering::Relaxed)
}

// ---------------------------------------------------------------- raw queries

/// Appends an OPT record (payload, version, DO) and counts it.
pub fn add_opt(m: &mut Vec<u8>, payload: u16, version: u8, dnssec_ok: bool) {
    add_opt_with(m, payload, version, dnssec_ok, &[]);
}

/// Appends an OPT record (payload, version, DO) carrying the EDNS `options` (code, data) and counts it.
pub fn add_opt_with(
    m: &mut Vec<u8>,
    payload: u16,
    version: u8,
    dnssec_ok: bool,
    options: &[(u16, Vec<u8>)],
) {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    m.push(0);
    m.extend_from_slice(&TYPE_OPT.to_be_bytes());
    m.extend_from_slice(&payload.to_be_bytes());
    m.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(&rdata);
    let ar = u16::from_be_bytes([m[10], m[11]]) + 1;
    m[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Rcode and answer count of a response.
pub fn rcode_and_answers(resp: &[u8]) -> (u8, u16) {
    (resp[3] & 0x0f, u16::from_be_bytes([resp[6], resp[7]]))
}

// ---------------------------------------------------------------- transports

/// A UDP socket on `ip` (any loopback address) with a receive timeout.
pub fn udp_client(ip: &str, timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind((ip.parse::<IpAddr>().expect("ip"), 0)).expect("bind client");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s
}

/// Sends `msg` over UDP from `ip` and waits for the reply carrying the same ID.
pub fn udp_ask_from(
    ip: &str,
    server: SocketAddr,
    msg: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    let s = udp_client(ip, timeout);
    s.send_to(msg, server).expect("send");
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65535];
    while Instant::now() < deadline {
        match s.recv(&mut buf) {
            Ok(n) if n >= 2 && buf[..2] == msg[..2] => return Some(buf[..n].to_vec()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// [`udp_ask_from`] 127.0.0.1 with a 5 s timeout.
pub fn udp_ask(server: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    udp_ask_from("127.0.0.1", server, msg, Duration::from_secs(5))
}

/// Opens a TCP connection from `ip` (5 s read timeout, no Nagle).
pub fn tcp_connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let local: SocketAddr = (ip.parse::<IpAddr>().expect("ip"), 0).into();
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    sock.bind(&local.into()).expect("bind");
    sock.connect(&server.into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Writes one length-prefixed DNS message.
pub fn tcp_send(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    s.write_all(&f)
}

/// Reads one length-prefixed DNS message.
pub fn tcp_read(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb)?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    s.read_exact(&mut m)?;
    Ok(m)
}

/// One query over a fresh TCP connection from 127.0.0.1.
pub fn tcp_ask(server: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    let mut s = tcp_connect_from("127.0.0.1", server);
    tcp_send(&mut s, msg).ok()?;
    tcp_read(&mut s).ok()
}

/// True once the peer has closed the connection (read gives EOF or a reset) within `within`.
pub fn closed_by_peer(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Asks `name`/`qtype` over UDP from `from` (any 127.0.0.x, 3 s); panics when no answer comes or its ID differs.
pub fn udp_from(server: SocketAddr, from: &str, name: &str, qtype: u16) -> Vec<u8> {
    let s = udp_client(from, Duration::from_secs(3));
    let id = next_id();
    s.send_to(&query(id, name, qtype), server).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no answer for {name} from {from}: {e}"));
    assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), id);
    buf[..n].to_vec()
}

/// Asks `name`/`qtype` over TCP from `from` (any 127.0.0.x); panics when no answer comes.
pub fn tcp_from(server: SocketAddr, from: &str, name: &str, qtype: u16) -> Vec<u8> {
    let mut t = tcp_connect_from(from, server);
    t.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    tcp_send(&mut t, &query(next_id(), name, qtype)).expect("send");
    tcp_read(&mut t).expect("answer over tcp")
}

/// Asks `server` over UDP (5 s) and returns the parsed answer, checking its ID.
pub fn ask_udp(server: SocketAddr, name: &str, qtype: u16) -> Message {
    let s = udp_client("127.0.0.1", Duration::from_secs(5));
    let id = next_id();
    s.send_to(&query(id, name, qtype), server).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).expect("answer over udp");
    let m = Message::from_vec(&buf[..n]).expect("parsable answer");
    assert_eq!(m.metadata.id, id);
    m
}

/// Asks `server` over TCP (5 s) and returns the parsed answer, checking its ID.
pub fn ask_tcp(server: SocketAddr, name: &str, qtype: u16) -> Message {
    let mut s = TcpStream::connect(server).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let id = next_id();
    tcp_send(&mut s, &query(id, name, qtype)).expect("send");
    let m = Message::from_vec(&tcp_read(&mut s).expect("answer over tcp")).expect("parsable");
    assert_eq!(m.metadata.id, id);
    m
}

/// Asks once over UDP, resending up to 3 times (700 ms each); the first parsable response with the query's
/// ID, or `None` when nothing came back (a dropped query).
pub fn ask_udp_retrying(server: SocketAddr, name: &str, qtype: RecordType) -> Option<Message> {
    let sock = udp_client("127.0.0.1", Duration::from_millis(700));
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let bytes = m.to_vec().expect("encode");
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        sock.send_to(&bytes, server).expect("send");
        while let Ok(n) = sock.recv(&mut buf) {
            let Ok(r) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if r.metadata.id != m.metadata.id || r.metadata.message_type != MessageType::Response {
                continue;
            }
            return Some(r);
        }
    }
    None
}

// ---------------------------------------------------------------- hickory-built queries

/// How a test query is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// Options of a test query.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub edns: bool,
    pub dnssec_ok: bool,
    pub payload: u16,
    pub options: Vec<(u16, Vec<u8>)>,
    pub checking_disabled: bool,
    pub authentic_data: bool,
}

/// Builds a query message.
pub fn query_msg(name: &str, qtype: RecordType, ask: &Ask) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = ask.checking_disabled;
    m.metadata.authentic_data = ask.authentic_data;
    m.add_query(Query::query(Name::from_str(name).expect("name"), qtype));
    if ask.edns || ask.dnssec_ok || !ask.options.is_empty() {
        let mut e = Edns::new();
        e.set_max_payload(if ask.payload == 0 { 1232 } else { ask.payload });
        e.set_dnssec_ok(ask.dnssec_ok);
        for (code, data) in &ask.options {
            e.options_mut()
                .insert(EdnsOption::Unknown(*code, data.clone()));
        }
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes and returns the raw answer (None on a 3 s timeout).
pub fn exchange_raw(server: SocketAddr, proto: Proto, msg: &[u8]) -> Option<Vec<u8>> {
    exchange_raw_from(server, proto, msg).map(|(r, _)| r)
}

/// Like [`exchange_raw`], also returning the client's local address.
pub fn exchange_raw_from(
    server: SocketAddr,
    proto: Proto,
    msg: &[u8],
) -> Option<(Vec<u8>, SocketAddr)> {
    let local: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0".parse().expect("a")
    } else {
        "[::1]:0".parse().expect("a")
    };
    match proto {
        Proto::Udp => {
            let s = UdpSocket::bind(local).expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
            s.send_to(msg, server).expect("send");
            let mut buf = vec![0u8; 65535];
            let (n, _) = s.recv_from(&mut buf).ok()?;
            buf.truncate(n);
            Some((buf, s.local_addr().expect("addr")))
        }
        Proto::Tcp => {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(3)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
            tcp_send(&mut s, msg).ok()?;
            let r = tcp_read(&mut s).ok()?;
            Some((r, s.local_addr().expect("addr")))
        }
    }
}

/// The wire form of `name` exactly as written (hickory lower-cases names when encoding).
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Encodes a query keeping the letter case of `name`.
pub fn query_bytes(name: &str, qtype: RecordType, opts: &Ask) -> (Message, Vec<u8>) {
    let q = query_msg(name, qtype, opts);
    let mut raw = q.to_vec().expect("encode");
    let wn = wire_name(name);
    raw[12..12 + wn.len()].copy_from_slice(&wn);
    (q, raw)
}

/// The question name of a raw message, as sent (case kept), dotted.
pub fn raw_question_name(msg: &[u8]) -> String {
    let mut pos = 12;
    let mut labels = Vec::new();
    while pos < msg.len() && msg[pos] != 0 {
        let n = usize::from(msg[pos]);
        labels.push(String::from_utf8_lossy(&msg[pos + 1..pos + 1 + n]).into_owned());
        pos += 1 + n;
    }
    labels.join(".")
}

/// Asks `name`/`qtype` (letter case kept) and returns the raw answer.
pub fn ask_raw(
    server: SocketAddr,
    proto: Proto,
    name: &str,
    qtype: RecordType,
    opts: &Ask,
) -> Vec<u8> {
    let (_, raw) = query_bytes(name, qtype, opts);
    exchange_raw(server, proto, &raw)
        .unwrap_or_else(|| panic!("no answer from {server} ({proto:?}) for {name} {qtype}"))
}

/// Asks `name`/`qtype` and parses the answer; panics on timeout or a reply that does not parse.
pub fn ask(server: SocketAddr, proto: Proto, name: &str, qtype: RecordType, opts: &Ask) -> Message {
    let (q, bytes) = query_bytes(name, qtype, opts);
    let raw = exchange_raw(server, proto, &bytes)
        .unwrap_or_else(|| panic!("no answer from {server} ({proto:?}) for {name} {qtype}"));
    let m = Message::from_vec(&raw).expect("answer parses");
    assert_eq!(m.metadata.id, q.metadata.id, "answer ID matches query ID");
    m
}

/// Shortcut: plain query without EDNS.
pub fn ask_simple(server: SocketAddr, proto: Proto, name: &str, qtype: RecordType) -> Message {
    ask(server, proto, name, qtype, &Ask::default())
}

// ---------------------------------------------------------------- reading replies

/// The parts of a reply the tests check.
#[derive(Debug, Clone)]
pub struct Reply {
    pub id: u16,
    pub flags: u16,
    /// Full RCODE: header bits plus the OPT's extended bits.
    pub rcode: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
    /// (type, rdata) of answer-section records.
    pub answers: Vec<(u16, Vec<u8>)>,
    /// (type) of authority records.
    pub authority: Vec<u16>,
    /// The OPT record: (payload, version).
    pub opt: Option<(u16, u8)>,
}

impl Reply {
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    /// A addresses in the answer.
    pub fn addrs(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter(|(t, d)| *t == TYPE_A && d.len() == 4)
            .map(|(_, d)| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
            .collect()
    }
}

fn skip_name(m: &[u8], mut pos: usize) -> Result<usize, String> {
    loop {
        let len = *m.get(pos).ok_or("name past end")?;
        if len & 0xc0 == 0xc0 {
            return Ok(pos + 2);
        }
        if len == 0 {
            return Ok(pos + 1);
        }
        if len > 63 {
            return Err(format!("bad label length {len}"));
        }
        pos += 1 + usize::from(len);
    }
}

/// Reads a reply strictly: every section must be complete, nothing may trail.
pub fn parse(m: &[u8]) -> Result<Reply, String> {
    if m.len() < 12 {
        return Err("short".into());
    }
    let u = |i: usize| u16::from_be_bytes([m[i], m[i + 1]]);
    let mut r = Reply {
        id: u(0),
        flags: u(2),
        rcode: u(2) & 0x0f,
        qdcount: u(4),
        ancount: u(6),
        nscount: u(8),
        arcount: u(10),
        answers: vec![],
        authority: vec![],
        opt: None,
    };
    let mut pos = 12;
    for _ in 0..r.qdcount {
        pos = skip_name(m, pos)? + 4;
    }
    for section in 0..3 {
        let n = [r.ancount, r.nscount, r.arcount][section];
        for _ in 0..n {
            pos = skip_name(m, pos)?;
            let f = m.get(pos..pos + 10).ok_or("record past end")?;
            let t = u16::from_be_bytes([f[0], f[1]]);
            let class = u16::from_be_bytes([f[2], f[3]]);
            let rdlen = usize::from(u16::from_be_bytes([f[8], f[9]]));
            let rdata = m.get(pos + 10..pos + 10 + rdlen).ok_or("rdata past end")?;
            match section {
                0 => r.answers.push((t, rdata.to_vec())),
                1 => r.authority.push(t),
                _ if t == TYPE_OPT => {
                    if r.opt.is_some() {
                        return Err("two OPT records".into());
                    }
                    r.opt = Some((class, f[5]));
                    r.rcode |= u16::from(f[4]) << 4;
                }
                _ => {}
            }
            pos += 10 + rdlen;
        }
    }
    if pos != m.len() {
        return Err(format!("{} trailing bytes", m.len() - pos));
    }
    Ok(r)
}

/// A small deterministic PRNG (xorshift64*), so random-input tests replay exactly.
pub struct Prng(pub u64);

impl Prng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// GET `path` from an HTTP server (c2sink's admin endpoint); returns (status code, body).
pub fn http_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(admin).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// Prometheus text as `name{k="v",...}` (labels sorted) -> value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut l: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                l.sort();
                format!("{name}{{{}}}", l.join(","))
            }
            None => series.to_string(),
        };
        out.insert(key, value.parse().expect("number"));
    }
    out
}
