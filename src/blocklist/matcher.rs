//! A compact set of domain-name rules that answers "is this name, or a parent of it, listed?" without
//! allocating.
//!
//! Names are not stored at all: each rule is one 64-bit word, a 59-bit keyed fingerprint of its name and 5 bits
//! saying how it matches and what it does, in an open-addressing table (linear probing, at most 2/3 full). A
//! million rules cost about 12 MB (a `HashSet<Box<str>>` needs about 64 MB) and a lookup touches one cache line
//! per label. The rule text a query matched is always a suffix of the query name, so provenance needs no stored
//! names; `check --explain` finds the file line by re-reading the file.
//!
//! The fingerprint is keyed with a random per-process seed, so nobody can aim a name at a listed fingerprint; the
//! chance that any of d distinct unlisted names collides with one of n rules is d * n / 2^59 (for 10^6 rules
//! and 10^6 distinct names seen, about 2e-6 per process lifetime).

use super::table::Table;
use foldhash::quality::FixedState;
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// How a rule matches: the bits of [`Rule::scope`].
pub mod scope {
    /// The listed name itself.
    pub const EXACT: u8 = 1;
    /// Strict subdomains of the listed name (`*.name`).
    pub const BELOW: u8 = 2;
    /// The name and everything below it (a plain list entry).
    pub const TREE: u8 = EXACT | BELOW;
}

/// What a matching rule asks for; `Default` defers to the list's (or the server's) sinkhole mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RuleAction {
    Default = 0,
    Nxdomain = 1,
    Nodata = 2,
    /// Answer with the rule's own A/AAAA records (RPZ local data).
    LocalData = 3,
    /// Send no answer at all (RPZ `rpz-drop.`).
    Drop = 4,
}

impl RuleAction {
    fn from_bits(b: u8) -> RuleAction {
        match b {
            1 => RuleAction::Nxdomain,
            2 => RuleAction::Nodata,
            3 => RuleAction::LocalData,
            4 => RuleAction::Drop,
            _ => RuleAction::Default,
        }
    }
}

/// One rule's matching scope and action, packed into a byte in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// [`scope`] bits.
    pub scope: u8,
    pub action: RuleAction,
}

impl Rule {
    /// A plain entry: the name and all names below it, answered per the list's action.
    pub const TREE: Rule = Rule {
        scope: scope::TREE,
        action: RuleAction::Default,
    };

    pub(super) fn pack(self) -> u8 {
        self.scope | (self.action as u8) << 2
    }

    pub(super) fn unpack(b: u8) -> Rule {
        Rule {
            scope: b & scope::TREE,
            action: RuleAction::from_bits(b >> 2),
        }
    }

    /// True when the rule matches only below its name (written `*.name`).
    pub fn is_wildcard(&self) -> bool {
        self.scope == scope::BELOW
    }
}

/// What [`DomainSet::insert`] did with a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new rule.
    New,
    /// Widened the scope of an existing rule with the same action (e.g. `x` after `*.x`).
    Merged,
    /// Nothing new: an earlier rule already covers it.
    Duplicate,
    /// An earlier rule for the same name and scope has another action; the earlier one is kept.
    Conflict(Rule),
}

/// A rule that matched a query name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    /// The listed name: a suffix of the query name.
    pub name: &'a str,
    pub rule: Rule,
}

impl Match<'_> {
    /// The rule as written in a list (`*.name` for wildcards), for events and reports.
    pub fn text(&self) -> String {
        if self.rule.is_wildcard() {
            format!("*.{}", self.name)
        } else {
            self.name.to_string()
        }
    }
}

