//! Measures one generated list of N domains: load time, resident memory added, lookup cost, and the peak
//! while a reload builds a second copy beside the first. Used by bench/lists.sh. Times are this thread's CPU
//! time (from /proc/thread-self/schedstat), so that a busy machine does not inflate them.
//!
//! `cargo run --release --example list_probe -- 1000000`
//! `cargo run --release --example list_probe -- 1000000 --write PATH` only writes the list to PATH.

use c2sink::blocklist::{List, Lists, synthetic};
use c2sink::config::{ListConfig, ListFormat};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A field of /proc/self/status in kB.
fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time this thread has run, in ns (from the scheduler), so that figures hold on a busy machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Query names back to back in one buffer, read in order: like a DNS query, the name being looked up is in
/// cache; only the tables are not (a `Vec<String>` of 200k names would add a cache miss per name).
struct Queries {
    text: String,
    ends: Vec<usize>,
}

impl Queries {
    fn new() -> Queries {
        Queries {
            text: String::new(),
            ends: Vec::new(),
        }
    }

    fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Median of per-lookup nanoseconds over rounds of lookups of every name.
fn median_ns(lists: &Lists, names: &Queries, want_hit: bool) -> f64 {
    let mut rounds = Vec::new();
    // Rounds of ~500k lookups: long enough for the scheduler's CPU clock to be exact.
    let reps = (500_000 / names.len()).max(1);
    for _ in 0..11 {
        let t = cpu_ns();
        let mut hits = 0usize;
        for _ in 0..reps {
            let mut start = 0;
            for &end in &names.ends {
                let n = &names.text[start..end];
                start = end;
                hits += usize::from(black_box(lists.check(black_box(n))).is_some());
            }
        }
        let per = (cpu_ns() - t) as f64 / (names.len() * reps) as f64;
        assert_eq!(hits == names.len() * reps, want_hit, "hits {hits}");
        rounds.push(per);
    }
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write") {
        let out = args.get(i + 1).expect("--write PATH");
        synthetic::write_list(std::path::Path::new(out), n, 1).expect("write list");
        return;
    }
    let dir = std::env::temp_dir().join(format!("c2sink-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path: PathBuf = dir.join("list.txt");
    synthetic::write_list(&path, n, 1).expect("write list");
    let file_mb = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let cfg = ListConfig {
        format: ListFormat::Domains,
        ..ListConfig::local("probe".into(), path.clone())
    };

    let rss0 = status_kb("VmRSS:");
    let (t, c) = (Instant::now(), cpu_ns());
    let list = List::load(&cfg, &path).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    let load_cpu = (cpu_ns() - c) as f64 / 1e9;
    let rss1 = status_kb("VmRSS:");
    let entries = list.len();
    let table_mb = list.heap_bytes() as f64 / 1048576.0;
    let lists = Lists::new(vec![Arc::new(list)]);

    // A reload: the new list is built while the old one still serves, then swapped in.
    let _ = std::fs::write("/proc/self/clear_refs", "5"); // resets VmHWM
    let t = Instant::now();
    let fresh = List::load(&cfg, &path).expect("reload");
    let reload_s = t.elapsed().as_secs_f64();
    let lists = {
        let new = Lists::new(vec![Arc::new(fresh)]);
        drop(lists);
        new
    };
    let hwm = status_kb("VmHWM:");
    let rss2 = status_kb("VmRSS:");

    let sample = n.min(200_000);
    let mut names = synthetic::Names::new(1);
    let mut hits = Queries::new();
    let mut s = String::new();
    for i in 0..n {
        s.clear();
        s.push_str("www.");
        names.push(&mut s);
        if i % (n / sample).max(1) == 0 && hits.len() < sample {
            hits.push(&s);
        }
    }
    let mut other = synthetic::Names::new(2);
    let mut misses = Queries::new();
    for _ in 0..sample {
        s.clear();
        s.push_str("www.");
        other.push(&mut s);
        misses.push(&s);
    }
    let hit_ns = median_ns(&lists, &hits, true);
    let miss_ns = median_ns(&lists, &misses, false);

    println!(
        "{n:>8} domains ({entries} unique, {file_mb:.1} MB file): load {load_cpu:.3} s cpu ({load_s:.3} s wall), RSS added {:.1} MB \
         (tables {table_mb:.1} MB), lookup {hit_ns:.0} ns hit / {miss_ns:.0} ns miss (median), \
         reload {reload_s:.3} s peak {:.1} MB = {:.2}x of {:.1} MB steady",
        mb(rss1.saturating_sub(rss0)),
        mb(hwm),
        hwm as f64 / rss1.max(1) as f64,
        mb(rss1),
    );
    let _ = rss2;
    let _ = std::fs::remove_dir_all(&dir);
}
