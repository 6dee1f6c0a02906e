//! Small helpers for the integration tests of client attribution, logs, report and hunt: a loopback upstream,
//! the real c2sink binary, and a DNS client that can speak from any 127.0.0.x address.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fresh folder for one test.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("c2sink-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A query for `name` of type `qtype` with RD set.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

/// Rcode and answer count of a response.
pub fn rcode_and_answers(resp: &[u8]) -> (u8, u16) {
    (resp[3] & 0x0f, u16::from_be_bytes([resp[6], resp[7]]))
}

/// A loopback upstream that answers every A question with 192.0.2.1 and everything else with NODATA.
pub fn upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, src)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            if n < 12 {
                continue;
            }
            let mut pos = 12;
            while pos < n && q[pos] != 0 {
                pos += 1 + q[pos] as usize;
            }
            let end = pos + 5;
            if end > n {
                continue;
            }
            let qtype = u16::from_be_bytes([q[pos + 1], q[pos + 2]]);
            let mut r = Vec::new();
            r.extend_from_slice(&q[0..2]);
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(qtype == 1), 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..end]);
            if qtype == 1 {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
            }
            let _ = sock.send_to(&r, src);
        }
    });
    addr
}

/// The real c2sink binary, serving on a free loopback port.
pub struct C2sink {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl C2sink {
    /// Writes `dir/c2sink.toml` (server, upstream, the list `dir/list.txt`, then `tail`) and starts c2sink.
    pub fn start(dir: &Path, list: &str, tail: &str) -> C2sink {
        let up = upstream();
        std::fs::write(dir.join("list.txt"), list).unwrap();
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{up}\"]\ntimeout_ms = 500\n\
             [[blocklists]]\nname = \"3cx\"\npath = \"list.txt\"\n{tail}\n"
        );
        let path = dir.join("c2sink.toml");
        std::fs::write(&path, cfg).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_c2sink"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "c2sink=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on ") {
                    let a = line[i + 13..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let _ = tx.send(a);
                }
                let mut s = keep.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("c2sink did not start:\n{}", stderr.lock().unwrap());
            }
        };
        C2sink {
            child,
            addr,
            dir: dir.to_path_buf(),
            stderr,
        }
    }

    /// Asks over UDP from `from` (any 127.0.0.x); panics when no answer comes.
    pub fn udp(&self, from: &str, name: &str, qtype: u16) -> Vec<u8> {
        let ip: IpAddr = from.parse().unwrap();
        let s = UdpSocket::bind((ip, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let id = rand_id();
        s.send_to(&query(id, name, qtype), self.addr).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = s
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no answer for {name} from {from}: {e}"));
        assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), id);
        buf[..n].to_vec()
    }

    /// Asks over TCP from `from`.
    pub fn tcp(&self, from: &str, name: &str, qtype: u16) -> Vec<u8> {
        use socket2::{Domain, Socket, Type};
        let ip: IpAddr = from.parse().unwrap();
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(ip, 0).into()).unwrap();
        s.connect_timeout(&self.addr.into(), Duration::from_secs(3))
            .unwrap();
        let mut t: TcpStream = s.into();
        t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let q = query(rand_id(), name, qtype);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        t.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        t.read_exact(&mut len).unwrap();
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        t.read_exact(&mut r).unwrap();
        r
    }

    /// Sends a signal ("HUP", "TERM") to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Everything c2sink wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGTERM, then waits for a clean exit (events flushed).
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "c2sink exited with {st}:\n{}", self.stderr());
                break;
            }
            assert!(Instant::now() < until, "c2sink did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        self.stderr()
    }
}

impl Drop for C2sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static N: AtomicU16 = AtomicU16::new(1);
    N.fetch_add(7919, Ordering::Relaxed)
}

/// Runs the c2sink binary with `args` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_c2sink"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The JSON lines of a file.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}
