//! A compact set of domain-name rules that answers "is this name, or a parent of it, listed?" without
//! allocating.
//!
//! Names are not stored at all: each rule is a 64-bit keyed fingerprint of its name plus one byte saying how it
//! matches and what it does, in an open-addressing table (linear probing, at most 75 % full). A million rules cost
//! about 12 MB (a `HashSet<Box<str>>` needs about 64 MB). The rule text a query matched is always a suffix of the
//! query name, so provenance needs no stored names; `check --explain` finds the file line by re-reading the file.
//!
//! The fingerprint is keyed with a random per-process seed, so nobody can aim a name at a listed fingerprint; the
//! chance that an unlisted name collides with one of n rules is n / 2^64 per lookup (about 5e-14 for n = 10^6).

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

    fn pack(self) -> u8 {
        self.scope | (self.action as u8) << 2
    }

    fn unpack(b: u8) -> Rule {
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
    /// Fingerprints; 0 marks a free slot.
    keys: Vec<u64>,
    /// Packed [`Rule`] of the same slot.
    meta: Vec<u8>,
    len: usize,
}

/// The fingerprint of a normalized name (never 0).
pub fn fingerprint(name: &str) -> u64 {
    static SEED: OnceLock<FixedState> = OnceLock::new();
    let h = SEED
        .get_or_init(|| FixedState::with_seed(rand::random()))
        .hash_one(name.as_bytes());
    h.max(1)
}

/// Slots needed to hold `n` rules at most 75 % full.
fn slots_for(n: usize) -> usize {
    (n.saturating_mul(4) / 3 + 1).max(8)
}

impl DomainSet {
    /// An empty set sized for about `n` rules.
    pub fn with_capacity(n: usize) -> Self {
        let slots = slots_for(n);
        DomainSet {
            keys: vec![0; slots],
            meta: vec![0; slots],
            len: 0,
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
        self.insert_key(fingerprint(name), rule)
    }

    /// [`insert`](Self::insert) with a precomputed fingerprint.
    pub fn insert_key(&mut self, key: u64, rule: Rule) -> Inserted {
        if self.keys.len() * 3 <= (self.len + 1) * 4 {
            self.grow();
        }
        let n = self.keys.len();
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                0 => {
                    self.keys[i] = key;
                    self.meta[i] = rule.pack();
                    self.len += 1;
                    return Inserted::New;
                }
                k if k == key => {
                    let old = Rule::unpack(self.meta[i]);
                    let overlap = old.scope & rule.scope != 0;
                    if old.action == rule.action
                        && (rule.action != RuleAction::LocalData || old.scope == rule.scope)
                    {
                        if old.scope | rule.scope == old.scope {
                            return Inserted::Duplicate;
                        }
                        self.meta[i] = Rule {
                            scope: old.scope | rule.scope,
                            action: old.action,
                        }
                        .pack();
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
        let keys = std::mem::replace(&mut self.keys, vec![0; slots]);
        let meta = std::mem::replace(&mut self.meta, vec![0; slots]);
        for (k, m) in keys.into_iter().zip(meta) {
            if k != 0 {
                let mut i = self.home(k);
                while self.keys[i] != 0 {
                    i = (i + 1) % slots;
                }
                self.keys[i] = k;
                self.meta[i] = m;
            }
        }
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
        if self.len == 0 {
            return None;
        }
        let n = self.keys.len();
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                0 => return None,
                k if k == key => {
                    let r = Rule::unpack(self.meta[i]);
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
        let n = self.keys.len();
        let mut i = self.home(key);
        while self.keys[i] != 0 {
            if self.keys[i] == key {
                out.push(Rule::unpack(self.meta[i]));
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
        if self.is_empty() {
            return None;
        }
        for start in suffix_starts(name) {
            let want = if start == 0 {
                scope::EXACT
            } else {
                scope::BELOW
            };
            let suffix = &name[start..];
            if let Some(rule) = self.find_key(fingerprint(suffix), want) {
                return Some(Match { name: suffix, rule });
            }
        }
        None
    }

    /// Bytes held by this set, for memory reports.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 8 + self.meta.capacity()
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
