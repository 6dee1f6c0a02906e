//! The real c2sink binary, started on loopback with a config written for the test, its stderr collected.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{NOERROR, TYPE_A, parse, tcp_ask, tcp_from, udp_ask, udp_from};
use super::raw::query;
use super::upstream::Upstream;
use super::{BLOCKED, TempDir, bin};

/// The environment `start_file`, `start_in` and lists tests run c2sink with (the log level from RUST_LOG).
pub const INFO_ENV: &[(&str, &str)] = &[("RUST_LOG", "c2sink=info"), ("NO_COLOR", "1")];

/// A running c2sink process.
pub struct C2sink {
    child: Option<Child>,
    /// Plain DNS listen addresses (`listening on ADDR (udp xN, tcp)`), in log order.
    pub addrs: Vec<SocketAddr>,
    /// Every `listening on ADDR (KIND)` line: (address, kind), e.g. "dot", "doh".
    pub listeners: Vec<(SocketAddr, String)>,
    /// The address of `admin listening on http://ADDR/`.
    pub admin: Option<SocketAddr>,
    /// Addresses of `sinkhole host listening on ADDR (tcp)`.
    pub sinkhole_hosts: Vec<SocketAddr>,
    /// The config file it runs on.
    pub config: PathBuf,
    /// Every stderr line up to "c2sink ready".
    pub startup: Vec<String>,
    folder: PathBuf,
    _dir: Option<TempDir>,
    _upstream: Option<Upstream>,
    stderr: Arc<Mutex<Vec<String>>>,
    cursor: Mutex<usize>,
    reader: Option<JoinHandle<()>>,
}

/// The address after `marker` in `line`, up to a space or '/'.
fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    rest.split([' ', '/']).next()?.parse().ok()
}

