//! What `c2sink check` says about lists: per-list counts with the first problems, and "why is this name
//! blocked?".

use super::{Explained, Lists, RuleAction, normalize_domain};
use crate::config::{ListKind, SinkholeMode};
use std::fmt::Write;

/// Per-list counts and the first invalid and skipped lines (file:line); the bool is true when a list has
/// invalid lines.
pub fn summary(lists: &Lists) -> (String, bool) {
    let mut out = String::new();
    let mut bad = false;
    for l in &lists.lists {
        let c = &l.counts;
        let kind = l.config.kind.as_str();
        let _ = writeln!(
            out,
            "list \"{}\" ({}, {kind}) {}: {} block rules, {} allow rules, {} lines, {} invalid, {} skipped, {} duplicates{}",
            l.name,
            l.format.as_str(),
            l.path.display(),
            l.len(),
            l.allow.len(),
            c.lines,
            c.invalid,
            c.skipped,
            c.duplicates,
            if c.conflicts > 0 {
                format!(", {} conflicting", c.conflicts)
            } else {
                String::new()
            }
        );
        for (what, kept, total) in [
            ("invalid", &l.problems, c.invalid + c.conflicts),
            ("skipped", &l.skips, c.skipped),
        ] {
            for p in kept.iter().take(5) {
                let _ = writeln!(
                    out,
                    "  {}:{}: {what}: {}",
                    l.path.display(),
                    p.line,
                    p.message
                );
            }
            let shown = kept.len().min(5) as u64;
            if total > shown {
                let _ = writeln!(out, "  ... and {} more {what} lines", total - shown);
            }
        }
        // An allow list may well be empty (no false positive yet): it exempts nothing, which is no problem.
        let allow_list = l.config.kind == ListKind::Allow;
        if l.is_empty() && !allow_list {
            let _ = writeln!(
                out,
                "  {}: holds no rule: this list blocks nothing",
                l.path.display()
            );
        }
        bad |= c.invalid > 0 || c.conflicts > 0 || (l.is_empty() && !allow_list);
    }
    (out, bad)
}

/// The action name a block by `e` gets, as it appears in block events.
fn action_name(e: &Explained<'_>, server_mode: SinkholeMode) -> &'static str {
    match e.rule.rule.action {
        RuleAction::Default => e.list.config.action.unwrap_or(server_mode).as_str(),
        RuleAction::Nxdomain => "nxdomain",
        RuleAction::Nodata => "nodata",
        RuleAction::LocalData => "local-data",
        RuleAction::Drop => "drop",
    }
}

/// Every list and rule (with file:line) matching `raw`, which one decides, and why; `route` says where a
/// name no list blocks goes ([`crate::config::Config::route_of`]).
pub fn explain(
    lists: &Lists,
    raw: &str,
    server_mode: SinkholeMode,
    route: &dyn Fn(&str) -> String,
) -> String {
    let mut out = String::new();
    let name = match normalize_domain(raw) {
        Ok(n) => n,
        Err(e) => return format!("{raw}: not a domain name: {e}\n"),
    };
    let hits = lists.explain(&name);
    if hits.is_empty() {
        let _ = writeln!(
            out,
            "{name}: not blocked (no list has it or a parent of it); {}",
            route(&name)
        );
        return out;
    }
    let allowed = lists.allowed(&name);
    let verdict = lists.check(&name);
    let decided = |e: &Explained<'_>| {
        if e.allow {
            allowed.is_some_and(|(l, m)| std::ptr::eq(l, e.list) && m == e.rule)
        } else {
            verdict.is_some_and(|v| std::ptr::eq(v.list, e.list) && v.rule == e.rule)
        }
    };
    match (allowed, verdict) {
        (Some(_), _) => {
            let _ = writeln!(
                out,
                "{name}: ALLOWED (an allow rule beats every block rule); {}",
                route(&name)
            );
        }
        (None, Some(_)) => {
            let _ = writeln!(out, "{name}: BLOCKED");
        }
        (None, None) => {
            let _ = writeln!(out, "{name}: not blocked");
        }
    }
    for e in &hits {
        let at_apex = e.rule.name.len() == name.len();
        let lines = e.list.lines_of(&e.rule, e.allow, at_apex);
        let role = match (decided(e), e.allow) {
            (true, true) => "allowed by".to_string(),
            (true, false) => format!("blocked ({}) by", action_name(e, server_mode)),
            (false, true) => "also allowed by".to_string(),
            (false, false) => format!(
                "{} ({}), not applied:",
                if allowed.is_some() {
                    "overridden block"
                } else {
                    "also matches"
                },
                action_name(e, server_mode)
            ),
        };
        let _ = write!(
            out,
            "  {role} list \"{}\" rule \"{}\"",
            e.list.name,
            e.rule.text()
        );
        if lines.is_empty() {
            let _ = writeln!(
                out,
                " ({}, line not found: the file changed since loading)",
                e.list.path.display()
            );
        }
        for (i, (line, text)) in lines.iter().enumerate() {
            let sep = if i == 0 { "" } else { "    also" };
            let _ = writeln!(out, "{sep} at {}:{line}: {text}", e.list.path.display());
        }
    }
    out
}