/// A set of lower-case domain-name rules with suffix lookup.
#[derive(Default)]
pub struct DomainSet {
    /// Fingerprint (high 59 bits) and packed [`Rule`] (low 5 bits); 0 marks a free slot (a rule's scope is
    /// never 0).
    keys: Table<u64>,
    /// A blocked Bloom filter (one 64-byte block per name, 3 bits in it; one byte per rule, so it stays in
    /// cache where the table cannot): most names that are not listed are turned away without touching the table.
    filter: Table<[u64; 8]>,
    len: usize,
    /// Bit i set when some rule's name has i + 1 labels (names of 128+ labels share bit 127): lookups skip
    /// parents of lengths no rule has, typically the top-level domain.
    label_counts: u128,
}

/// Number of labels in a normalized name.
pub fn label_count(name: &str) -> usize {
    if name.is_empty() {
        0
    } else {
        name.bytes().filter(|&b| b == b'.').count() + 1
    }
}

fn label_bit(labels: usize) -> u128 {
    1u128 << (labels.clamp(1, 128) - 1)
}

/// The fingerprint of a normalized name (its low 5 bits are ignored by the table).
pub fn fingerprint(name: &str) -> u64 {
    static SEED: OnceLock<FixedState> = OnceLock::new();
    SEED.get_or_init(|| FixedState::with_seed(rand::random()))
        .hash_one(name.as_bytes())
}

/// The low bits of a slot that hold the packed rule.
const RULE_BITS: u64 = 0x1f;

/// Filter blocks for `n` rules: one byte each.
fn filter_blocks(n: usize) -> usize {
    (n / 64).max(1)
}

/// The filter block and the three bits in it for a fingerprint (bits other than those the table uses first).
#[inline]
fn filter_spot(key: u64, blocks: usize) -> (usize, [u32; 3]) {
    let h = key.rotate_left(29);
    let block = ((u128::from(h) * blocks as u128) >> 64) as usize;
    let b = (key >> 5) as u32;
    (block, [b & 511, (b >> 9) & 511, (b >> 18) & 511])
}

/// Slots needed to hold `n` rules at most 2/3 full.
fn slots_for(n: usize) -> usize {
    (n.saturating_mul(3) / 2 + 1).max(8)
}

impl DomainSet {
    /// An empty set sized for about `n` rules.
    pub fn with_capacity(n: usize) -> Self {
        let slots = slots_for(n);
        DomainSet {
            keys: Table::new(slots),
            filter: Table::new(filter_blocks(n)),
            len: 0,
            label_counts: 0,
        }
    }

