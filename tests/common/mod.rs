//! Test harness: a real loopback upstream DNS server, the real c2sink binary, and a real DNS client.
#![allow(dead_code)]

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, MX, SOA, SVCB, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the test upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub name: String,
    pub qtype: RecordType,
    pub tcp: bool,
    pub dnssec_ok: bool,
    pub options: Vec<u16>,
}

/// A real DNS server on loopback (UDP and TCP, one port) with a small programmable zone:
/// - `*.refused.test` REFUSED, `*.servfail.test` SERVFAIL, `*.nxdomain.test` NXDOMAIN + SOA,
///   `*.nodata.test` NODATA + SOA, `*.silent.test` never answered, `*.slow.test` answered after 1.5 s,
/// - `*.big.test` 40 TXT records (truncated over UDP beyond min(client payload, 1232)),
/// - `*.ad.test` sets AD and adds an Extended DNS Error option when the query has EDNS,
/// - `*.short-ttl.test` A with TTL 1,
/// - `*.cname-c2.test` CNAME `hop.cname-ok.test` CNAME `cdn.msstorageazure.com` + A 192.0.2.66 (CNAME cloaking),
/// - `*.cname-ok.test` CNAME `www.example.test` + A 192.0.2.1 (an innocent chain),
/// - `*.https-c2.test` HTTPS 1 `msstorageazure.com.` (an HTTPS record whose target is a C2 name),
/// - anything else: A 192.0.2.1, AAAA 2001:db8::1, TXT "from upstream", MX 10 mail.example.test, else NODATA.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    /// Starts on 127.0.0.1 with a free port.
    pub fn start() -> Upstream {
        Self::start_on("127.0.0.1:0".parse().expect("addr"))
    }

    /// Starts on the given address (port 0 = free port, same for UDP and TCP).
    pub fn start_on(addr: SocketAddr) -> Upstream {
        let (udp, tcp) = bind_pair(addr);
        let addr = udp.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let udp = Arc::new(udp);
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, src)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(msg) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    record(&seen, &msg, false);
                    let udp = udp.clone();
                    std::thread::spawn(move || {
                        if let Some(resp) = respond(&msg, false) {
                            let _ = udp.send_to(&resp, src);
                        }
                    });
                }
            });
        }
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let seen = seen.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        while let Ok(msg) = read_tcp(&mut s) {
                            let Ok(msg) = Message::from_vec(&msg) else {
                                return;
                            };
                            record(&seen, &msg, true);
                            if let Some(resp) = respond(&msg, true)
                                && write_tcp(&mut s, &resp).is_err()
                            {
                                return;
                            }
                        }
                    });
                }
            });
        }
        Upstream { addr, seen, stop }
    }

    /// Every question received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// How many times `name` (any case, no trailing dot) was asked.
    pub fn count(&self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        self.seen().iter().filter(|s| s.name == name).count()
    }

    /// Stops answering (the sockets close shortly after).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A UDP socket that reads queries and never answers: an upstream that is down without ICMP errors.
