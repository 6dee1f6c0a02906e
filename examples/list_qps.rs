//! DNS throughput of the real c2sink with only the 26-entry 3CX list vs with a generated 1,000,000-domain list
//! added, over loopback: a small upstream, c2sink, and a closed-loop UDP load (64 sockets, one query in flight
//! each). The mix is 90 % unlisted names (answered from c2sink's cache after one upstream trip) and 10 % names
//! on the 3CX list. Rounds alternate between the two setups so that a busy machine hurts both alike.
//!
//! `cargo run --release --example list_qps -- [C2SINK_BINARY] [SECONDS] [ROUNDS]` (bench/lists.sh runs it).

#[path = "../tests/common/raw.rs"]
mod raw;

use c2sink::blocklist::synthetic;
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A loopback upstream answering every query with NOERROR and one A record.
fn upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind upstream");
    let addr = sock.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let Some(r) = raw::fixed_a(&buf[..n], Ipv4Addr::new(203, 0, 113, 9), 3600, false)
            else {
                continue;
            };
            let _ = sock.send_to(&r, from);
        }
    });
    addr
}

fn query(id: u16, name: &str) -> Vec<u8> {
    raw::query(id, name, 1)
}

/// Starts c2sink on `config`, returns (child, address).
fn start(bin: &str, config: &std::path::Path) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start c2sink");
    let stderr = child.stderr.take().expect("stderr");
    let mut addr = None;
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.expect("log line");
        if let Some(rest) = line.split("listening on ").nth(1) {
            addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if line.contains("c2sink ready") {
            break;
        }
    }
    (child, addr.expect("listening address"))
}

/// Queries per second answered over `secs` seconds.
fn load(addr: SocketAddr, names: &Arc<Vec<String>>, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (names, stop, done) = (names.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let socks: Vec<UdpSocket> = (0..32)
                    .map(|_| {
                        let s = UdpSocket::bind("127.0.0.1:0").expect("client socket");
                        s.set_read_timeout(Some(Duration::from_secs(1)))
                            .expect("timeout");
                        s
                    })
                    .collect();
                let mut i = t * 7919;
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    for s in &socks {
                        i += 1;
                        let _ = s.send_to(&query(i as u16, &names[i % names.len()]), addr);
                    }
                    for s in &socks {
                        if s.recv(&mut buf).is_ok() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    for th in threads {
        let _ = th.join();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/release/c2sink".into());
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(6);
    let dir = std::env::temp_dir().join(format!("c2sink-qps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let c3x = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("blocklists/3cx.txt");
    synthetic::write_list(&dir.join("big.txt"), 1_000_000, 1).expect("write list");
    let up = upstream();
    let base = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 2\n[upstream]\nservers = [\"{up}\"]\n[log]\nlevel = \"info\"\n\
         [reload]\nwatch = false\n[[blocklists]]\nname = \"3cx\"\npath = \"{}\"\n",
        c3x.display()
    );
    std::fs::write(dir.join("small.toml"), &base).expect("config");
    std::fs::write(
        dir.join("big.toml"),
        format!("{base}[[blocklists]]\nname = \"big\"\npath = \"big.txt\"\n"),
    )
    .expect("config");
    // 900 unlisted names (misses in both setups) and 100 3CX names.
    let mut gen_names = synthetic::Names::new(7);
    let mut names: Vec<String> = (0..900)
        .map(|_| {
            let mut s = String::from("www.");
            gen_names.push(&mut s);
            s
        })
        .collect();
    let listed: Vec<String> = std::fs::read_to_string(&c3x)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    names.extend((0..100).map(|i| format!("x.{}", listed[i % listed.len()])));
    let names = Arc::new(names);

    let mut results = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let which = round % 2;
        let cfg = dir.join(if which == 0 { "small.toml" } else { "big.toml" });
        let (mut child, addr) = start(&bin, &cfg);
        load(addr, &names, 1); // warm the cache
        let qps = load(addr, &names, secs);
        let _ = child.kill();
        let _ = child.wait();
        results[which].push(qps);
        println!(
            "round {}: {:>22}: {qps:>8.0} qps",
            round + 1,
            if which == 0 {
                "3cx (26 entries)"
            } else {
                "3cx + 1,000,000 list"
            }
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{lo:.0}..{hi:.0}")
    };
    let (a, b) = (mean(&results[0]), mean(&results[1]));
    println!(
        "mean: 3cx {a:.0} qps ({}), with 1M list {b:.0} qps ({}): {:+.1} %",
        spread(&results[0]),
        spread(&results[1]),
        (b - a) / a * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