    /// Number of rules held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no rule is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        ((u128::from(key) * self.keys.len() as u128) >> 64) as usize
    }

    /// Adds a rule for a normalized name.
    ///
    /// Rules for one name with the same action merge; with different actions they coexist only when their
    /// scopes do not overlap (RPZ `x` and `*.x`), else the first is kept. Local-data rules never merge scopes,
    /// so that `x` and `*.x` keep their own addresses.
    pub fn insert(&mut self, name: &str, rule: Rule) -> Inserted {
        self.insert_key(fingerprint(name), label_count(name), rule)
    }

    /// [`insert`](Self::insert) with a precomputed fingerprint and label count of the name.
    pub fn insert_key(&mut self, key: u64, labels: usize, rule: Rule) -> Inserted {
        self.label_counts |= label_bit(labels);
        if self.keys.len() * 2 <= (self.len + 1) * 3 {
            self.grow();
        }
        let key = key & !RULE_BITS;
        let n = self.keys.len();
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                0 => {
                    self.keys[i] = key | u64::from(rule.pack());
                    self.filter_add(key);
                    self.len += 1;
                    return Inserted::New;
                }
                k if k & !RULE_BITS == key => {
                    let old = Rule::unpack((k & RULE_BITS) as u8);
                    let overlap = old.scope & rule.scope != 0;
                    if old.action == rule.action
                        && (rule.action != RuleAction::LocalData || old.scope == rule.scope)
                    {
                        if old.scope | rule.scope == old.scope {
                            return Inserted::Duplicate;
                        }
                        let merged = Rule {
                            scope: old.scope | rule.scope,
                            action: old.action,
                        };
                        self.keys[i] = key | u64::from(merged.pack());
                        return Inserted::Merged;
                    }
                    if overlap {
                        return Inserted::Conflict(old);
                    }
                }
                _ => {}
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Doubles the table, re-placing fingerprints (no names are needed to re-hash).
    fn grow(&mut self) {
        self.resize(slots_for(self.len.max(4) * 2));
    }

    fn resize(&mut self, slots: usize) {
        let keys = std::mem::replace(&mut self.keys, Table::new(slots));
        self.filter = Table::new(filter_blocks(slots * 2 / 3));
        for &k in keys.iter() {
            if k != 0 {
                self.filter_add(k & !RULE_BITS);
                let mut i = self.home(k & !RULE_BITS);
                while self.keys[i] != 0 {
                    i = (i + 1) % slots;
                }
                self.keys[i] = k;
            }
        }
    }

    fn filter_add(&mut self, key: u64) {
        let (block, bits) = filter_spot(key, self.filter.len());
        for b in bits {
            self.filter[block][(b / 64) as usize] |= 1 << (b % 64);
        }
    }

    #[inline]
    fn filter_may_have(&self, key: u64) -> bool {
        let (block, bits) = filter_spot(key, self.filter.len());
        let words = &self.filter[block];
        bits.iter()
            .all(|&b| words[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }

    /// Shrinks a table that was sized for far more rules than it got (e.g. a list full of comments).
    pub fn shrink_to_fit(&mut self) {
        let want = slots_for(self.len);
        if self.keys.len() > want * 2 {
            self.resize(want);
        }
    }

    /// The rule for fingerprint `key` whose scope has a bit of `want`.
    #[inline]
    pub fn find_key(&self, key: u64, want: u8) -> Option<Rule> {
        let key = key & !RULE_BITS;
        if self.len == 0 || !self.filter_may_have(key) {
            return None;
        }
        self.probe(key, want)
    }

    /// The table probe behind [`find_key`](Self::find_key), for a key whose rule bits are clear.
    #[inline]
    fn probe(&self, key: u64, want: u8) -> Option<Rule> {
        let n = self.keys.len();
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                0 => return None,
                k if k & !RULE_BITS == key => {
                    let r = Rule::unpack((k & RULE_BITS) as u8);
                    if r.scope & want != 0 {
                        return Some(r);
                    }
                }
                _ => {}
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Every rule held for fingerprint `key` (at most a few), for explanations.
    pub fn rules_for(&self, key: u64) -> Vec<Rule> {
        let mut out = Vec::new();
        if self.len == 0 {
            return out;
        }
        let key = key & !RULE_BITS;
        let n = self.keys.len();
        let mut i = self.home(key);
        while self.keys[i] != 0 {
            if self.keys[i] & !RULE_BITS == key {
                out.push(Rule::unpack((self.keys[i] & RULE_BITS) as u8));
            }
            i = (i + 1) % n;
        }
        out
    }

    /// The rule (if any) that `name` itself, as the query name, matches exactly.
    pub fn get(&self, name: &str) -> Option<Rule> {
        self.find_key(fingerprint(name), scope::EXACT)
    }

    /// The most specific rule matching `name`: the name itself (exact rules) or a parent (rules that cover
    /// names below them).
    pub fn find_suffix<'a>(&self, name: &'a str) -> Option<Match<'a>> {
        self.find_in(&mut Suffixes::new(name))
    }

    /// [`find_suffix`](Self::find_suffix) for a name already split into its suffixes.
    ///
    /// The table lines of all candidate suffixes are prefetched, then the filter is asked about each in a loop
    /// of independent loads that the CPU overlaps: a miss waits for about one cache miss in the small filter,
    /// a hit also for its table line, which is already on the way.
    pub fn find_in<'a>(&self, s: &mut Suffixes<'a>) -> Option<Match<'a>> {
        /// Candidate suffixes checked together; deeper names take further batches.
        const BATCH: usize = 8;
        if self.is_empty() {
            return None;
        }
        let mut picked = [0usize; BATCH];
        let mut n = 0;
        for i in 0..s.len() {
            // Suffix i has len - i labels; parents of lengths no rule has are skipped unhashed.
            if self.label_counts & label_bit(s.len() - i) == 0 {
                continue;
            }
            if n == BATCH {
                // The batch holds the more specific suffixes: it decides first.
                if let Some(m) = self.first_hit(s, &picked) {
                    return Some(m);
                }
                n = 0;
            }
            picked[n] = i;
            n += 1;
        }
        self.first_hit(s, &picked[..n])
    }

    /// The first of the `picked` suffixes (most specific first) that has a matching rule.
    #[inline]
    fn first_hit<'a>(&self, s: &mut Suffixes<'a>, picked: &[usize]) -> Option<Match<'a>> {
        let mut keys = [0u64; 8];
        let mut maybe = [false; 8];
        for (k, &i) in keys.iter_mut().zip(picked) {
            *k = s.key(i) & !RULE_BITS;
            prefetch(&self.keys[self.home(*k)]);
        }
        for (m, &k) in maybe.iter_mut().zip(&keys[..picked.len()]) {
            *m = self.filter_may_have(k);
        }
        for (j, &i) in picked.iter().enumerate() {
            if !maybe[j] {
                continue;
            }
            let want = if i == 0 { scope::EXACT } else { scope::BELOW };
            if let Some(rule) = self.probe(keys[j], want) {
                return Some(Match {
                    name: s.suffix(i),
                    rule,
                });
            }
        }
        None
    }

    /// Bytes held by this set, for memory reports (a large table's own mapping counts whole).
    pub fn heap_bytes(&self) -> usize {
        self.keys.bytes() + self.filter.bytes()
    }
}

