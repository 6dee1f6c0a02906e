//! Small test helpers: a real c2sink process, a loopback upstream, a DNS client. (The lead unifies these
//! with `tests/common` when merging.)

#![allow(dead_code)]

use hickory_proto::op::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "c2sink-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = u.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A running c2sink binary.
pub struct C2sink {
    pub child: Child,
    pub dns: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub config: PathBuf,
    /// Every stderr line up to "c2sink ready".
    pub startup: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl C2sink {
    /// Starts `c2sink serve` on `config` and waits until it is ready.
    pub fn start(config: &Path) -> C2sink {
        let mut child = Command::new(env!("CARGO_BIN_EXE_c2sink"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "c2sink=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn c2sink");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[c2sink] {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut s = C2sink {
            child,
            dns: "0.0.0.0:0".parse().expect("addr"),
            admin: None,
            config: config.to_path_buf(),
            startup: Vec::new(),
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = s
                .lines
                .recv_timeout(left)
                .expect("c2sink did not become ready");
            if let Some(rest) = line.split("listening on ").nth(1)
                && s.dns.port() == 0
                && !line.contains("admin")
            {
                s.dns = rest
                    .split_whitespace()
                    .next()
                    .expect("addr")
                    .parse()
                    .expect("addr");
            }
            if let Some(rest) = line.split("admin listening on http://").nth(1) {
                s.admin = Some(
                    rest.split(['/', ' '])
                        .next()
                        .expect("addr")
                        .parse()
                        .expect("admin addr"),
                );
            }
            let ready = line.contains("c2sink ready");
            s.startup.push(line);
            if ready {
                return s;
            }
        }
    }

    /// The address logged as `listening on ADDR (kind)`.
    pub fn listening(&self, kind: &str) -> Option<SocketAddr> {
        let tail = format!(" ({kind})");
        self.startup.iter().find_map(|l| {
            let rest = l.split("listening on ").nth(1)?;
            rest.strip_suffix(&tail)?.trim().parse().ok()
        })
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Stops the process for good (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for C2sink {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback upstream answering A questions with 192.0.2.1 (TTL 300) over UDP and TCP; names starting
/// with `blackhole.` get no answer at all.
pub struct Upstream {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let addr = udp.local_addr().expect("addr");
        let tcp = TcpListener::bind(addr).expect("tcp on same port");
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let (q, st) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, src)) = udp.recv_from(&mut buf) {
                    q.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = upstream_reply(&buf[..n]) {
                        let _ = udp.send_to(&r, src);
                    }
                }
            }
        });
        tcp.set_nonblocking(true).expect("nonblocking");
        let (q, st) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        while let Some(msg) = read_framed(&mut s) {
                            q.fetch_add(1, Ordering::Relaxed);
                            if let Some(r) = upstream_reply(&msg) {
                                let _ = write_framed(&mut s, &r);
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Upstream {
            addr,
            queries,
            stop,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Length of the question section of a query (name + type + class), if well formed.
fn question_len(msg: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let l = usize::from(*msg.get(i)?);
        i += 1;
        if l == 0 {
            break;
        }
        i += l;
    }
    (i + 4 <= msg.len()).then_some(i + 4 - 12)
}

pub fn upstream_reply(q: &[u8]) -> Option<Vec<u8>> {
    let ql = question_len(q)?;
    if q.get(12..22) == Some(b"\x09blackhole") {
        return None;
    }
    let qtype = u16::from_be_bytes([q[12 + ql - 4], q[12 + ql - 3]]);
    let mut r = q[..12 + ql].to_vec();
    r[2] = 0x80 | (q[2] & 0x01);
    r[3] = 0x80;
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if qtype == 1 {
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
    }
    Some(r)
}

pub fn read_framed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut l = [0u8; 2];
    s.read_exact(&mut l).ok()?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut m).ok()?;
    Some(m)
}

pub fn write_framed(s: &mut TcpStream, m: &[u8]) -> std::io::Result<()> {
    let mut out = (m.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(m);
    s.write_all(&out)
}

/// A plain query for `name`/`qtype` with ID `id`, RD set, no EDNS.
pub fn query_bytes(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// Asks `server` over UDP and returns the parsed answer.
pub fn ask_udp(server: SocketAddr, name: &str, qtype: u16) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let id = rand_id();
    s.send_to(&query_bytes(id, name, qtype), server)
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).expect("answer over udp");
    let m = Message::from_vec(&buf[..n]).expect("parsable answer");
    assert_eq!(m.metadata.id, id);
    m
}

/// Asks `server` over TCP and returns the parsed answer.
pub fn ask_tcp(server: SocketAddr, name: &str, qtype: u16) -> Message {
    let mut s = TcpStream::connect(server).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let id = rand_id();
    write_framed(&mut s, &query_bytes(id, name, qtype)).expect("send");
    let m = Message::from_vec(&read_framed(&mut s).expect("answer over tcp")).expect("parsable");
    assert_eq!(m.metadata.id, id);
    m
}

fn rand_id() -> u16 {
    static N: AtomicUsize = AtomicUsize::new(1);
    (N.fetch_add(7919, Ordering::Relaxed) & 0xffff) as u16
}

/// Runs the c2sink binary with `args`; returns (exit code, stdout, stderr).
pub fn run_c2sink(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_c2sink"))
        .args(args)
        .output()
        .expect("run c2sink");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A minimal config: listen, upstreams, one block list; `extra` is appended verbatim.
pub fn config(dir: &TempDir, listen: &str, upstreams: &[SocketAddr], extra: &str) -> PathBuf {
    dir.write("c2.txt", "evil.example\nc2.test\n");
    let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        "[server]\nlisten = [\"{listen}\"]\nudp_sockets = 1\n\n[upstream]\nservers = [{}]\ntimeout_ms = 300\n\n\
         [[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n\n[log]\nevents = \"events.jsonl\"\n{extra}",
        ups.join(", ")
    );
    dir.write("c2sink.toml", &text)
}
