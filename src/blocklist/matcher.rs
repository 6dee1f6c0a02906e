//! A compact set of domain names that answers "is this name, or a parent of it, listed?" without allocating.
//!
//! Names live back to back in one byte arena; a hash table holds only 4-byte indexes into it. A million
//! names cost about 30 MB, where a `HashSet<String>` costs twice that and hickory's store six times.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// A set of lower-case domain names with suffix lookup.
#[derive(Default)]
pub struct DomainSet {
    arena: Vec<u8>,
    /// End offset in `arena` of entry i; entry i starts at `ends[i - 1]` (or 0).
    ends: Vec<u32>,
    /// Source line of entry i, for provenance.
    lines: Vec<u32>,
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

/// A listed name that matched a query, with where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The listed name (the rule).
    pub rule: &'a str,
    /// Line of the list file it was read from (1-based; 0 when not from a file).
    pub line: u32,
}

impl DomainSet {
    /// An empty set sized for about `n` names.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        DomainSet {
            arena: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(n),
            lines: Vec::with_capacity(n),
            table: HashTable::with_capacity(n),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Number of names held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when no name is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn entry(&self, i: u32) -> &[u8] {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.arena[start..self.ends[i] as usize]
    }

    /// Adds a normalized name; returns false when it was already there (the first line is kept).
    pub fn insert(&mut self, name: &str, line: u32) -> bool {
        let bytes = name.as_bytes();
        let hash = self.hasher.hash_one(bytes);
        let Self {
            arena,
            ends,
            table,
            hasher,
            ..
        } = self;
        let entry_of = |i: u32| {
            let i = i as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            &arena[start..ends[i] as usize]
        };
        if table.find(hash, |&i| entry_of(i) == bytes).is_some() {
            return false;
        }
        let idx = ends.len() as u32;
        arena.extend_from_slice(bytes);
        ends.push(arena.len() as u32);
        self.lines.push(line);
        // Re-hash from the arena when the table grows.
        let (arena, ends) = (&self.arena, &self.ends);
        self.table.insert_unique(hash, idx, |&i| {
            let i = i as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            hasher.hash_one(&arena[start..ends[i] as usize])
        });
        true
    }

    /// Releases spare capacity once loading is done.
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.lines.shrink_to_fit();
        let (arena, ends, hasher) = (&self.arena, &self.ends, &self.hasher);
        self.table.shrink_to_fit(|&i| {
            let i = i as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            hasher.hash_one(&arena[start..ends[i] as usize])
        });
    }

    /// Exact lookup of one normalized name.
    pub fn get(&self, name: &str) -> Option<Hit<'_>> {
        let bytes = name.as_bytes();
        let hash = self.hasher.hash_one(bytes);
        let &i = self.table.find(hash, |&i| self.entry(i) == bytes)?;
        Some(self.hit(i))
    }

    fn hit(&self, i: u32) -> Hit<'_> {
        // Entries are inserted from &str, so they are valid UTF-8.
        let rule = std::str::from_utf8(self.entry(i)).unwrap_or_default();
        Hit {
            rule,
            line: self.lines[i as usize],
        }
    }

    /// The most specific listed name that is `name` or one of its parents.
    pub fn find_suffix(&self, name: &str) -> Option<Hit<'_>> {
        if self.is_empty() {
            return None;
        }
        for start in suffix_starts(name) {
            if let Some(h) = self.get(&name[start..]) {
                return Some(h);
            }
        }
        None
    }

    /// Bytes held by this set, for memory reports.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.ends.capacity() * 4
            + self.lines.capacity() * 4
            + self.table.capacity() * 5
    }
}

/// Byte offsets where `name` and each of its parent names start, most specific first.
///
/// Label separators escaped as `\.` (a dot inside a label) are not boundaries.
pub fn suffix_starts(name: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = name.as_bytes();
    let mut pos = 0usize;
    let mut done = name.is_empty();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let start = pos;
        let mut i = pos;
        loop {
            match bytes.get(i) {
                None => {
                    done = true;
                    break;
                }
                Some(b'\\') => i += 2,
                Some(b'.') => {
                    pos = i + 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
        Some(start)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> DomainSet {
        let mut s = DomainSet::default();
        for (i, n) in names.iter().enumerate() {
            s.insert(n, i as u32 + 1);
        }
        s
    }

    #[test]
    fn listed_domain_blocks_itself_and_children_only() {
        let s = set(&["msstorageazure.com", "sbmsa.wiki"]);
        assert_eq!(
            s.find_suffix("msstorageazure.com").map(|h| h.rule),
            Some("msstorageazure.com")
        );
        assert_eq!(
            s.find_suffix("cdn.msstorageazure.com").map(|h| h.line),
            Some(1)
        );
        assert_eq!(
            s.find_suffix("a.b.sbmsa.wiki").map(|h| h.rule),
            Some("sbmsa.wiki")
        );
        assert!(s.find_suffix("notmsstorageazure.com").is_none());
        assert!(s.find_suffix("msstorageazure.com.evil.test").is_none());
        assert!(s.find_suffix("com").is_none());
        assert!(s.find_suffix("").is_none());
    }

    #[test]
    fn most_specific_rule_is_reported() {
        let s = set(&["example.com", "a.example.com"]);
        assert_eq!(
            s.find_suffix("x.a.example.com").map(|h| h.rule),
            Some("a.example.com")
        );
        assert_eq!(
            s.find_suffix("b.example.com").map(|h| h.rule),
            Some("example.com")
        );
    }

    #[test]
    fn duplicates_keep_first_line() {
        let mut s = set(&["a.com"]);
        assert!(!s.insert("a.com", 9));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("a.com").map(|h| h.line), Some(1));
    }

    #[test]
    fn escaped_dot_is_not_a_label_boundary() {
        let starts: Vec<usize> = suffix_starts("a\\.evil.com").collect();
        assert_eq!(starts, vec![0, 8]);
        let s = set(&["evil.com"]);
        assert!(s.find_suffix("a\\.evil.com").is_none());
        assert!(s.find_suffix("x.evil.com").is_some());
    }

    #[test]
    fn survives_growth_and_shrink() {
        let mut s = DomainSet::default();
        for i in 0..10_000 {
            s.insert(&format!("d{i}.example"), i);
        }
        s.shrink_to_fit();
        for i in (0..10_000).step_by(97) {
            let n = format!("x.d{i}.example");
            assert_eq!(s.find_suffix(&n).map(|h| h.line), Some(i));
        }
        assert!(s.find_suffix("d10000.example").is_none());
    }
}
