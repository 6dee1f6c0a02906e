//! Synthetic domain lists for benchmarks and the memory probe: realistic lengths, no downloads.

use std::io::Write;
use std::path::Path;

/// A small deterministic generator (SplitMix64), so runs are comparable.
pub struct Names(u64);

const TLDS: &[&str] = &[
    "com", "net", "org", "xyz", "info", "ru", "top", "io", "cn", "de",
];

impl Names {
    /// Names seeded with `seed`; the same seed gives the same names.
    pub fn new(seed: u64) -> Names {
        Names(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn label(&mut self, out: &mut String, min: u64, span: u64) {
        let len = min + self.next() % span;
        for _ in 0..len {
            out.push((b'a' + (self.next() % 26) as u8) as char);
        }
    }

    /// Writes the next name (like threat feeds: 8-18 letter label, a TLD, a third of them one label deeper).
    pub fn push(&mut self, out: &mut String) {
        if self.next().is_multiple_of(3) {
            self.label(out, 3, 6);
            out.push('.');
        }
        self.label(out, 8, 11);
        out.push('.');
        out.push_str(TLDS[(self.next() % TLDS.len() as u64) as usize]);
    }
}

/// Writes `n` synthetic names (seed `seed`), one per line, to `path`.
pub fn write_list(path: &Path, n: usize, seed: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut names = Names::new(seed);
    let mut line = String::with_capacity(64);
    for _ in 0..n {
        line.clear();
        names.push(&mut line);
        line.push('\n');
        f.write_all(line.as_bytes())?;
    }
    f.flush()
}
