//! List files: the whole load path (line reading with its caps, comments, normalization, IDN) from a file of
//! arbitrary bytes, in every format (and for address lists). For the plain domain format, every entry loaded
//! must be found again by the matcher, with its subdomains.
#![no_main]

use c2sink::blocklist::{List, normalize_domain};
use c2sink::config::{ListConfig, ListFormat, ListKind};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("c2sink-fuzz-list-{}.txt", std::process::id()));
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    let cfg = |format, kind| {
        let mut c = ListConfig::local("fuzz".into(), path.clone());
        c.format = format;
        c.kind = kind;
        c
    };
    // Every other format, and address lists: they must load or fail cleanly, never panic.
    for format in [
        ListFormat::Auto,
        ListFormat::Hosts,
        ListFormat::Adblock,
        ListFormat::Rpz,
    ] {
        let _ = List::load(&cfg(format, ListKind::Block), &path);
    }
    let _ = List::load(&cfg(ListFormat::Domains, ListKind::Ip), &path);
    let Ok(list) = List::load(&cfg(ListFormat::Domains, ListKind::Block), &path) else {
        return;
    };
    // The oracle reads lines the simple way; it checks only inputs where that matches the loader's rules
    // (local names such as `localhost` are skipped by design).
    if list.counts.skipped > 0 {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().filter(|l| l.len() < 4000) {
        let entry = line.split('#').next().unwrap_or("").trim();
        // `*.name` wildcards cover only names below `name`: not what this oracle checks.
        if entry.is_empty() || entry.split_whitespace().count() > 1 || entry.starts_with('*') {
            continue;
        }
        if let Ok(name) = normalize_domain(entry) {
            assert!(
                list.block.find_suffix(&name).is_some(),
                "{name} loaded but not found"
            );
            let sub = format!("x.{name}");
            assert!(list.block.find_suffix(&sub).is_some(), "{sub} not covered");
        }
    }
});
