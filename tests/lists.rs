//! Lists over the wire: formats, allowlists, per-list actions and hot reload, against the real c2sink binary
//! and a real (tiny) upstream DNS server on loopback.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};
use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The address the test upstream gives to every A question.
const UPSTREAM_A: &str = "203.0.113.9";

/// A loopback DNS server answering every A question with [`UPSTREAM_A`] and other types with NODATA.
fn start_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind upstream");
    let addr = sock.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            for query in &q.queries {
                r.add_query(query.clone());
                if query.query_type() == RecordType::A {
                    let ip = UPSTREAM_A.parse().expect("ip");
                    r.add_answer(Record::from_rdata(
                        query.name().clone(),
                        60,
                        RData::A(A(ip)),
                    ));
                }
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
    addr
}

/// What came back for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    rcode: ResponseCode,
    addrs: Vec<String>,
}

fn reply(rcode: ResponseCode, addrs: &[&str]) -> Reply {
    Reply {
        rcode,
        addrs: addrs.iter().map(|s| s.to_string()).collect(),
    }
}

/// A running c2sink with its stderr collected.
struct C2sink {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

impl C2sink {
    /// Writes `config` (with `UPSTREAM` replaced) into `dir` and starts `c2sink serve` on it.
    fn start(dir: &Path, config: &str) -> C2sink {
        let upstream = start_upstream();
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{upstream}\"]\ntimeout_ms = 500\n\
             [cache]\nsize = 0\n{config}"
        );
        std::fs::write(dir.join("c2sink.toml"), text).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_c2sink"))
            .args(["serve", "--config"])
            .arg(dir.join("c2sink.toml"))
            .env("RUST_LOG", "c2sink=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start c2sink");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("c2sink did not start: {:?}", log.lock().unwrap());
            }
        };
        C2sink {
            child,
            addr,
            log,
            dir: dir.to_path_buf(),
        }
    }

    /// Asks one question over UDP (a few tries); `None` when nothing came back.
    fn ask(&self, name: &str, qtype: RecordType) -> Option<Reply> {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("client socket");
        sock.set_read_timeout(Some(Duration::from_millis(700)))
            .expect("timeout");
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        let bytes = m.to_vec().expect("encode");
        let mut buf = [0u8; 4096];
        for _ in 0..3 {
            sock.send_to(&bytes, self.addr).expect("send");
            while let Ok(n) = sock.recv(&mut buf) {
                let Ok(r) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if r.metadata.id != m.metadata.id
                    || r.metadata.message_type != MessageType::Response
                {
                    continue;
                }
                let addrs = r
                    .answers
                    .iter()
                    .filter_map(|rec| match &rec.data {
                        RData::A(a) => Some(a.0.to_string()),
                        RData::AAAA(a) => Some(a.0.to_string()),
                        _ => None,
                    })
                    .collect();
                return Some(Reply {
                    rcode: r.metadata.response_code,
                    addrs,
                });
            }
        }
        None
    }

    fn a(&self, name: &str) -> Reply {
        self.ask(name, RecordType::A)
            .unwrap_or_else(|| panic!("no answer for {name}"))
    }

    /// Waits until `name` gets `want` (a reload is asynchronous); panics with the log after 15 s.
    fn wait_for(&self, name: &str, want: &Reply) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.a(name);
            if &got == want {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{name}: still {got:?}, want {want:?}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the log has `n` lines containing `needle`.
    fn wait_log(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let count = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if count >= n {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "log never had {n} x {needle:?}:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -HUP failed");
    }

    /// Replaces a file the way editors and feed updaters do: write aside, then rename over it.
    fn replace(&self, name: &str, body: &str) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).expect("write");
        std::fs::rename(&tmp, self.dir.join(name)).expect("rename");
    }
}

impl Drop for C2sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("c2sink-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn forwarded() -> Reply {
    reply(ResponseCode::NoError, &[UPSTREAM_A])
}

