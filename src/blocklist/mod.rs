//! The domain lists: loaded from files in several formats, held compactly, asked about every query's name.
//!
//! Precedence, in this order:
//! 1. an allow rule matching the name or a parent (from a `kind = "allow"` list, an AdBlock `@@||x^` exception
//!    or an RPZ `rpz-passthru.`) means the name is never blocked, whatever the block lists say;
//! 2. else the first block list, in config order, with a rule matching the name or a parent decides; inside one
//!    list the most specific rule wins.

mod formats;
mod ipset;
mod matcher;
mod memo;
mod parse;
pub mod report;
mod rpz;
pub mod synthetic;
mod table;

pub use formats::{Entry, Item, LineParser, detect, parse_ip};
pub use ipset::{IpHit, IpSet, ip_line};
pub use matcher::{
    DomainSet, Inserted, Match, Rule, RuleAction, Suffixes, fingerprint, label_count, scope,
    suffix_starts,
};
pub use parse::{LineProblem, MAX_LINE, for_each_line, normalize_domain, short};

use crate::config::{Config, ListConfig, ListFormat, ListKind};
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most rules one list may hold; a bigger file is refused rather than exhausting memory.
pub const MAX_ENTRIES: usize = 20_000_000;

/// Most entries a list's table is sized for before reading (see [`sample`]).
const PRESIZE_CAP: usize = 4_000_000;

/// How many problems of one list are kept for reports.
pub const KEPT_PROBLEMS: usize = 20;

/// A list that could not be loaded at all (as opposed to single bad lines in it).
#[derive(Debug, thiserror::Error)]
#[error("list \"{name}\" ({}): {problem}", path.display())]
pub struct ListError {
    pub name: String,
    pub path: PathBuf,
    pub problem: LoadProblem,
}

/// Why a list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadProblem {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotAFile,
    /// `first`: the first few bad lines, already as `path:line: message` (see [`first_lines`]).
    #[error(
        "no valid entries, {invalid} invalid lines (read as format \"{format}\"; is that right?){first}"
    )]
    NothingValid {
        invalid: u64,
        format: &'static str,
        first: String,
    },
    #[error("more than {MAX_ENTRIES} entries")]
    TooBig,
    /// An emptied file is far more often a failed write (`> file`, a download cut short) than a wish to
    /// stop blocking: the block or address list that was loaded stays, and the admin removes the list from
    /// the config instead. (An emptied allow list stops no blocking: it is applied.)
    #[error(
        "the file now holds no rule where the loaded list has {was}; kept the loaded list (to stop using \
         a list, remove it from the config)"
    )]
    Emptied { was: usize },
}

/// How many bad lines a list refused as a whole names in its error.
const FIRST_SHOWN: usize = 3;

/// `": path:line: message; ..."` for the first [`FIRST_SHOWN`] of `problems` (empty when there are none), so
/// that a list refused as a whole still says where to look.
fn first_lines(path: &Path, problems: &[LineProblem]) -> String {
    let shown: Vec<String> = problems
        .iter()
        .take(FIRST_SHOWN)
        .map(|p| format!("{}:{}: {}", path.display(), p.line, p.message))
        .collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!(": {}", shown.join("; "))
    }
}

/// Identity and version of a file on disk, to notice that it changed (or was replaced) without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of the file `path` leads to (symlinks followed), `None` when it cannot be read.
    pub fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

/// Addresses an RPZ local-data rule answers with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalData {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// The lowest TTL among its records (RFC 2181 asks one TTL of an RRset), when the zone gave any.
    pub ttl: Option<u32>,
}

/// What loading a list counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub invalid: u64,
    pub skipped: u64,
    pub duplicates: u64,
    pub conflicts: u64,
}

/// One loaded list and what it holds.
pub struct List {
    /// Name used in events and summaries.
    pub name: Arc<str>,
    /// The config entry it was loaded from (a reload reuses the list when this and the file are unchanged).
    pub config: ListConfig,
    /// File it was read from.
    pub path: PathBuf,
    /// The format it was read as (detected when configured `auto`).
    pub format: ListFormat,
    /// Rules that block.
    pub block: DomainSet,
    /// Rules that exempt: the whole list when `kind = "allow"`, else its exceptions.
    pub allow: DomainSet,
    /// Networks of an address list (`kind = "ip"`), checked against upstream answers.
    pub addrs: IpSet,
    /// Addresses of RPZ local-data rules, by (fingerprint, scope).
    pub local: HashMap<(u64, u8), LocalData>,
    pub counts: Counts,
    /// The first few invalid lines.
    pub problems: Vec<LineProblem>,
    /// The first few skipped lines (valid, but not something c2sink blocks).
    pub skips: Vec<LineProblem>,
    /// The file as it was when reading started.
    pub stamp: Option<FileStamp>,
    /// When the file was read: a reload that reuses the unchanged list keeps it.
    pub loaded_at: std::time::SystemTime,
}