impl C2sink {
    /// Writes `config` (and the shipped 3CX list as 3cx.txt, plus `files`) to a new temp dir and starts c2sink
    /// with RUST_LOG unset (the config's `[log] level` applies).
    pub fn start(config: &str, files: &[(&str, &str)]) -> C2sink {
        let dir = TempDir::new("it");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("blocklists/3cx.txt"),
            dir.join("3cx.txt"),
        )
        .expect("copy list");
        for (name, text) in files {
            dir.write(name, text);
        }
        let cfg = dir.write("c2sink.toml", config);
        let mut c = Self::launch(&cfg, &[]);
        c._dir = Some(dir);
        c
    }

    /// A small server: one 127.0.0.1 listener, one UDP socket, the list `list.txt` blocking [`BLOCKED`],
    /// level info; `server_extra` goes into `[server]`, `extra` at the end.
    pub fn start_small(
        upstreams: &[SocketAddr],
        timeout_ms: u64,
        server_extra: &str,
        extra: &str,
    ) -> C2sink {
        Self::start(
            &small_config(upstreams, timeout_ms, server_extra, extra),
            &[("list.txt", &format!("# test list\n{BLOCKED}\n"))],
        )
    }

    /// Starts c2sink on an existing config file with RUST_LOG=c2sink=info.
    pub fn start_file(config: &Path) -> C2sink {
        Self::launch(config, INFO_ENV)
    }

    /// Writes `dir/c2sink.toml` (one listener, an upstream answering A with 192.0.2.1 TTL 60 kept alive with
    /// the server, the list `dir/list.txt` with `list`, then `tail`) and starts c2sink with RUST_LOG info.
    pub fn start_in(dir: &Path, list: &str, tail: &str) -> C2sink {
        let up = Upstream::answering_a(Ipv4Addr::new(192, 0, 2, 1), 60);
        std::fs::write(dir.join("list.txt"), list).expect("write list");
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{}\"]\n\
             timeout_ms = {UPSTREAM_TIMEOUT_MS}\n[[blocklists]]\nname = \"3cx\"\npath = \"list.txt\"\n{tail}\n",
            up.addr
        );
        let path = dir.join("c2sink.toml");
        std::fs::write(&path, cfg).expect("write config");
        Self::launch(&path, INFO_ENV).keeping(up)
    }

    /// Starts `c2sink serve --config CONFIG` (RUST_LOG removed, then `env` set) and waits for "c2sink ready",
    /// collecting the addresses it logs.
    pub fn launch(config: &Path, env: &[(&str, &str)]) -> C2sink {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn c2sink");
        let err = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[c2sink] {line}");
                keep.lock().expect("lock").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut c = C2sink {
            child: Some(child),
            addrs: Vec::new(),
            listeners: Vec::new(),
            admin: None,
            sinkhole_hosts: Vec::new(),
            config: config.to_path_buf(),
            startup: Vec::new(),
            folder: config.parent().expect("config folder").to_path_buf(),
            _dir: None,
            _upstream: None,
            stderr,
            cursor: Mutex::new(0),
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                c.kill();
                panic!("c2sink did not become ready:\n{}", c.log());
            };
            if let Some(a) = addr_after(&line, "admin listening on http://") {
                c.admin = Some(a);
            } else if let Some(a) = addr_after(&line, "sinkhole host listening on ") {
                c.sinkhole_hosts.push(a);
            } else if let Some(a) = addr_after(&line, "listening on ") {
                let kind = line
                    .rsplit_once(" (")
                    .map(|(_, k)| k.trim_end_matches(')').to_string())
                    .unwrap_or_default();
                if kind.starts_with("udp") {
                    c.addrs.push(a);
                }
                c.listeners.push((a, kind));
            }
            let ready = line.contains("c2sink ready");
            c.startup.push(line);
            if ready {
                *c.cursor.lock().expect("lock") = c.startup.len();
                return c;
            }
        }
    }

    /// Keeps `up` running as long as this server.
    pub fn keeping(mut self, up: Upstream) -> C2sink {
        self._upstream = Some(up);
        self
    }

    /// The first plain DNS listen address.
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

    /// The address logged as `listening on ADDR (kind)`.
    pub fn listening(&self, kind: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(_, k)| k == kind)
            .map(|(a, _)| *a)
    }

    /// The folder of the config file.
    pub fn dir(&self) -> &Path {
        &self.folder
    }

    /// Path of a file in the server's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.folder.join(name)
    }

    /// Process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The block events written so far, parsed (waits up to 15 s for `want` lines: the writer runs at low priority).
    pub fn events(&self, want: usize) -> Vec<serde_json::Value> {
        let parsed = || -> Vec<serde_json::Value> {
            self.event_lines()
                .iter()
                .map(|l| serde_json::from_str(l).expect("event line is JSON"))
                .collect()
        };
        super::poll(super::PATIENCE, Duration::from_millis(20), parsed, |l| {
            l.len() >= want
        })
    }

    /// The block event lines written so far, as text.
    pub fn event_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Operational log lines so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("lock").clone()
    }

    /// The operational log so far, one string.
    pub fn log(&self) -> String {
        self.stderr().join("\n")
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let seen = || self.log().contains(needle);
        super::poll(within, Duration::from_millis(20), seen, |&seen| seen)
    }

    /// Waits until the log has `n` lines containing `needle`; panics with the log after 15 s.
    pub fn wait_log_count(&self, needle: &str, n: usize) {
        let count = || self.stderr().iter().filter(|l| l.contains(needle)).count();
        let count = super::poll(super::PATIENCE, Duration::from_millis(50), count, |&c| {
            c >= n
        });
        assert!(
            count >= n,
            "log never had {n} x {needle:?}:\n{}",
            self.log()
        );
    }

    /// Waits for a line containing `needle` after the last line a previous call matched (or after startup).
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let next = || {
            let lines = self.stderr.lock().expect("lock");
            let mut cursor = self.cursor.lock().expect("lock");
            let i = lines[*cursor..].iter().position(|l| l.contains(needle))?;
            *cursor += i + 1;
            Some(lines[*cursor - 1].clone())
        };
        super::poll(timeout, Duration::from_millis(20), next, Option::is_some)
    }

    /// Sends a signal ("HUP", "TERM") to the process; panics if `kill` fails.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Sends SIGTERM without waiting (nothing if it already exited).
    pub fn signal_term(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits (15 s, then SIGKILL) for exit; returns whether it exited successfully and the
    /// whole stderr.
    pub fn terminate(&mut self) -> (bool, String) {
        let Some(mut child) = self.child.take() else {
            return (false, String::new());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exit = || child.try_wait().ok().flatten();
        let ok = match super::poll(
            super::PATIENCE,
            Duration::from_millis(20),
            exit,
            Option::is_some,
        ) {
            Some(st) => st.success(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (ok, self.log())
    }

    /// SIGTERM, asserts a clean exit (events flushed) and returns the whole stderr.
    pub fn stop(mut self) -> String {
        let (ok, log) = self.terminate();
        assert!(ok, "c2sink did not exit cleanly:\n{log}");
        log
    }

    /// Stops the process for good (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Asks over UDP from `from` (any 127.0.0.x); panics when no answer comes.
    pub fn udp(&self, from: &str, name: &str, qtype: u16) -> Vec<u8> {
        udp_from(self.addr(), from, name, qtype)
    }

    /// Asks over TCP from `from` (any 127.0.0.x); panics when no answer comes.
    pub fn tcp(&self, from: &str, name: &str, qtype: u16) -> Vec<u8> {
        tcp_from(self.addr(), from, name, qtype)
    }
}

impl Drop for C2sink {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The upstream timeout (`timeout_ms`) of the test configs: long enough that an upstream that answers is
/// never taken for a silent one on a slow, loaded machine. Tests of what a timeout does set a short one
/// ([`config_timing_out`], [`C2sink::start_small`]).
pub const UPSTREAM_TIMEOUT_MS: u64 = 2000;

/// A config for tests: loopback listeners (IPv4 and IPv6) on free ports, the given upstreams (timeout
/// [`UPSTREAM_TIMEOUT_MS`]), the shipped 3CX list (copied in as `3cx.txt` by [`C2sink::start`]), events to
/// `events.jsonl`, level debug; `extra` is appended (more tables).
pub fn config(upstreams: &[SocketAddr], extra: &str) -> String {
    config_timing_out(upstreams, UPSTREAM_TIMEOUT_MS, extra)
}

/// [`config`] with c2sink giving up on an upstream after `timeout_ms`.
pub fn config_timing_out(upstreams: &[SocketAddr], timeout_ms: u64, extra: &str) -> String {
    let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"[server]
listen = ["127.0.0.1:0", "[::1]:0"]
udp_sockets = 2

[upstream]
servers = [{}]
timeout_ms = {timeout_ms}

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

/// The config of [`C2sink::start_small`].
pub fn small_config(
    upstreams: &[SocketAddr],
    timeout_ms: u64,
    server_extra: &str,
    extra: &str,
) -> String {
    let ups: Vec<String> = upstreams.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n{server_extra}\n\
         [upstream]\nservers = [{}]\ntimeout_ms = {timeout_ms}\n\
         [[blocklists]]\nname = \"c2\"\npath = \"list.txt\"\n\
         [log]\nevents = \"events.jsonl\"\nlevel = \"info\"\n{extra}\n",
        ups.join(", ")
    )
}

/// Writes a minimal config into `dir`: `listen`, upstreams (timeout [`UPSTREAM_TIMEOUT_MS`]), the list
/// `c2.txt` blocking evil.example and c2.test, events to events.jsonl; `extra` is appended verbatim. Returns
/// its path.
pub fn config_file(dir: &TempDir, listen: &str, upstreams: &[SocketAddr], extra: &str) -> PathBuf {
    dir.write("c2.txt", "evil.example\nc2.test\n");
    let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        "[server]\nlisten = [\"{listen}\"]\nudp_sockets = 1\n\n[upstream]\nservers = [{}]\ntimeout_ms = {UPSTREAM_TIMEOUT_MS}\n\n\
         [[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n\n[log]\nevents = \"events.jsonl\"\n{extra}",
        ups.join(", ")
    );
    dir.write("c2sink.toml", &text)
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

/// Asks a fresh forwarded name over UDP and TCP and checks the upstream's answer comes back.
pub fn assert_still_serving(c: &C2sink, tag: &str, want: Ipv4Addr) {
    for (i, tcp) in [(0u16, false), (1, true)] {
        let name = format!("alive-{tag}-{i}.example");
        let q = query(0x7a00 + i, &name, TYPE_A);
        let r = if tcp {
            tcp_ask(c.addr(), &q)
        } else {
            udp_ask(c.addr(), &q)
        };
        let r = r.unwrap_or_else(|| panic!("no answer to {name} (tcp={tcp}) after {tag}"));
        let r = parse(&r).expect("well-formed answer");
        assert_eq!(r.rcode, NOERROR, "{name} after {tag}");
        assert_eq!(r.addrs(), vec![want], "{name} after {tag}");
    }
}
