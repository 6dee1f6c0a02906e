//! Matcher cost on generated lists of 10^4 .. 3x10^6 domains: lookups (name and all parents) for listed and
//! unlisted names, and loading from a plain file. Memory is measured by bench/lists.sh.

use c2sink::blocklist::{List, Lists, synthetic};
use c2sink::config::{ListConfig, ListFormat};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SIZES: &[usize] = &[10_000, 100_000, 1_000_000, 3_000_000];

/// The sizes to run: all under `cargo bench`, the smallest under `cargo test --all-targets` (a smoke test).
fn sizes() -> &'static [usize] {
    if std::env::args().any(|a| a == "--bench") {
        SIZES
    } else {
        &SIZES[..1]
    }
}

fn config(path: &Path) -> ListConfig {
    ListConfig {
        format: ListFormat::Domains,
        ..ListConfig::local("bench".into(), path.to_path_buf())
    }
}

fn list_file(n: usize) -> PathBuf {
    let dir = std::env::temp_dir().join("c2sink-bench");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(format!("list-{n}.txt"));
    if !path.exists() {
        synthetic::write_list(&path, n, 1).expect("write list");
    }
    path
}

/// 4096 query names: subdomains of listed names (hits) or of names from another seed (misses).
fn queries(n: usize, hit: bool) -> Vec<String> {
    let mut names = synthetic::Names::new(if hit { 1 } else { 2 });
    let step = (n / 4096).max(1);
    let mut out = Vec::new();
    for i in 0..n {
        let mut s = String::from("www.");
        names.push(&mut s);
        if i % step == 0 && out.len() < 4096 {
            out.push(s);
        }
    }
    out
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    g.measurement_time(Duration::from_secs(2));
    for &n in sizes() {
        let path = list_file(n);
        let list = List::load(&config(&path), &path).expect("load");
        let lists = Lists::new(vec![Arc::new(list)]);
        for hit in [true, false] {
            let names = queries(n, hit);
            let label = if hit { "hit" } else { "miss" };
            g.bench_with_input(BenchmarkId::new(label, n), &names, |b, names| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % names.len();
                    black_box(lists.check(black_box(&names[i])).is_some())
                })
            });
        }
    }
    g.finish();
}

fn loading(c: &mut Criterion) {
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for &n in &sizes()[..sizes().len().min(3)] {
        let path = list_file(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| List::load(&config(&path), &path).expect("load").len())
        });
    }
    g.finish();
}

criterion_group!(benches, lookups, loading);
criterion_main!(benches);