/// Asks the CPU to start loading the cache line of `slot` without waiting for it: a hit then finds its table
/// line on the way while the filter is read, and a miss does not wait for it at all.
#[inline(always)]
fn prefetch(slot: &u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is only a hint that never faults; the
        // pointer comes from a reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((slot as *const u64).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

/// Most suffixes a name can have: a 255-octet name has at most 127 labels.
const MAX_SUFFIXES: usize = 128;
/// Suffixes whose fingerprints are kept once computed: names rarely have more labels, and a small struct is
/// cheap to set up for every query.
const KEPT_KEYS: usize = 16;

/// A name split once into itself and its parents, each hashed at most once: a query checked against several
/// lists (block and allow) is neither scanned nor hashed again for each.
pub struct Suffixes<'a> {
    name: &'a str,
    starts: Starts<'a>,
    /// Fingerprint of each of the first suffixes, valid where the bit of `hashed` is set.
    keys: [u64; KEPT_KEYS],
    hashed: u16,
}

/// Byte offset in the name where each suffix starts, most specific first.
// Only ever on the stack for one lookup, and only the variant in use is written: boxing the large one would
// put an allocation on every escaped name instead.
#[allow(clippy::large_enum_variant)]
enum Starts<'a> {
    /// A wire name's label offsets, borrowed: the same offsets as in a text without escapes.
    Wire(&'a [u8]),
    /// Found by scanning the text.
    Text { at: [u16; MAX_SUFFIXES], len: usize },
}

impl<'a> Suffixes<'a> {
    /// The suffixes of a normalized name (labels separated by unescaped dots).
    pub fn new(name: &'a str) -> Self {
        let mut at = [0u16; MAX_SUFFIXES];
        let mut len = 0;
        for start in suffix_starts(name) {
            if let (Some(slot), Ok(start)) = (at.get_mut(len), u16::try_from(start)) {
                *slot = start;
                len += 1;
            }
        }
        Suffixes::with(name, Starts::Text { at, len })
    }

