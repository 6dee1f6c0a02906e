//! Test support for the hardening suites: a programmable loopback upstream, the real c2sink binary started on
//! an ephemeral port, and a tiny DNS client. (To be unified with tests/common when merged.)
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const TYPE_A: u16 = 1;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_HINFO: u16 = 13;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const NOERROR: u16 = 0;
pub const FORMERR: u16 = 1;
pub const SERVFAIL: u16 = 2;
pub const NOTIMP: u16 = 4;
pub const REFUSED: u16 = 5;
pub const BADVERS: u16 = 16;

/// The name every test list blocks (with its subdomains).
pub const BLOCKED: &str = "evil-c2.example";

// ---------------------------------------------------------------- upstream

/// How the test upstream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer every A question with this upstream's address.
    Answer,
    /// Receive and record, never answer (a black-holed server).
    Silent,
    /// Answer with the right ID but a body that is not a valid message.
    Garbage,
    /// Answer with the right ID but cut in the middle of the answer record.
    Truncated,
    /// First a reply with a wrong ID, then one for another question, then the real answer.
    SpoofFirst,
}

struct UpState {
    mode: Mutex<Mode>,
    delays: Mutex<HashMap<String, Duration>>,
    seen: Mutex<Vec<String>>,
    answer: Ipv4Addr,
    stop: AtomicBool,
}

/// A loopback DNS server on UDP and TCP (same port) that records every question it gets.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpState>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstream {
    /// Starts on a free port, answering A questions with `answer`.
    pub fn start(answer: Ipv4Addr) -> Upstream {
        let state = Arc::new(UpState {
            mode: Mutex::new(Mode::Answer),
            delays: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            answer,
            stop: AtomicBool::new(false),
        });
        let mut up = Upstream {
            addr: "127.0.0.1:0".parse().expect("addr"),
            state,
            threads: Vec::new(),
        };
        up.bind(0);
        up
    }

    fn bind(&mut self, port: u16) {
        let mut last = None;
        for _ in 0..50 {
            let udp = match UdpSocket::bind(("127.0.0.1", port)) {
                Ok(u) => u,
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            let addr = udp.local_addr().expect("local addr");
            let tcp = match TcpListener::bind(addr) {
                Ok(t) => t,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            self.addr = addr;
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
        panic!("cannot bind test upstream: {last:?}");
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
        let port = self.addr.port();
        self.bind(port);
    }

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

    /// Every question name received so far (lower case), in order.
    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().expect("lock").clone()
    }

    pub fn count(&self, name: &str) -> usize {
        self.seen().iter().filter(|n| *n == name).count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn udp_loop(sock: UdpSocket, st: Arc<UpState>) {
    let sock = Arc::new(sock);
    let mut buf = [0u8; 4096];
    while !st.stop.load(Ordering::SeqCst) {
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let q = buf[..n].to_vec();
        let (sock, st) = (sock.clone(), st.clone());
        std::thread::spawn(move || {
            for r in respond(&q, &st) {
                let _ = sock.send_to(&r, src);
            }
        });
    }
}

fn tcp_loop(listener: TcpListener, st: Arc<UpState>) {
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
                let (w, st) = (writer.clone(), st.clone());
                std::thread::spawn(move || {
                    for r in respond(&q, &st) {
                        let mut f = (r.len() as u16).to_be_bytes().to_vec();
                        f.extend_from_slice(&r);
                        let _ = w.lock().expect("lock").write_all(&f);
                    }
                });
            }
        });
    }
}

/// The upstream's replies to one query, per its mode (after any delay for the name).
fn respond(q: &[u8], st: &UpState) -> Vec<Vec<u8>> {
    let Some(name) = read_qname(q) else {
        return vec![];
    };
    st.seen.lock().expect("lock").push(name.clone());
    let delay = st.delays.lock().expect("lock").get(&name).copied();
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    let mode = *st.mode.lock().expect("lock");
    let good = answer_a(q, st.answer);
    if good.is_empty() {
        return vec![];
    }
    match mode {
        Mode::Answer => vec![good],
        Mode::Silent => vec![],
        Mode::Garbage => {
            let mut g = good[..12].to_vec();
            g.extend_from_slice(&[0xff; 40]);
            vec![g]
        }
        Mode::Truncated => vec![good[..good.len() - 3].to_vec()],
        Mode::SpoofFirst => {
            let mut wrong_id = answer_a(q, Ipv4Addr::new(6, 6, 6, 6));
            wrong_id[0] ^= 0x55;
            let other = query(u16::from_be_bytes([q[0], q[1]]), "spoofed.example", TYPE_A);
            let wrong_q = answer_a(&other, Ipv4Addr::new(6, 6, 6, 7));
            vec![wrong_id, wrong_q, good]
        }
    }
}

/// The question name of a query, lower case, dotted.
fn read_qname(q: &[u8]) -> Option<String> {
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
    Some(labels.join("."))
}

