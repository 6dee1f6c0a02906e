//! The C2 domain lists: loaded from files, held compactly, asked about every query's name.

mod matcher;
mod parse;

pub use matcher::{DomainSet, Hit, suffix_starts};
pub use parse::{LineProblem, normalize_domain};

use crate::config::{Config, SinkholeMode};
use std::path::{Path, PathBuf};

/// A list that could not be loaded at all (as opposed to single bad lines in it).
#[derive(Debug, thiserror::Error)]
#[error("list \"{name}\" ({}): {source}", path.display())]
pub struct ListError {
    pub name: String,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// One loaded list and what it holds.
pub struct List {
    /// Name used in events and summaries.
    pub name: String,
    /// File it was read from.
    pub path: PathBuf,
    /// Sinkhole mode for this list's matches; `None` falls back to the server's.
    pub action: Option<SinkholeMode>,
    /// The listed domains.
    pub domains: DomainSet,
    /// Lines that were not valid entries.
    pub problems: Vec<LineProblem>,
    /// Count of invalid lines (the `problems` vector keeps only the first few).
    pub invalid: usize,
    /// Count of lines repeating an earlier entry.
    pub duplicates: usize,
}

/// How many problems of one list are kept for reports.
pub const KEPT_PROBLEMS: usize = 20;

/// The list that decided a query, and the rule in it.
#[derive(Clone, Copy)]
pub struct Verdict<'a> {
    pub list: &'a List,
    pub rule: Hit<'a>,
}

/// All lists in force; swapped whole on reload so a query sees either the old set or the new one.
#[derive(Default)]
pub struct Lists {
    pub lists: Vec<List>,
}

impl List {
    /// Reads a plain domain list from a file.
    pub fn load(name: &str, path: &Path, action: Option<SinkholeMode>) -> Result<List, ListError> {
        let err = |source| ListError {
            name: name.to_string(),
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(err)?.len();
        // Rough pre-size: about 20 bytes a line.
        let guess = usize::try_from(size / 20).unwrap_or(0).min(1 << 24);
        let mut list = List {
            name: name.to_string(),
            path: path.to_path_buf(),
            action,
            domains: DomainSet::with_capacity(guess, guess * 16),
            problems: Vec::new(),
            invalid: 0,
            duplicates: 0,
        };
        // Invalid lines: all counted, the first few kept for reports.
        let bad = std::cell::RefCell::new((Vec::new(), 0usize));
        let note = |p: LineProblem| {
            let mut b = bad.borrow_mut();
            b.1 += 1;
            if b.0.len() < KEPT_PROBLEMS {
                b.0.push(p);
            }
        };
        parse::for_each_line(
            path,
            |line, text| match parse::domain_line(text) {
                None => {}
                Some(Ok(d)) if !list.domains.insert(&d, line) => list.duplicates += 1,
                Some(Ok(_)) => {}
                Some(Err(message)) => note(LineProblem { line, message }),
            },
            note,
        )
        .map_err(err)?;
        (list.problems, list.invalid) = bad.into_inner();
        list.domains.shrink_to_fit();
        Ok(list)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// True when the list holds nothing.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

impl Lists {
    /// Loads every list the config names; any list that cannot be read fails the whole load.
    pub fn load(cfg: &Config) -> Result<Lists, ListError> {
        let mut lists = Vec::with_capacity(cfg.blocklists.len());
        for l in &cfg.blocklists {
            lists.push(List::load(&l.name, &cfg.resolve(&l.path), None)?);
        }
        Ok(Lists { lists })
    }

    /// The first list (in config order) with a rule matching `name` or a parent of it.
    pub fn check(&self, name: &str) -> Option<Verdict<'_>> {
        self.lists.iter().find_map(|list| {
            list.domains
                .find_suffix(name)
                .map(|rule| Verdict { list, rule })
        })
    }

    /// Every list and rule that matches `name`, for `check --explain`.
    pub fn explain(&self, name: &str) -> Vec<Verdict<'_>> {
        let mut out = Vec::new();
        for list in &self.lists {
            for start in suffix_starts(name) {
                if let Some(rule) = list.domains.get(&name[start..]) {
                    out.push(Verdict { list, rule });
                }
            }
        }
        out
    }

    /// Total entries over all lists.
    pub fn total(&self) -> usize {
        self.lists.iter().map(List::len).sum()
    }
}
