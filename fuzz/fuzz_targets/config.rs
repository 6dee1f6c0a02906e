//! The config parser: any text gives a config or a list of problems naming the file, never a panic.
#![no_main]

use c2sink::admission::Admission;
use c2sink::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/nonexistent/fuzz/c2sink.toml")) {
        Ok(cfg) => {
            // A config that validates must build its admission rules.
            Admission::new(&cfg.server).expect("validated admission keys");
        }
        Err(e) => {
            assert!(!e.0.is_empty());
            assert!(e.to_string().contains("/nonexistent/fuzz/c2sink.toml"));
        }
    }
});