/// A NOERROR answer to `q` with one A record (TTL 300), echoing the question (empty if `q` has none).
fn answer_a(q: &[u8], addr: Ipv4Addr) -> Vec<u8> {
    let mut pos = 12;
    while let Some(&len) = q.get(pos) {
        if len == 0 {
            break;
        }
        pos += 1 + usize::from(len);
    }
    let qend = pos + 5;
    if qend > q.len() {
        return Vec::new();
    }
    let mut r = q[..2].to_vec();
    r.extend_from_slice(&[0x81 | (q[2] & 0x01), 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..qend]);
    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    r.extend_from_slice(&addr.octets());
    r
}

// ---------------------------------------------------------------- c2sink

/// The real c2sink binary, serving on an ephemeral loopback port.
pub struct C2sink {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl C2sink {
    /// Starts c2sink forwarding to `upstreams`, with `server_extra` added to `[server]` and `extra` at the end.
    pub fn start(
        upstreams: &[SocketAddr],
        timeout_ms: u64,
        server_extra: &str,
        extra: &str,
    ) -> C2sink {
        let dir = std::env::temp_dir().join(format!(
            "c2sink-harden-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("list.txt"), format!("# test list\n{BLOCKED}\n")).expect("list");
        let ups: Vec<String> = upstreams.iter().map(|a| format!("\"{a}\"")).collect();
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n{server_extra}\n\
             [upstream]\nservers = [{}]\ntimeout_ms = {timeout_ms}\n\
             [[blocklists]]\nname = \"c2\"\npath = \"list.txt\"\n\
             [log]\nevents = \"events.jsonl\"\nlevel = \"info\"\n{extra}\n",
            ups.join(", ")
        );
        std::fs::write(dir.join("c2sink.toml"), cfg).expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_c2sink"))
            .args(["serve", "--config"])
            .arg(dir.join("c2sink.toml"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start c2sink");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let l = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on ") {
                    let rest = &line[i + "listening on ".len()..];
                    if let Some(a) = rest.split_whitespace().next() {
                        let _ = tx.send(a.to_string());
                    }
                }
                l.lock().expect("lock").push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("c2sink did not start: {:?}", log.lock().expect("lock"));
            }
        };
        C2sink {
            child: Some(child),
            addr,
            dir,
            log,
            reader: Some(reader),
        }
    }

    /// Sends SIGTERM and waits for exit; returns the exit success and the whole stderr.
    pub fn terminate(&mut self) -> (bool, String) {
        let Some(mut child) = self.child.take() else {
            return (false, String::new());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        let ok = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (ok, self.log.lock().expect("lock").join("\n"))
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("lock").join("\n")
    }

    /// The block event lines written so far.
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for C2sink {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A value of `key=` in the "totals" line c2sink logs at exit.
pub fn total(log: &str, key: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains("totals"))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------- client

/// A query for `name`/`qtype` with RD set and no EDNS.
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

/// Appends an OPT record (payload, version, DO) and counts it.
pub fn add_opt(m: &mut Vec<u8>, payload: u16, version: u8, dnssec_ok: bool) {
    m.push(0);
    m.extend_from_slice(&TYPE_OPT.to_be_bytes());
    m.extend_from_slice(&payload.to_be_bytes());
    m.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    let ar = u16::from_be_bytes([m[10], m[11]]) + 1;
    m[10..12].copy_from_slice(&ar.to_be_bytes());
}

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

pub fn udp_ask(server: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    udp_ask_from("127.0.0.1", server, msg, Duration::from_secs(5))
}

/// Opens a TCP connection from `ip`.
pub fn tcp_connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = (ip.parse::<IpAddr>().expect("ip"), 0).into();
    sock.bind(&local.into()).expect("bind");
    sock.connect(&server.into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

pub fn tcp_send(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    s.write_all(&f)
}

pub fn tcp_read(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb)?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    s.read_exact(&mut m)?;
    Ok(m)
}

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

/// Asks a fresh forwarded name over UDP and TCP and checks the upstream's answer comes back.
pub fn assert_still_serving(c: &C2sink, tag: &str, want: Ipv4Addr) {
    for (i, tcp) in [(0u16, false), (1, true)] {
        let name = format!("alive-{tag}-{i}.example");
        let q = query(0x7a00 + i, &name, TYPE_A);
        let r = if tcp {
            tcp_ask(c.addr, &q)
        } else {
            udp_ask(c.addr, &q)
        };
        let r = r.unwrap_or_else(|| panic!("no answer to {name} (tcp={tcp}) after {tag}"));
        let r = parse(&r).expect("well-formed answer");
        assert_eq!(r.rcode, NOERROR, "{name} after {tag}");
        assert_eq!(r.addrs(), vec![want], "{name} after {tag}");
    }
}