#[test]
fn every_format_is_served_with_its_action() {
    let dir = tmp_dir("formats");
    std::fs::write(
        dir.join("hosts.txt"),
        "\u{feff}127.0.0.1 localhost\r\n0.0.0.0\tads.example  track.example # x\r\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("adblock.txt"),
        "[Adblock Plus 2.0]\n! c\n||adnet.example^\n@@||ok.adnet.example^\nexample.org##.banner\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("zone.rpz"),
        "$TTL 300\n$ORIGIN rpz.local.\n@ SOA ns.rpz.local. admin.rpz.local. ( 1 3600 600 86400 300 )\n  NS ns.rpz.local.\n\
         nx.example CNAME .\n*.nodata.example CNAME *.\nsink.example A 192.0.2.7\nsink.example A 192.0.2.8\n\
         drop.example CNAME rpz-drop.\n",
    )
    .unwrap();
    std::fs::write(dir.join("c2.txt"), "*.c2.example\nbücher.example\n").unwrap();
    let s = C2sink::start(
        &dir,
        r#"
[[blocklists]]
name = "hosts"
path = "hosts.txt"
action = "nxdomain"
[[blocklists]]
name = "ads"
path = "adblock.txt"
[[blocklists]]
name = "rpz"
path = "zone.rpz"
[[blocklists]]
name = "c2"
path = "c2.txt"
action = "address"
ipv4 = "192.0.2.55"
[sinkhole]
mode = "null"
"#,
    );
    // hosts: list action nxdomain; localhost is never blocked.
    assert_eq!(s.a("track.example"), reply(ResponseCode::NXDomain, &[]));
    assert_eq!(s.a("www.ads.example"), reply(ResponseCode::NXDomain, &[]));
    assert_eq!(s.a("localhost"), forwarded());
    // AdBlock: [sinkhole] mode null; the @@ exception is forwarded.
    assert_eq!(
        s.a("x.adnet.example"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
    assert_eq!(s.a("ok.adnet.example"), forwarded());
    // RPZ: per-rule actions.
    assert_eq!(s.a("nx.example"), reply(ResponseCode::NXDomain, &[]));
    assert_eq!(s.a("a.nx.example"), forwarded(), "RPZ owner is exact");
    assert_eq!(s.a("a.nodata.example"), reply(ResponseCode::NoError, &[]));
    assert_eq!(s.a("nodata.example"), forwarded(), "*.x does not cover x");
    let mut sink = s.a("sink.example");
    sink.addrs.sort();
    assert_eq!(
        sink,
        reply(ResponseCode::NoError, &["192.0.2.7", "192.0.2.8"])
    );
    assert_eq!(
        s.ask("sink.example", RecordType::AAAA),
        Some(reply(ResponseCode::NoError, &[]))
    );
    assert_eq!(
        s.ask("drop.example", RecordType::A),
        None,
        "rpz-drop: no answer"
    );
    // Wildcard and IDN in a plain list with its own address.
    assert_eq!(
        s.a("a.c2.example"),
        reply(ResponseCode::NoError, &["192.0.2.55"])
    );
    assert_eq!(s.a("c2.example"), forwarded());
    assert_eq!(
        s.a("xn--bcher-kva.example"),
        reply(ResponseCode::NoError, &["192.0.2.55"])
    );
}

#[test]
fn allow_list_beats_block_of_parent() {
    let dir = tmp_dir("allow");
    std::fs::write(dir.join("block.txt"), "example.com\n").unwrap();
    std::fs::write(dir.join("allow.txt"), "good.example.com\n").unwrap();
    let s = C2sink::start(
        &dir,
        "[[blocklists]]\nname = \"block\"\npath = \"block.txt\"\n\
         [[blocklists]]\nname = \"exceptions\"\npath = \"allow.txt\"\nkind = \"allow\"\n",
    );
    assert_eq!(s.a("good.example.com"), forwarded());
    assert_eq!(s.a("www.good.example.com"), forwarded());
    assert_eq!(
        s.a("bad.example.com"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
    assert_eq!(
        s.a("example.com"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
}

#[test]
fn changed_list_file_is_applied_without_restart() {
    let dir = tmp_dir("watch");
    std::fs::write(dir.join("l.txt"), "one.example\n").unwrap();
    let s = C2sink::start(
        &dir,
        "[reload]\ninterval_ms = 100\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\n",
    );
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    assert_eq!(s.a("one.example"), blocked);
    assert_eq!(s.a("two.example"), forwarded());
    // Atomic replace (rename over).
    s.replace("l.txt", "two.example\n");
    s.wait_for("two.example", &blocked);
    assert_eq!(s.a("one.example"), forwarded());
    // Truncate, then write in place.
    std::fs::write(dir.join("l.txt"), "").unwrap();
    std::fs::write(dir.join("l.txt"), "three.example\n").unwrap();
    s.wait_for("three.example", &blocked);
    // The config file changes too: a new list and a new sinkhole mode.
    std::fs::write(dir.join("m.txt"), "four.example\n").unwrap();
    let cfg = std::fs::read_to_string(dir.join("c2sink.toml")).unwrap();
    s.replace(
        "c2sink.toml",
        &format!(
            "{cfg}[[blocklists]]\nname = \"m\"\npath = \"m.txt\"\n[sinkhole]\nmode = \"nxdomain\"\n"
        ),
    );
    s.wait_for("four.example", &reply(ResponseCode::NXDomain, &[]));
    assert_eq!(s.a("three.example"), reply(ResponseCode::NXDomain, &[]));
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let dir = tmp_dir("hup");
    std::fs::write(dir.join("l.txt"), "one.example\n").unwrap();
    let s = C2sink::start(
        &dir,
        "[reload]\nwatch = false\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\n",
    );
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    s.replace("l.txt", "two.example\n");
    // Not watching: nothing changes until SIGHUP.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.a("two.example"), forwarded());
    s.hup();
    s.wait_log("reloaded", 1);
    assert_eq!(s.a("two.example"), blocked);
    assert_eq!(s.a("one.example"), forwarded());
    assert!(s.child.id() > 0, "still running");
}

#[test]
fn bad_update_keeps_the_old_lists() {
    let dir = tmp_dir("bad");
    std::fs::write(dir.join("l.txt"), "evil.example\n").unwrap();
    let s = C2sink::start(
        &dir,
        "[reload]\nwatch = false\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\nformat = \"domains\"\n",
    );
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    assert_eq!(s.a("evil.example"), blocked);
    // Garbage instead of a list.
    s.replace(
        "l.txt",
        "<html><body>502 Bad Gateway</body></html>\n<p>x y</p>\n",
    );
    s.hup();
    s.wait_log("reload failed", 1);
    assert_eq!(s.a("evil.example"), blocked);
    // The list file disappears.
    std::fs::remove_file(dir.join("l.txt")).unwrap();
    s.hup();
    s.wait_log("reload failed", 2);
    assert_eq!(s.a("evil.example"), blocked);
    // The config is broken.
    std::fs::write(dir.join("l.txt"), "other.example\n").unwrap();
    let cfg = std::fs::read_to_string(dir.join("c2sink.toml")).unwrap();
    s.replace(
        "c2sink.toml",
        &format!("{cfg}\n[sinkhole]\nmdoe = \"null\"\n"),
    );
    s.hup();
    s.wait_log("reload failed", 3);
    assert_eq!(s.a("evil.example"), blocked);
    assert_eq!(s.a("other.example"), forwarded());
    let log = s.log.lock().unwrap().join("\n");
    assert!(log.contains("no valid entries"), "{log}");
    assert!(log.contains("sinkhole.mdoe"), "{log}");
    // Fixed: the next reload applies.
    s.replace("c2sink.toml", &cfg);
    s.hup();
    s.wait_for("other.example", &blocked);
    assert_eq!(s.a("evil.example"), forwarded());
}

#[test]
fn queries_during_reloads_are_all_answered() {
    let dir = tmp_dir("load");
    let body: String = (0..50_000).map(|i| format!("d{i}.example\n")).collect();
    std::fs::write(dir.join("big.txt"), &body).unwrap();
    let s = Arc::new(C2sink::start(
        &dir,
        "[reload]\nwatch = false\n[[blocklists]]\nname = \"big\"\npath = \"big.txt\"\n",
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (s, stop, asked, wrong) = (s.clone(), stop.clone(), asked.clone(), wrong.clone());
            std::thread::spawn(move || {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    // d7 is in every version of the list; free.example in none.
                    let (name, want) = if i % 2 == 0 {
                        ("d7.example", reply(ResponseCode::NoError, &["0.0.0.0"]))
                    } else {
                        ("free.example", forwarded())
                    };
                    let got = s.ask(name, RecordType::A);
                    if got.as_ref() != Some(&want) {
                        wrong.lock().unwrap().push((name, got));
                    }
                    asked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for round in 1..=4 {
        let extra: String = (0..5_000)
            .map(|i| format!("r{round}-{i}.example\n"))
            .collect();
        s.replace("big.txt", &format!("{body}{extra}"));
        s.hup();
        s.wait_log("reloaded", round);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(asked.load(Ordering::Relaxed) > 20);
    assert!(
        wrong.lock().unwrap().is_empty(),
        "{:?}",
        wrong.lock().unwrap()
    );
    assert_eq!(
        s.a("r4-1.example"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
    assert_eq!(s.a("r3-1.example"), forwarded());
}