/// A block decision and where it came from.
#[derive(Clone, Copy)]
pub struct Verdict<'a> {
    pub list: &'a List,
    pub rule: Match<'a>,
    /// The addresses of an RPZ local-data rule.
    pub local: Option<&'a LocalData>,
}

/// One rule matching a name, for `check --explain`.
pub struct Explained<'a> {
    pub list: &'a List,
    pub rule: Match<'a>,
    pub allow: bool,
}

/// All lists in force; swapped whole on reload so a query sees either the old set or the new one.
#[derive(Default)]
pub struct Lists {
    /// In precedence order; not to be changed after [`Lists::new`], whose identity tags remembered decisions.
    pub lists: Vec<Arc<List>>,
    any_allow: bool,
    any_addrs: bool,
    /// Mixed into name fingerprints to tag this set's decisions in the per-thread [`memo`]; `None` for lists
    /// small enough to stay in the CPU caches, where asking them again is as cheap as the memo.
    memo_id: Option<u64>,
}

/// Rules (block and allow, over all lists) from which decisions are remembered per thread ([`memo`]): a
/// set this size (filter and table about 1 MB) no longer stays in a core's caches between queries.
const MEMO_FROM: usize = 65_536;

impl List {
    /// Reads a list file as configured; `path` is `cfg.path` resolved against the config folder.
    pub fn load(cfg: &ListConfig, path: &Path) -> Result<List, ListError> {
        let err = |problem| ListError {
            name: cfg.name.clone(),
            path: path.to_path_buf(),
            problem,
        };
        let stamp = FileStamp::of(path);
        let meta = std::fs::metadata(path).map_err(|e| err(e.into()))?;
        if !meta.is_file() {
            return Err(err(LoadProblem::NotAFile));
        }
        if cfg.kind == ListKind::Ip {
            return List::load_addresses(cfg, path, stamp).map_err(err);
        }
        let (detected, estimate) = sample(path, meta.len()).map_err(|e| err(e.into()))?;
        let format = match cfg.format {
            ListFormat::Auto => detected,
            f => f,
        };
        let allow_list = cfg.kind == ListKind::Allow;
        let mut list = List::empty(cfg, path, format, stamp);
        let (block_cap, allow_cap) = if allow_list {
            (0, estimate)
        } else {
            (estimate, 0)
        };
        list.block = DomainSet::with_capacity(block_cap);
        list.allow = DomainSet::with_capacity(allow_cap);
        let mut parser = LineParser::new(format);
        let mut too_big = false;
        let mut add = |line: u32, item: Item<'_>| {
            if !list.add(line, item, allow_list) {
                too_big = true;
            }
        };
        let mut lines = 0u64;
        for_each_line(path, |line, text| {
            lines += 1;
            match text {
                Ok(text) => parser.line(line, text, &mut add),
                Err(message) => add(line, Item::Invalid(message)),
            }
        })
        .map_err(|e| err(e.into()))?;
        parser.finish(&mut add);
        if too_big {
            return Err(err(LoadProblem::TooBig));
        }
        list.counts.lines = lines;
        if list.block.is_empty() && list.allow.is_empty() && list.counts.invalid > 0 {
            return Err(err(LoadProblem::NothingValid {
                invalid: list.counts.invalid,
                format: format.as_str(),
                first: first_lines(path, &list.problems),
            }));
        }
        list.block.shrink_to_fit();
        list.allow.shrink_to_fit();
        Ok(list)
    }

    /// Takes one parsed line; false when the list is over [`MAX_ENTRIES`].
    fn add(&mut self, line: u32, item: Item<'_>, allow_list: bool) -> bool {
        let note = |kept: &mut Vec<LineProblem>, message: String| {
            if kept.len() < KEPT_PROBLEMS {
                kept.push(LineProblem { line, message });
            }
        };
        let e = match item {
            Item::Entry(e) => e,
            Item::Skipped(m) => {
                self.counts.skipped += 1;
                note(&mut self.skips, m);
                return true;
            }
            Item::Invalid(m) => {
                self.counts.invalid += 1;
                note(&mut self.problems, m);
                return true;
            }
        };
        if self.block.len() + self.allow.len() >= MAX_ENTRIES {
            return false;
        }
        let allow = e.allow || allow_list;
        let (set, rule) = if allow {
            let rule = Rule {
                scope: e.rule.scope,
                action: RuleAction::Default,
            };
            (&mut self.allow, rule)
        } else {
            (&mut self.block, e.rule)
        };
        let key = fingerprint(e.name);
        let inserted = set.insert_key(key, label_count(e.name), rule);
        match (inserted, e.addr) {
            (Inserted::New | Inserted::Duplicate, Some(addr))
                if !allow && rule.action == RuleAction::LocalData =>
            {
                let data = self.local.entry((key, rule.scope)).or_default();
                if let Some(t) = e.ttl {
                    data.ttl = Some(data.ttl.map_or(t, |old| old.min(t)));
                }
                let added = match addr {
                    IpAddr::V4(a) if !data.v4.contains(&a) => {
                        data.v4.push(a);
                        true
                    }
                    IpAddr::V6(a) if !data.v6.contains(&a) => {
                        data.v6.push(a);
                        true
                    }
                    _ => false,
                };
                if !added {
                    self.counts.duplicates += 1;
                }
            }
            (Inserted::Duplicate, _) => self.counts.duplicates += 1,
            (Inserted::Conflict(old), _) => {
                self.counts.conflicts += 1;
                let message = format!(
                    "\"{}\": conflicts with an earlier rule for the same name ({:?}), which is kept",
                    e.name, old.action
                );
                note(&mut self.problems, message);
            }
            _ => {}
        }
        true
    }

    /// Logs what loading found: the first invalid lines, then a summary.
    pub fn log_loaded(&self) {
        for p in &self.problems {
            tracing::warn!(list = %self.name, "{}:{}: {}", self.path.display(), p.line, p.message);
        }
        let c = &self.counts;
        if c.invalid > 0 {
            tracing::warn!(list = %self.name, invalid = c.invalid, "skipped invalid lines");
        }
        // An empty allow list (no false positive yet) exempts nothing: nothing to warn about.
        if self.is_empty() && self.config.kind != ListKind::Allow {
            tracing::warn!(
                list = %self.name,
                path = %self.path.display(),
                "the list holds no rule: it blocks nothing until its file has some"
            );
        }
        tracing::info!(
            list = %self.name,
            format = self.format.as_str(),
            kind = self.config.kind.as_str(),
            entries = self.len(),
            allow = self.allow.len(),
            skipped = c.skipped,
            duplicates = c.duplicates,
            path = %self.path.display(),
            "list loaded"
        );
    }

    /// A list with no rules yet, for the loaders to fill.
    fn empty(cfg: &ListConfig, path: &Path, format: ListFormat, stamp: Option<FileStamp>) -> List {
        List {
            name: Arc::from(cfg.name.as_str()),
            config: cfg.clone(),
            path: path.to_path_buf(),
            format,
            block: DomainSet::with_capacity(0),
            allow: DomainSet::with_capacity(0),
            addrs: IpSet::default(),
            local: HashMap::new(),
            counts: Counts::default(),
            problems: Vec::new(),
            skips: Vec::new(),
            stamp,
            loaded_at: std::time::SystemTime::now(),
        }
    }

    /// Reads an address list: one IPv4/IPv6 address or CIDR network per line, `#` comments.
    fn load_addresses(
        cfg: &ListConfig,
        path: &Path,
        stamp: Option<FileStamp>,
    ) -> Result<List, LoadProblem> {
        let mut list = List::empty(cfg, path, ListFormat::Domains, stamp);
        let mut lines = 0u64;
        for_each_line(path, |line, text| {
            lines += 1;
            let parsed = match text {
                Ok(t) => ip_line(t),
                Err(m) => Some(Err(m)),
            };
            match parsed {
                None => {}
                Some(Ok(net)) if !list.addrs.insert(net, line) => list.counts.duplicates += 1,
                Some(Ok(_)) => {}
                Some(Err(message)) => {
                    list.counts.invalid += 1;
                    if list.problems.len() < KEPT_PROBLEMS {
                        list.problems.push(LineProblem { line, message });
                    }
                }
            }
        })?;
        list.counts.lines = lines;
        if list.addrs.is_empty() && list.counts.invalid > 0 {
            return Err(LoadProblem::NothingValid {
                invalid: list.counts.invalid,
                format: "ip",
                first: first_lines(path, &list.problems),
            });
        }
        Ok(list)
    }

    /// Block rules held (domains, or networks for an address list).
    pub fn len(&self) -> usize {
        self.block.len() + self.addrs.len()
    }

    /// Rules of every kind held: block, allow and address rules.
    pub fn rules(&self) -> usize {
        self.block.len() + self.allow.len() + self.addrs.len()
    }

    /// True when the list holds no rule at all.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty() && self.allow.is_empty() && self.addrs.is_empty()
    }

    /// Bytes the list's tables hold, for memory reports.
    pub fn heap_bytes(&self) -> usize {
        self.block.heap_bytes() + self.allow.heap_bytes()
    }

    /// The file lines (number, text) that produced `rule`, found by reading the file again.
    pub fn lines_of(&self, rule: &Match<'_>, allow: bool, at_apex: bool) -> Vec<(u32, String)> {
        let want = if at_apex { scope::EXACT } else { scope::BELOW };
        let allow_list = self.config.kind == ListKind::Allow;
        let mut parser = LineParser::new(self.format);
        let mut found = Vec::new();
        let mut current = String::new();
        let _ = for_each_line(&self.path, |line, text| {
            let Ok(text) = text else { return };
            current.clear();
            current.push_str(text.trim());
            parser.line(line, text, &mut |l, item| {
                if let Item::Entry(e) = item
                    && e.name == rule.name
                    && e.rule.scope & want != 0
                    && (e.allow || allow_list) == allow
                    && found.len() < KEPT_PROBLEMS
                {
                    found.push((l, short(&current)));
                }
            });
        });
        found
    }
}