    /// The suffixes of a name whose text has no escapes, from where its labels start in wire form: without
    /// escapes, label i starts at the same offset in the text (a length octet there, a dot here).
    #[inline]
    pub fn from_label_starts(name: &'a str, wire_starts: &'a [u8]) -> Self {
        Suffixes::with(name, Starts::Wire(wire_starts))
    }

    #[inline]
    fn with(name: &'a str, starts: Starts<'a>) -> Self {
        Suffixes {
            name,
            starts,
            keys: [0; KEPT_KEYS],
            hashed: 0,
        }
    }

    /// Number of suffixes (the name's labels).
    pub fn len(&self) -> usize {
        match &self.starts {
            Starts::Wire(w) => w.len(),
            Starts::Text { len, .. } => *len,
        }
    }

    /// True for the root name.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name these are suffixes of.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Suffix `i` (0 = the name itself).
    pub fn suffix(&self, i: usize) -> &'a str {
        let start = match &self.starts {
            Starts::Wire(w) => w.get(i).map(|&s| usize::from(s)),
            Starts::Text { at, .. } => at.get(i).map(|&s| usize::from(s)),
        };
        let name = self.name;
        start.and_then(|s| name.get(s..)).unwrap_or("")
    }

    /// The fingerprint of suffix `i`, computed once for the first [`KEPT_KEYS`] suffixes.
    #[inline]
    pub(super) fn key(&mut self, i: usize) -> u64 {
        if i >= KEPT_KEYS {
            return fingerprint(self.suffix(i));
        }
        if self.hashed & (1 << i) == 0 {
            self.keys[i] = fingerprint(self.suffix(i));
            self.hashed |= 1 << i;
        }
        self.keys[i]
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
        for n in names {
            match n.strip_prefix("*.") {
                Some(rest) => s.insert(
                    rest,
                    Rule {
                        scope: scope::BELOW,
                        action: RuleAction::Default,
                    },
                ),
                None => s.insert(n, Rule::TREE),
            };
        }
        s
    }

    #[test]
    fn a_set_grown_onto_mapped_tables_finds_what_it_holds() {
        let mut s = DomainSet::default();
        for i in 0..300_000 {
            s.insert(&format!("n{i}.example"), Rule::TREE);
        }
        assert!(s.heap_bytes() >= 300_000 * 8, "{} bytes", s.heap_bytes());
        for i in [0, 1, 174_999, 175_000, 299_999] {
            assert_eq!(
                s.find_suffix(&format!("a.n{i}.example")).map(|m| m.name),
                Some(&*format!("n{i}.example"))
            );
        }
        assert!(s.find_suffix("n300000.example").is_none());
        assert!(s.find_suffix("example").is_none());
    }

    fn rule_of(s: &DomainSet, q: &str) -> Option<String> {
        s.find_suffix(q).map(|m| m.text())
    }

    #[test]
    fn listed_domain_blocks_itself_and_children_only() {
        let s = set(&["msstorageazure.com", "sbmsa.wiki"]);
        assert_eq!(
            rule_of(&s, "msstorageazure.com").as_deref(),
            Some("msstorageazure.com")
        );
        assert_eq!(
            rule_of(&s, "cdn.msstorageazure.com").as_deref(),
            Some("msstorageazure.com")
        );
        assert_eq!(rule_of(&s, "a.b.sbmsa.wiki").as_deref(), Some("sbmsa.wiki"));
        assert!(s.find_suffix("notmsstorageazure.com").is_none());
        assert!(s.find_suffix("msstorageazure.com.evil.test").is_none());
        assert!(s.find_suffix("com").is_none());
        assert!(s.find_suffix("").is_none());
    }

    #[test]
    fn wildcard_matches_strict_subdomains_only() {
        let s = set(&["*.ads.example"]);
        assert_eq!(
            rule_of(&s, "x.ads.example").as_deref(),
            Some("*.ads.example")
        );
        assert_eq!(
            rule_of(&s, "a.b.ads.example").as_deref(),
            Some("*.ads.example")
        );
        assert!(s.find_suffix("ads.example").is_none());
        // Adding the plain entry widens it to the apex too.
        let s = set(&["*.ads.example", "ads.example"]);
        assert_eq!(rule_of(&s, "ads.example").as_deref(), Some("ads.example"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn exact_rule_does_not_cover_children() {
        let mut s = DomainSet::default();
        let exact = Rule {
            scope: scope::EXACT,
            action: RuleAction::Nxdomain,
        };
        assert_eq!(s.insert("evil.test", exact), Inserted::New);
        assert!(s.find_suffix("evil.test").is_some());
        assert!(s.find_suffix("a.evil.test").is_none());
    }

    #[test]
    fn same_name_different_scopes_keep_their_actions() {
        let mut s = DomainSet::default();
        let exact = Rule {
            scope: scope::EXACT,
            action: RuleAction::Nxdomain,
        };
        let below = Rule {
            scope: scope::BELOW,
            action: RuleAction::Nodata,
        };
        assert_eq!(s.insert("x.test", exact), Inserted::New);
        assert_eq!(s.insert("x.test", below), Inserted::New);
        assert_eq!(s.find_suffix("x.test").map(|m| m.rule), Some(exact));
        assert_eq!(s.find_suffix("a.x.test").map(|m| m.rule), Some(below));
        let other = Rule {
            scope: scope::EXACT,
            action: RuleAction::Drop,
        };
        assert_eq!(s.insert("x.test", other), Inserted::Conflict(exact));
        assert_eq!(s.rules_for(fingerprint("x.test")).len(), 2);
    }

    #[test]
    fn top_level_rule_still_matches_with_label_skipping() {
        let s = set(&["zip", "a.b.c.d.example"]);
        assert_eq!(rule_of(&s, "x.y.zip").as_deref(), Some("zip"));
        assert_eq!(
            rule_of(&s, "q.a.b.c.d.example").as_deref(),
            Some("a.b.c.d.example")
        );
        assert!(s.find_suffix("b.c.d.example").is_none());
    }

    #[test]
    fn deep_names_are_checked_past_the_first_batch() {
        let s = set(&["example", "f.g.h.i.j.k.example"]);
        let deep = "a.b.c.d.e.f.g.h.i.j.k.example";
        assert_eq!(rule_of(&s, deep).as_deref(), Some("f.g.h.i.j.k.example"));
        let t = set(&["example"]);
        assert_eq!(rule_of(&t, deep).as_deref(), Some("example"));
        let many: Vec<String> = (1..=12)
            .map(|i| deep.splitn(i, '.').last().unwrap().to_string())
            .collect();
        let u = set(&many.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(rule_of(&u, deep).as_deref(), Some(deep));
        assert_eq!(rule_of(&u, &format!("z.{deep}")).as_deref(), Some(deep));
    }

    #[test]
    fn most_specific_rule_is_reported() {
        let s = set(&["example.com", "a.example.com"]);
        assert_eq!(
            rule_of(&s, "x.a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(rule_of(&s, "b.example.com").as_deref(), Some("example.com"));
    }

    #[test]
    fn duplicates_are_reported() {
        let mut s = set(&["a.com"]);
        assert_eq!(s.insert("a.com", Rule::TREE), Inserted::Duplicate);
        assert_eq!(s.len(), 1);
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
        let mut s = DomainSet::with_capacity(100_000);
        for i in 0..10_000 {
            s.insert(&format!("d{i}.example"), Rule::TREE);
        }
        s.shrink_to_fit();
        assert!(s.heap_bytes() < 10_000 * 9 * 2);
        for i in (0..10_000).step_by(97) {
            assert!(s.find_suffix(&format!("x.d{i}.example")).is_some());
        }
        assert!(s.find_suffix("d10000.example").is_none());
        assert_eq!(s.len(), 10_000);
    }
}
