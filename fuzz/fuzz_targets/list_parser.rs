//! List files: the whole load path (line reading with its caps, comments, normalization, IDN) from a file of
//! arbitrary bytes. Every entry loaded must be found again by the matcher, with its subdomains.
#![no_main]

use c2sink::blocklist::{List, normalize_domain};
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
    let Ok(list) = List::load("fuzz", &path, None) else {
        return;
    };
    // The oracle reads lines the simple way; it checks only inputs where that matches the loader's rules.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().filter(|l| l.len() < 4000) {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() || entry.split_whitespace().count() > 1 {
            continue;
        }
        if let Ok(name) = normalize_domain(entry) {
            assert!(list.domains.find_suffix(&name).is_some(), "{name} loaded but not found");
            let sub = format!("x.{name}");
            assert!(list.domains.find_suffix(&sub).is_some(), "{sub} not covered");
        }
    }
});