/// What [`scan`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Rules read (duplicates included).
    pub entries: u64,
    pub invalid: u64,
    /// The format it was read as.
    pub format: ListFormat,
}

/// Parses a list file as `cfg` says without keeping it: how a downloaded feed is vetted before it replaces the
/// last good copy, at the cost of a read, not of a second table.
pub fn scan(cfg: &ListConfig, path: &Path) -> Result<Scan, ListError> {
    let err = |problem| ListError {
        name: cfg.name.clone(),
        path: path.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.into()))?;
    if !meta.is_file() {
        return Err(err(LoadProblem::NotAFile));
    }
    let (detected, _) = sample(path, meta.len()).map_err(|e| err(e.into()))?;
    let format = match cfg.format {
        ListFormat::Auto => detected,
        f => f,
    };
    let mut parser = LineParser::new(format);
    let (mut entries, mut invalid) = (0u64, 0u64);
    let mut problems = Vec::new();
    let mut count = |line: u32, item: Item<'_>| match item {
        Item::Entry(_) => entries += 1,
        Item::Invalid(message) => {
            invalid += 1;
            if problems.len() < FIRST_SHOWN {
                problems.push(LineProblem { line, message });
            }
        }
        Item::Skipped(_) => {}
    };
    for_each_line(path, |line, text| match text {
        Ok(text) => parser.line(line, text, &mut count),
        Err(m) => count(line, Item::Invalid(m)),
    })
    .map_err(|e| err(e.into()))?;
    parser.finish(&mut count);
    if entries == 0 && invalid > 0 {
        return Err(err(LoadProblem::NothingValid {
            invalid,
            format: format.as_str(),
            first: first_lines(path, &problems),
        }));
    }
    Ok(Scan {
        entries,
        invalid,
        format,
    })
}

