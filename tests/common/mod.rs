//! The one test harness: a programmable loopback upstream DNS server (`upstream`), the real c2sink binary
//! (`server`), DNS clients (`client`), hand-built messages (`raw`, shared with the examples), and small file helpers here.
#![allow(dead_code, unused_imports)]

mod client;
mod pki;
mod raw;
mod server;
mod upstream;

pub use client::*;
pub use pki::*;
pub use raw::*;
pub use server::*;
pub use upstream::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The name [`C2sink::start_small`]'s list blocks (with its subdomains).
pub const BLOCKED: &str = "evil-c2.example";

/// Path of the c2sink binary Cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_c2sink")
}

/// A fresh folder under the system temp dir, removed on drop; derefs to its path.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new folder whose name starts with `c2sink-TAG-`.
    pub fn new(tag: &str) -> TempDir {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("c2sink-{tag}-"))
                .tempdir()
                .expect("temp dir"),
        )
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `text` to `name` in the folder and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// Replaces a file the way editors and feed updaters do: write aside, then rename over it.
    pub fn replace(&self, name: &str, text: &str) {
        let tmp = self.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.path().join(name)).expect("rename");
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.path()
    }
}

/// A fresh folder for one test (see [`TempDir`]).
pub fn tempdir(tag: &str) -> TempDir {
    TempDir::new(tag)
}

/// How long a test waits for something it is sure to see (an effect of a background thread, a reload): long
/// enough for a slow, loaded machine, and only ever spent in full by a test that is failing anyway.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The one wait loop: what tests wait for (a reload, the event writer, an upstream probe) happens
/// asynchronously. Calls `get` every `every` until `done` holds of its result or `within` has passed, and
/// returns the last result either way, so that the caller's assert shows what was seen.
pub fn poll<T>(
    within: Duration,
    every: Duration,
    mut get: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let got = get();
        if done(&got) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(every);
    }
}

/// Polls `ok` (every 10 ms) until it holds; panics saying what never happened after [`PATIENCE`].
pub fn poll_until(what: &str, ok: impl FnMut() -> bool) {
    let held = poll(PATIENCE, Duration::from_millis(10), ok, |&held| held);
    assert!(held, "timed out waiting for {what}");
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = u.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
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

/// Runs the c2sink binary with `args`; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).output().expect("run c2sink");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The JSON lines of a file (none if it is missing).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// Runs a command-line DNS tool and returns its stdout.
pub fn run_tool(tool: &str, args: &[String]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} must be installed (scripts/install-test-tools.sh): {e}")
    });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Counts answers per name (test convenience).
pub fn tally<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for n in names {
        *m.entry(n.to_string()).or_insert(0) += 1;
    }
    m
}