pub struct Blackhole {
    pub addr: SocketAddr,
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
            while !s.load(Ordering::Relaxed) {
                if sock.recv_from(&mut buf).is_ok() {
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

fn bind_pair(addr: SocketAddr) -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind(addr).expect("bind udp");
        let actual = udp.local_addr().expect("addr");
        if let Ok(tcp) = TcpListener::bind(actual) {
            return (udp, tcp);
        }
    }
    panic!("no free port pair on {addr}");
}

fn record(seen: &Mutex<Vec<Seen>>, msg: &Message, tcp: bool) {
    let Some(q) = msg.queries.first() else { return };
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let (dnssec_ok, options) = match &msg.edns {
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
    seen.lock().expect("lock").push(Seen {
        name,
        qtype: q.query_type(),
        tcp,
        dnssec_ok,
        options,
    });
}

fn soa(zone: &str) -> Record {
    let zone = Name::from_str(zone).expect("zone");
    Record::from_rdata(
        zone,
        300,
        RData::SOA(SOA::new(
            Name::from_str("ns.upstream.test.").expect("n"),
            Name::from_str("admin.upstream.test.").expect("n"),
            7,
            3600,
            600,
            86400,
            120,
        )),
    )
}

/// The test zone's answer to `msg`, as wire bytes; `None` means stay silent.
fn respond(msg: &Message, tcp: bool) -> Option<Vec<u8>> {
    let q = msg.queries.first()?.clone();
    let lname = q.name().to_ascii().to_ascii_lowercase();
    let name = q.name().clone();
    let mut r = Message::new(msg.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_desired = msg.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.checking_disabled = msg.metadata.checking_disabled;
    r.add_query(q.clone());
    let client_payload = msg.edns.as_ref().map_or(512, |e| e.max_payload().max(512));
    if let Some(e) = &msg.edns {
        let mut out = Edns::new();
        out.set_max_payload(1232);
        out.set_dnssec_ok(e.flags().dnssec_ok);
        r.set_edns(out);
    }
    let ends = |z: &str| lname.ends_with(z);
    if ends(".silent.test.") {
        return None;
    }
    if ends(".slow.test.") {
        std::thread::sleep(Duration::from_millis(1500));
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
        let rdata = match q.query_type() {
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
        if ends(".ad.test.") {
            r.metadata.authentic_data = true;
            if let Some(e) = r.edns.as_mut() {
                // Extended DNS Error (RFC 8914) code 15, info 0 "Blocked"? No: 0 = Other, with text.
                let mut data = vec![0u8, 0u8];
                data.extend_from_slice(b"c2sink-test");
                e.options_mut().insert(EdnsOption::Unknown(15, data));
            }
        }
    }
    r.to_vec().ok()
}

fn read_tcp(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_tcp(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut out = (msg.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out)
}

/// The real c2sink binary running on loopback with a config written for the test.
pub struct C2sink {
    child: Child,
    /// Bound listen addresses, in config order.
    pub addrs: Vec<SocketAddr>,
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Path of the c2sink binary Cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_c2sink")
}

/// The shipped 3CX list's domains.
pub fn shipped_3cx() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("blocklists/3cx.txt"))
            .expect("shipped list");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// A config for tests: loopback listeners on free ports, the given upstreams, the shipped 3CX list
/// (copied in as `3cx.txt`), events to `events.jsonl`; `extra` is appended (more tables).
pub fn config(upstreams: &[SocketAddr], extra: &str) -> String {
    let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"[server]
listen = ["127.0.0.1:0", "[::1]:0"]
udp_sockets = 2

[upstream]
servers = [{}]
timeout_ms = 400

[[blocklists]]
name = "3cx"
path = "3cx.txt"

[log]
events = "events.jsonl"
level = "debug"
{extra}
"#,
        ups.join(", ")
    )
}

impl C2sink {
    /// Writes `config` (and the shipped 3CX list as 3cx.txt, plus `files`) to a temp dir and starts c2sink.
    pub fn start(config: &str, files: &[(&str, &str)]) -> C2sink {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("blocklists/3cx.txt"),
            dir.path().join("3cx.txt"),
        )
        .expect("copy list");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write file");
        }
        let cfg = dir.path().join("c2sink.toml");
        std::fs::write(&cfg, config).expect("write config");
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn c2sink");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("listening on ") || line.contains("c2sink ready") {
                        let _ = tx.send(line.clone());
                    }
                    stderr.lock().expect("lock").push(line);
                }
            });
        }
        let mut addrs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("c2sink ready") => break,
                Ok(line) => {
                    let after = line.split("listening on ").nth(1).unwrap_or("");
                    let addr = after.split_whitespace().next().unwrap_or("");
                    addrs.push(addr.parse().expect("listen address in log"));
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "c2sink did not become ready:\n{}",
                        stderr.lock().expect("lock").join("\n")
                    );
                }
            }
        }
        C2sink {
            child,
            addrs,
            dir,
            stderr,
        }
    }

    /// The first (IPv4) listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The IPv6 listen address, if configured.
    pub fn addr6(&self) -> SocketAddr {
        *self
            .addrs
            .iter()
            .find(|a| a.is_ipv6())
            .expect("ipv6 listener")
    }

    /// Path of a file in the server's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The block events written so far, parsed (waits briefly for `want` lines).
    pub fn events(&self, want: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(self.path("events.jsonl")).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("event line is JSON"))
                .collect();
            if lines.len() >= want || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Operational log lines so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("lock").clone()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "c2sink did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for C2sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
}

/// Builds a query message.
pub fn query_msg(name: &str, qtype: RecordType, ask: &Ask) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = ask.checking_disabled;
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
            write_tcp(&mut s, msg).ok()?;
            let r = read_tcp(&mut s).ok()?;
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

/// Runs a command-line DNS tool and returns its stdout.
pub fn run_tool(tool: &str, args: &[String]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} must be installed (scripts/install-test-tools.sh): {e}")
    });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Counts answers per name in the given map (test convenience).
pub fn tally<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for n in names {
        *m.entry(n.to_string()).or_insert(0) += 1;
    }
    m
}