/// Bytes at the head of a file whose line lengths size the estimate of its entries.
const HEAD_BYTES: u64 = 64 * 1024;

/// Most bytes read to guess a format: past a long comment header, but not through a file of nothing else.
const DETECT_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the head of a file: its detected format (from its first rule lines, however long the comments before
/// them) and a guess of how many entries it holds.
fn sample(path: &Path, size: u64) -> std::io::Result<(ListFormat, usize)> {
    let file = std::fs::File::open(path)?.take(DETECT_BYTES);
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut detector = formats::Detector::default();
    let mut buf = Vec::with_capacity(256);
    let (mut read, mut head_bytes, mut head_lines) = (0u64, 0u64, 0u64);
    while read < HEAD_BYTES || !detector.settled() {
        buf.clear();
        let n = parse::read_line_capped(&mut reader, &mut buf)? as u64;
        if n == 0 {
            break;
        }
        if read < HEAD_BYTES {
            head_bytes += n;
            head_lines += 1;
        }
        read += n;
        if !detector.settled() {
            detector.line(&String::from_utf8_lossy(&buf));
        }
    }
    let estimate = size
        .saturating_mul(head_lines)
        .checked_div(head_bytes)
        .map_or(0, |n| n + 16);
    // Pre-sizing spares the table's growth steps; past PRESIZE_CAP it grows as entries come, so that a huge
    // file of comments cannot reserve (and, with random inserts, touch) memory for entries it does not have.
    let estimate = usize::try_from(estimate)
        .unwrap_or(PRESIZE_CAP)
        .min(PRESIZE_CAP);
    Ok((detector.format(), estimate))
}

impl Lists {
    /// Loads every list the config names; any list that cannot be read fails the whole load.
    pub fn load(cfg: &Config) -> Result<Lists, ListError> {
        Self::load_reusing(cfg, None, |_| {})
    }

    /// Loads the lists of `cfg`, reusing lists of `old` whose config entry and file are unchanged, so that
    /// a reload touching one list does not rebuild (nor hold twice in memory) the others. `loaded` is called
    /// with each list read from disk.
    pub fn load_reusing(
        cfg: &Config,
        old: Option<&Lists>,
        mut loaded: impl FnMut(&List),
    ) -> Result<Lists, ListError> {
        let mut lists = Vec::with_capacity(cfg.blocklists.len());
        for l in &cfg.blocklists {
            let path = cfg.resolve(&l.path);
            let reuse = old.and_then(|o| {
                o.lists.iter().find(|x| {
                    x.config == *l
                        && x.path == path
                        && x.stamp.is_some()
                        && x.stamp == FileStamp::of(&path)
                })
            });
            match reuse {
                Some(list) => lists.push(list.clone()),
                None => {
                    let list = List::load(l, &path)?;
                    // An allow list emptied (its last exception taken out) blocks more, never less: it
                    // is applied as any other change.
                    let was = old
                        .and_then(|o| o.lists.iter().find(|x| *x.name == *l.name))
                        .filter(|x| !x.is_empty() && l.kind != ListKind::Allow);
                    if let Some(was) = was.filter(|_| list.is_empty()) {
                        return Err(ListError {
                            name: l.name.clone(),
                            path,
                            problem: LoadProblem::Emptied {
                                was: was.len() + was.allow.len(),
                            },
                        });
                    }
                    loaded(&list);
                    lists.push(Arc::new(list));
                }
            }
        }
        Ok(Lists::new(lists))
    }

    /// Assembles loaded lists.
    pub fn new(lists: Vec<Arc<List>>) -> Lists {
        let any_allow = lists.iter().any(|l| !l.allow.is_empty());
        let any_addrs = lists.iter().any(|l| !l.addrs.is_empty());
        let rules: usize = lists.iter().map(|l| l.block.len() + l.allow.len()).sum();
        let memo_id = (rules >= MEMO_FROM && lists.len() <= usize::from(u16::MAX)).then(|| {
            static SETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            // Distinct for every set built in this process; spread over all 64 bits by an odd multiplier.
            SETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        });
        Lists {
            lists,
            any_allow,
            any_addrs,
            memo_id,
        }
    }

    /// The block decision for `name`: `None` when no block list matches or an allow rule exempts it.
    pub fn check<'a>(&'a self, name: &'a str) -> Option<Verdict<'a>> {
        self.check_in(&mut Suffixes::new(name))
    }

    /// The block decision for a query's name, split into suffixes from its wire form when it can be.
    pub fn check_query<'a>(&'a self, query: &'a crate::wire::Query<'_>) -> Option<Verdict<'a>> {
        self.check_in(&mut query_suffixes(query))
    }

    /// [`check`](Self::check) for a name already split.
    ///
    /// Called for every query: one hash per label at most, one probe per label per list; with large lists, a
    /// look in this thread's memo first (its 64 KiB allocated once, on the thread's first such query).
    pub fn check_in<'a>(&'a self, s: &mut Suffixes<'a>) -> Option<Verdict<'a>> {
        let Some(id) = self.memo_id else {
            return self.decide(s);
        };
        let tag = s.key(0) ^ id;
        if let Some(d) = memo::get(tag) {
            return self.recall(d, s);
        }
        let verdict = self.decide(s);
        let d = match &verdict {
            None => memo::Decision::Pass,
            Some(v) => memo::Decision::Block {
                list: self
                    .lists
                    .iter()
                    .position(|l| std::ptr::eq(&**l, v.list))
                    .and_then(|i| u16::try_from(i).ok())
                    .unwrap_or(u16::MAX),
                suffix_len: u16::try_from(v.rule.name.len()).unwrap_or(u16::MAX),
                rule: v.rule.rule.pack(),
            },
        };
        memo::put(tag, d);
        verdict
    }

    /// The decision the lists give, asked rule by rule.
    fn decide<'a>(&'a self, s: &mut Suffixes<'a>) -> Option<Verdict<'a>> {
        for list in &self.lists {
            if let Some(rule) = list.block.find_in(s) {
                if self.any_allow && self.allowed_in(s).is_some() {
                    return None;
                }
                return Some(Self::verdict(list, rule));
            }
        }
        None
    }

    fn verdict<'a>(list: &'a List, rule: Match<'a>) -> Verdict<'a> {
        let local = if rule.rule.action == RuleAction::LocalData {
            list.local.get(&(fingerprint(rule.name), rule.rule.scope))
        } else {
            None
        };
        Verdict { list, rule, local }
    }

    /// A remembered decision as the verdict [`decide`](Self::decide) gave (asked again if it does not fit).
    fn recall<'a>(&'a self, d: memo::Decision, s: &mut Suffixes<'a>) -> Option<Verdict<'a>> {
        let memo::Decision::Block {
            list,
            suffix_len,
            rule,
        } = d
        else {
            return None;
        };
        let name = s.suffix(0);
        let start = name.len().checked_sub(usize::from(suffix_len));
        match (
            self.lists.get(usize::from(list)),
            start.and_then(|i| name.get(i..)),
        ) {
            (Some(list), Some(suffix)) => Some(Self::verdict(
                list,
                Match {
                    name: suffix,
                    rule: Rule::unpack(rule),
                },
            )),
            _ => self.decide(s),
        }
    }

    /// The address list and network that contain `ip`, if any (first list in config order).
    pub fn check_addr(&self, ip: std::net::IpAddr) -> Option<(&List, IpHit)> {
        if !self.any_addrs {
            return None;
        }
        self.lists
            .iter()
            .find_map(|l| l.addrs.find(ip).map(|h| (&**l, h)))
    }

    /// True when some list holds addresses, so answers' addresses are worth checking.
    pub fn has_addresses(&self) -> bool {
        self.any_addrs
    }

    /// The first allow rule that exempts `name`, if any.
    pub fn allowed<'a>(&'a self, name: &'a str) -> Option<(&'a List, Match<'a>)> {
        self.allowed_in(&mut Suffixes::new(name))
    }

    fn allowed_in<'a>(&'a self, s: &mut Suffixes<'a>) -> Option<(&'a List, Match<'a>)> {
        self.lists
            .iter()
            .find_map(|l| l.allow.find_in(s).map(|m| (&**l, m)))
    }

    /// Every list and rule (block and allow) that matches `name`, most specific first per list.
    pub fn explain<'a>(&'a self, name: &'a str) -> Vec<Explained<'a>> {
        let mut out = Vec::new();
        for list in &self.lists {
            for (set, allow) in [(&list.block, false), (&list.allow, true)] {
                for start in suffix_starts(name) {
                    let want = if start == 0 {
                        scope::EXACT
                    } else {
                        scope::BELOW
                    };
                    let suffix = &name[start..];
                    for rule in set.rules_for(fingerprint(suffix)) {
                        if rule.scope & want != 0 {
                            out.push(Explained {
                                list,
                                rule: Match { name: suffix, rule },
                                allow,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// Total block rules over all lists.
    pub fn total(&self) -> usize {
        self.lists.iter().map(|l| l.len()).sum()
    }
}

/// The suffixes of a query's name: read off the wire form's label offsets when the text has no escapes
/// (the common case: no scan), else found by scanning the text.
#[inline]
pub fn query_suffixes<'a>(query: &'a crate::wire::Query<'_>) -> Suffixes<'a> {
    if query.name_is_plain() {
        Suffixes::from_label_starts(&query.name, &query.label_starts)
    } else {
        Suffixes::new(&query.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListFormat;

    fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write list");
        p
    }

    fn cfg(name: &str, format: ListFormat, kind: ListKind) -> ListConfig {
        ListConfig {
            name: name.into(),
            path: PathBuf::from(name),
            format,
            kind,
            ..Default::default()
        }
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("c2sink-lists-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("tmp dir");
        d
    }

    #[test]
    fn allow_beats_block_of_a_parent() {
        let d = tmp("allow");
        let b = write(&d, "b.txt", b"example.com\n");
        let a = write(&d, "a.txt", b"good.example.com\n");
        let block = List::load(&cfg("b", ListFormat::Auto, ListKind::Block), &b).unwrap();
        let allow = List::load(&cfg("a", ListFormat::Auto, ListKind::Allow), &a).unwrap();
        let lists = Lists::new(vec![Arc::new(block), Arc::new(allow)]);
        assert!(lists.check("good.example.com").is_none());
        assert!(lists.check("x.good.example.com").is_none());
        let v = lists.check("bad.example.com").expect("blocked");
        assert_eq!((&*v.list.name, v.rule.name), ("b", "example.com"));
        let ex = lists.explain("good.example.com");
        assert_eq!(ex.len(), 2);
        assert!(
            ex.iter()
                .any(|e| e.allow && e.rule.name == "good.example.com")
        );
        std::fs::remove_dir_all(&d).ok();
    }

    /// Large lists remember their decisions per thread: what comes back must be what the lists decide, for
    /// every kind of outcome, and a reload's new lists must never be given the old ones' decisions.
    #[test]
    fn remembered_decisions_are_the_decisions_and_never_outlive_their_lists() {
        let d = tmp("memo");
        let mut filler = String::new();
        for i in 0..70_000 {
            filler.push_str(&format!("n{i}.filler.test\n"));
        }
        let block = |extra: &str| {
            let p = write(&d, "b.txt", format!("{filler}{extra}").as_bytes());
            Arc::new(List::load(&cfg("b", ListFormat::Domains, ListKind::Block), &p).unwrap())
        };
        let rpz = write(
            &d,
            "r.rpz",
            b"$ORIGIN rpz.local.\nsink.example 30 A 192.0.2.7\n*.nx.example CNAME .\n",
        );
        let rpz = Arc::new(List::load(&cfg("r", ListFormat::Rpz, ListKind::Block), &rpz).unwrap());
        let allow = write(&d, "a.txt", b"ok.c2.example\n");
        let allow =
            Arc::new(List::load(&cfg("a", ListFormat::Auto, ListKind::Allow), &allow).unwrap());
        let lists = Lists::new(vec![
            block("c2.example\n*.wild.example\n"),
            rpz.clone(),
            allow.clone(),
        ]);
        assert!(lists.memo_id.is_some(), "70,000 rules are remembered");
        type Seen = Option<(String, String, Rule, Option<LocalData>)>;
        let seen = |v: Option<Verdict<'_>>| -> Seen {
            v.map(|v| {
                (
                    v.list.name.to_string(),
                    v.rule.name.to_string(),
                    v.rule.rule,
                    v.local.cloned(),
                )
            })
        };
        let names = [
            "c2.example",
            "a.b.c2.example",
            "ok.c2.example",
            "x.ok.c2.example",
            "wild.example",
            "a.wild.example",
            "sink.example",
            "a.nx.example",
            "nx.example",
            "n69999.filler.test",
            "filler.test",
            "unlisted.example",
            "example",
        ];
        for name in names {
            let want = seen(lists.decide(&mut Suffixes::new(name)));
            assert_eq!(seen(lists.check(name)), want, "{name}, first");
            assert_eq!(seen(lists.check(name)), want, "{name}, remembered");
        }
        // Names built at random from listed and unlisted labels, asked twice each, through the wire form too.
        let labels = [
            "c2", "ok", "wild", "sink", "nx", "filler", "n7", "example", "test", "x", "Y",
        ];
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..3_000 {
            let mut parts = Vec::new();
            for _ in 0..1 + rng % 5 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                parts.push(labels[(rng % labels.len() as u64) as usize]);
            }
            let name = parts.join(".").to_ascii_lowercase();
            let want = seen(lists.decide(&mut Suffixes::new(&name)));
            for _ in 0..2 {
                assert_eq!(seen(lists.check(&name)), want, "{name}");
                let wire: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
                let raw = query_of(&wire);
                let q = crate::wire::parse_query(&raw).expect("query");
                assert_eq!(seen(lists.check_query(&q)), want, "{name} from the wire");
            }
        }
        assert!(seen(lists.check("a.b.c2.example")).is_some());
        assert_eq!(
            seen(lists.check("sink.example"))
                .and_then(|s| s.3)
                .map(|l| l.v4),
            Some(vec![Ipv4Addr::new(192, 0, 2, 7)])
        );
        // A reload without c2.example: the new lists decide for themselves on this very thread.
        let reloaded = Lists::new(vec![block("*.wild.example\n"), rpz, allow]);
        assert_ne!(reloaded.memo_id, lists.memo_id);
        assert!(
            reloaded.check("a.b.c2.example").is_none(),
            "not the old lists' decision"
        );
        assert!(reloaded.check("a.wild.example").is_some());
        // Small lists are asked every time.
        let small = write(&d, "s.txt", b"c2.example\n");
        let small = List::load(&cfg("s", ListFormat::Domains, ListKind::Block), &small).unwrap();
        assert_eq!(Lists::new(vec![Arc::new(small)]).memo_id, None);
        std::fs::remove_dir_all(&d).ok();
    }

    /// A query whose name has exactly these labels (a label may hold a dot).
    fn query_of(labels: &[&[u8]]) -> Vec<u8> {
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in labels {
            m.push(l.len() as u8);
            m.extend_from_slice(l);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    #[test]
    fn a_query_name_is_split_once_for_every_list() {
        let d = tmp("split");
        let one = write(&d, "one.txt", b"other.example\n");
        let two = write(&d, "two.txt", b"evil.com\n");
        let allow = write(&d, "allow.txt", b"ok.evil.com\n");
        let load =
            |n: &str, p: &Path, k| Arc::new(List::load(&cfg(n, ListFormat::Auto, k), p).unwrap());
        let lists = Lists::new(vec![
            load("one", &one, ListKind::Block),
            load("two", &two, ListKind::Block),
            load("allow", &allow, ListKind::Allow),
        ]);
        // Plain names: suffixes come from the wire offsets; the second list and the allow list see the same.
        let q = query_of(&[b"X", b"y", b"evil", b"com"]);
        let q = crate::wire::parse_query(&q).unwrap();
        assert!(q.name_is_plain());
        let v = lists.check_query(&q).expect("blocked by the second list");
        assert_eq!((&*v.list.name, v.rule.name), ("two", "evil.com"));
        let q = query_of(&[b"a", b"ok", b"evil", b"com"]);
        assert!(
            lists
                .check_query(&crate::wire::parse_query(&q).unwrap())
                .is_none()
        );
        // A label holding a dot is escaped in the text, whose offsets then differ from the wire's: the
        // text is scanned instead (the wire offsets would find no parent at all here).
        let q = query_of(&[b"a.b", b"evil", b"com"]);
        let q = crate::wire::parse_query(&q).unwrap();
        assert_eq!(q.name, "a\\.b.evil.com");
        assert!(!q.name_is_plain());
        let v = lists.check_query(&q).expect("blocked below evil.com");
        assert_eq!(v.rule.name, "evil.com");
        let q = query_of(&[b"evil.com"]);
        assert!(
            lists
                .check_query(&crate::wire::parse_query(&q).unwrap())
                .is_none()
        );
        // Past the suffixes whose fingerprints are kept: hashed each time, still found.
        let deep = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.evil.com";
        assert_eq!(lists.check(deep).map(|v| v.rule.name), Some("evil.com"));
        for name in ["x.y.evil.com", "a\\.b.evil.com", "com", "", deep] {
            let (mut s, t) = (Suffixes::new(name), Suffixes::new(name));
            let all: Vec<&str> = (0..s.len()).map(|i| s.suffix(i)).collect();
            let want: Vec<&str> = suffix_starts(name).map(|i| &name[i..]).collect();
            assert_eq!(all, want, "{name}");
            assert_eq!(
                lists.check_in(&mut s).map(|v| v.rule.name),
                lists.check(t.name()).map(|v| v.rule.name)
            );
        }
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn hostile_file_counts_every_bad_line() {
        let d = tmp("hostile");
        let mut body = b"\xef\xbb\xbfA.example\r\nb.example\r\nb.example\r\n".to_vec();
        body.extend(format!("{}.com\r\n", "x".repeat(300)).as_bytes());
        body.extend("bücher.example\n\u{0}\nbad..name\nhttp://x.example\n".as_bytes());
        body.extend(&[0xff, 0xfe, b'\n']);
        let p = write(&d, "h.txt", &body);
        let l = List::load(&cfg("h", ListFormat::Domains, ListKind::Block), &p).unwrap();
        assert_eq!(l.len(), 3, "a, b, bücher");
        assert_eq!(l.counts.duplicates, 1);
        assert_eq!(l.counts.invalid, 5, "{:?}", l.problems);
        assert_eq!(l.problems[0].line, 4);
        assert!(l.block.get("xn--bcher-kva.example").is_some());
        // A directory or a missing file is an error, not an empty list.
        assert!(matches!(
            List::load(&cfg("d", ListFormat::Auto, ListKind::Block), &d).map_err(|e| e.problem),
            Err(LoadProblem::NotAFile)
        ));
        assert!(
            List::load(
                &cfg("m", ListFormat::Auto, ListKind::Block),
                &d.join("nope")
            )
            .is_err()
        );
        // Garbage (nothing valid) is refused, so a reload keeps the old list.
        let g = write(&d, "g.txt", b"<html>\n<body>oops</body>\n");
        let e = List::load(&cfg("g", ListFormat::Domains, ListKind::Block), &g)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("no valid entries"), "{e}");
        // It says where: the first bad lines with their numbers.
        let g_path = g.display().to_string();
        assert!(e.to_string().contains(&format!("{g_path}:1: ")), "{e}");
        assert!(e.to_string().contains(&format!("{g_path}:2: ")), "{e}");
        let e = scan(&cfg("g", ListFormat::Domains, ListKind::Block), &g).expect_err("refused");
        assert!(e.to_string().contains(&format!("{g_path}:1: ")), "{e}");
        let ip = write(&d, "ip.txt", b"# addresses\nnot-an-address\n");
        let e = List::load(&cfg("ip", ListFormat::Domains, ListKind::Ip), &ip)
            .err()
            .expect("refused");
        assert!(
            e.to_string().contains(&format!("{}:2: ", ip.display())),
            "{e}"
        );
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn format_is_guessed_past_a_comment_header_longer_than_the_head() {
        let d = tmp("header");
        let mut body = format!("# {}\n", "c".repeat(98)).repeat(1000).into_bytes();
        assert!(body.len() as u64 > HEAD_BYTES);
        body.extend(b"0.0.0.0 hh1.example\n0.0.0.0 hh2.example hh3.example\n");
        let p = write(&d, "hosts.txt", &body);
        let l = List::load(&cfg("h", ListFormat::Auto, ListKind::Block), &p).unwrap();
        assert_eq!(l.format, ListFormat::Hosts);
        assert_eq!((l.len(), l.counts.invalid), (3, 0));
        // A file of nothing but comments is not read whole to guess.
        let big = format!("# {}\n", "c".repeat(1000)).repeat(5000);
        assert!(big.len() as u64 > DETECT_BYTES);
        let p = write(&d, "comments.txt", big.as_bytes());
        let meta_len = std::fs::metadata(&p).unwrap().len();
        let (format, _) = sample(&p, meta_len).unwrap();
        assert_eq!(format, ListFormat::Domains);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn rpz_local_data_and_passthru() {
        let d = tmp("rpz");
        let p = write(
            &d,
            "z.rpz",
            b"$ORIGIN rpz.test.\n@ SOA a. b. 1 2 3 4 5\nsink.example A 192.0.2.7\nsink.example A 192.0.2.8\n\
              *.example CNAME .\nok.example CNAME rpz-passthru.\n",
        );
        let l = List::load(&cfg("z", ListFormat::Auto, ListKind::Block), &p).unwrap();
        assert_eq!(l.format, ListFormat::Rpz);
        let lists = Lists::new(vec![Arc::new(l)]);
        let v = lists.check("sink.example").expect("local data");
        assert_eq!(v.rule.rule.action, RuleAction::LocalData);
        assert_eq!(v.local.map(|d| d.v4.len()), Some(2));
        assert_eq!(
            lists.check("x.example").map(|v| v.rule.rule.action),
            Some(RuleAction::Nxdomain)
        );
        assert!(
            lists.check("example").is_none(),
            "wildcard owner skips the apex"
        );
        assert!(lists.check("ok.example").is_none(), "passthru");
        let ex = lists.explain("x.example");
        let lines = ex[0].list.lines_of(&ex[0].rule, false, false);
        assert_eq!(lines, vec![(5, "*.example CNAME .".to_string())]);
        std::fs::remove_dir_all(&d).ok();
    }
}
