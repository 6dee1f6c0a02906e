//! The list formats admins download: plain domains, hosts files, AdBlock-style filters and RPZ zones; each line
//! becomes zero or more rules, or a counted reason why not.
//!
//! Matching semantics (the same in every format unless said otherwise):
//! - a plain name (`example.com`, a hosts entry, `||example.com^`) covers the name and every name below it;
//! - `*.example.com` covers only names strictly below `example.com`, not `example.com` itself;
//! - in RPZ, an owner `example.com` covers only that exact name and `*.example.com` only names below it, as in
//!   BIND and Unbound.

use super::matcher::{Rule, RuleAction, scope};
use super::parse::{normalize_into, short};
use super::rpz::Zone;
use crate::config::ListFormat;
use std::net::IpAddr;

/// One rule read from a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Normalized name (without a `*.` prefix; see `rule.scope`).
    pub name: &'a str,
    pub rule: Rule,
    /// An exception (`@@||x^`, `rpz-passthru.`) rather than a block.
    pub allow: bool,
    /// The address of an RPZ local-data record.
    pub addr: Option<IpAddr>,
    /// The TTL of an RPZ local-data record (its own, else the zone's `$TTL`).
    pub ttl: Option<u32>,
}

/// What a line yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    Entry(Entry<'a>),
    /// A valid line that DNS cannot enforce or that is deliberately not blocked (e.g. `localhost`).
    Skipped(String),
    /// A line that is not valid in the list's format.
    Invalid(String),
}

/// Host names that hosts files map to themselves; never blocked, counted as skipped.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// AdBlock `$` options that do not narrow a rule beyond what DNS sees.
const HARMLESS_OPTIONS: &[&str] = &["all", "document", "doc", "popup"];

/// `$important` makes a block rule outrank exceptions, which c2sink's precedence (every allow rule beats
/// every block rule) cannot express: such block rules are skipped. On an exception it only outranks
/// important block rules, so it changes nothing and is accepted.
const IMPORTANT: &str = "important";

/// Reads the lines of one list file in one format; keeps the state RPZ zones need.
pub struct LineParser {
    format: ListFormat,
    buf: String,
    zone: Zone,
}

impl LineParser {
    /// A parser for `format` (which must not be `Auto`: detect first).
    pub fn new(format: ListFormat) -> Self {
        LineParser {
            format,
            buf: String::with_capacity(256),
            zone: Zone::default(),
        }
    }

    /// Parses one line (BOM and line end already stripped), calling `out` with (line number, item).
    pub fn line(&mut self, lineno: u32, text: &str, out: &mut dyn FnMut(u32, Item<'_>)) {
        match self.format {
            ListFormat::Auto | ListFormat::Domains => self.domains_line(lineno, text, out),
            ListFormat::Hosts => self.hosts_line(lineno, text, out),
            ListFormat::Adblock => self.adblock_line(lineno, text, out),
            ListFormat::Rpz => self.zone.line(lineno, text, &mut self.buf, out),
        }
    }

    /// Call at end of file: reports a record left open (RPZ parentheses).
    pub fn finish(&mut self, out: &mut dyn FnMut(u32, Item<'_>)) {
        if self.format == ListFormat::Rpz {
            self.zone.finish(out);
        }
    }

    fn domains_line(&mut self, lineno: u32, text: &str, out: &mut dyn FnMut(u32, Item<'_>)) {
        let content = before(text, '#').trim();
        if content.is_empty() {
            return;
        }
        let mut words = content.split_whitespace();
        let first = words.next().unwrap_or_default();
        if words.next().is_some() {
            let msg = format!(
                "\"{}\": more than one word on a domain-list line",
                short(content)
            );
            return out(lineno, Item::Invalid(msg));
        }
        self.name(lineno, first, false, out);
    }

    fn hosts_line(&mut self, lineno: u32, text: &str, out: &mut dyn FnMut(u32, Item<'_>)) {
        let content = before(text, '#').trim();
        if content.is_empty() {
            return;
        }
        let mut words = content.split_whitespace();
        let first = words.next().unwrap_or_default();
        if parse_ip(first).is_none() {
            if words.next().is_none() {
                // A bare name in a hosts file: many published lists mix the two.
                return self.name(lineno, first, false, out);
            }
            let msg = format!(
                "\"{}\": a hosts line starts with an IP address",
                short(content)
            );
            return out(lineno, Item::Invalid(msg));
        }
        let mut any = false;
        for name in words {
            any = true;
            if parse_ip(name).is_some() {
                out(
                    lineno,
                    Item::Skipped(format!("\"{}\" is an address, not a name", short(name))),
                );
            } else {
                self.name(lineno, name, false, out);
            }
        }
        if !any {
            out(
                lineno,
                Item::Invalid(format!("\"{}\": an address with no names", short(content))),
            );
        }
    }

    fn adblock_line(&mut self, lineno: u32, text: &str, out: &mut dyn FnMut(u32, Item<'_>)) {
        let line = text.trim();
        if line.is_empty() || line.starts_with('!') || line.starts_with('[') {
            return;
        }
        if ["##", "#@#", "#?#", "#$#", "#%#"]
            .iter()
            .any(|m| line.contains(m))
        {
            return out(lineno, skipped(line, "cosmetic (element hiding) rule"));
        }
        if line.starts_with('#') {
            return;
        }
        let (allow, body) = match line.strip_prefix("@@") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        if let Some(rest) = body.strip_prefix("||") {
            let (pattern, options) = match rest.split_once('$') {
                Some((p, o)) => (p, Some(o)),
                None => (rest, None),
            };
            if let Some(o) = options
                && let Some(bad) = o
                    .split(',')
                    .map(str::trim)
                    .find(|o| !(HARMLESS_OPTIONS.contains(o) || (allow && *o == IMPORTANT)))
            {
                let why = if bad == IMPORTANT {
                    "option $important (a block that exceptions cannot override) is not supported"
                        .to_string()
                } else {
                    format!("option ${bad} cannot be enforced by DNS")
                };
                return out(lineno, skipped(line, &why));
            }
            let Some(domain) = pattern
                .strip_suffix('|')
                .unwrap_or(pattern)
                .strip_suffix('^')
            else {
                return out(
                    lineno,
                    skipped(
                        line,
                        "no ^ after the domain, so it matches more than a domain",
                    ),
                );
            };
            if domain.contains(['/', ':', '?', '|', '^'])
                || domain.trim_start_matches("*.").contains('*')
            {
                return out(lineno, skipped(line, "not a whole-domain rule"));
            }
            return self.name(lineno, domain, allow, out);
        }
        if body.starts_with('/') || body.starts_with('|') || body.contains(['/', '*', '$', '^']) {
            return out(lineno, skipped(line, "URL or regex rule, not a domain"));
        }
        let mut words = body.split_whitespace();
        let first = words.next().unwrap_or_default();
        match (parse_ip(first), words.next()) {
            // hosts-style lines are valid in AdGuard filters.
            (Some(_), Some(_)) => self.hosts_line(lineno, body, out),
            (None, None) => self.name(lineno, first, allow, out),
            _ => out(lineno, skipped(line, "not a domain rule")),
        }
    }

    /// One name from a domains, hosts or AdBlock line: `*.x` wildcard or plain, local names skipped.
    fn name(&mut self, lineno: u32, raw: &str, allow: bool, out: &mut dyn FnMut(u32, Item<'_>)) {
        let (raw_name, scope) = match raw.strip_prefix("*.") {
            Some(rest) => (rest, scope::BELOW),
            None => (raw, scope::TREE),
        };
        if let Err(e) = normalize_into(raw_name, &mut self.buf) {
            return out(lineno, Item::Invalid(e));
        }
        if scope == scope::TREE && LOCAL_NAMES.contains(&self.buf.as_str()) {
            let msg = format!("\"{}\" is a local name, not blocked", self.buf);
            return out(lineno, Item::Skipped(msg));
        }
        out(
            lineno,
            Item::Entry(Entry {
                name: &self.buf,
                rule: Rule {
                    scope,
                    action: RuleAction::Default,
                },
                allow,
                addr: None,
                ttl: None,
            }),
        );
    }
}

fn skipped(line: &str, why: &str) -> Item<'static> {
    Item::Skipped(format!("\"{}\": {why}", short(line)))
}

/// The text before a comment character.
fn before(text: &str, comment: char) -> &str {
    match text.find(comment) {
        Some(i) => &text[..i],
        None => text,
    }
}

/// An IPv4 or IPv6 address, with any `%zone` suffix ignored.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.split('%').next().unwrap_or(s);
    s.parse().ok()
}

/// True for `owner [ttl] [class] TYPE rdata` where the rdata fits the type, so that a stray line of
/// words ("not a domain") is not taken for a zone record.
fn looks_like_rr(upper: &[String]) -> bool {
    let mut i = 1;
    while i < upper.len() && (upper[i].parse::<u32>().is_ok() || upper[i] == "IN") {
        i += 1;
    }
    let (Some(rtype), rdata) = (upper.get(i), upper.get(i + 1)) else {
        return false;
    };
    match (rtype.as_str(), rdata) {
        ("A" | "AAAA", Some(d)) => parse_ip(d).is_some(),
        ("CNAME", Some(d)) => {
            d.ends_with('.')
                || !d.contains(|c: char| !(c.is_ascii_alphanumeric() || ".-_*".contains(c)))
        }
        ("SOA" | "NS", Some(_)) => true,
        _ => false,
    }
}

/// Rule lines (comments and blank lines not counted) that settle a guess of a list's format.
pub const DETECT_LINES: u32 = 500;

/// Guesses a list's format from its first rule lines, fed one at a time so that the reader decides how
/// far to read: comments and blank lines do not count toward [`DETECT_LINES`], so a long header cannot use
/// them up.
#[derive(Debug, Default)]
pub struct Detector {
    /// Votes: rpz, adblock, hosts, domains.
    votes: [u32; 4],
    /// Rule lines seen.
    lines: u32,
}

impl Detector {
    /// Takes the next line of the file.
    pub fn line(&mut self, line: &str) {
        let t = line.trim_start_matches('\u{feff}').trim();
        if t.is_empty() || t.starts_with('#') {
            return;
        }
        // `;` (zone) and `!` (AdBlock) comments hint at a format but are not rules.
        if !t.starts_with([';', '!']) {
            self.lines = self.lines.saturating_add(1);
        }
        let upper: Vec<String> = t
            .split_whitespace()
            .take(6)
            .map(str::to_ascii_uppercase)
            .collect();
        let votes = &mut self.votes;
        if t.starts_with("$ORIGIN") || t.starts_with("$TTL") {
            votes[0] += 10;
        } else if t.starts_with(';') {
            votes[0] += 1;
        } else if looks_like_rr(&upper) {
            votes[0] += 3;
        } else if t.starts_with("||") || t.starts_with("@@") || t.starts_with('!') {
            votes[1] += 3;
        } else if t.starts_with("[Adblock") || t.contains("##") {
            votes[1] += 10;
        } else if upper.len() >= 2 && parse_ip(&upper[0]).is_some() {
            votes[2] += 1;
        } else {
            votes[3] += 1;
        }
    }

    /// True once [`DETECT_LINES`] rule lines were seen: reading on would not be worth it.
    pub fn settled(&self) -> bool {
        self.lines >= DETECT_LINES
    }

    /// The best guess from the lines seen so far (`domains` when nothing says otherwise).
    pub fn format(&self) -> ListFormat {
        let formats = [
            ListFormat::Rpz,
            ListFormat::Adblock,
            ListFormat::Hosts,
            ListFormat::Domains,
        ];
        let mut best = 3;
        for i in 0..4 {
            if self.votes[i] > self.votes[best] {
                best = i;
            }
        }
        formats[best]
    }
}

/// Guesses a list's format from the first [`DETECT_LINES`] rule lines of `sample` (comments and blanks are
/// not evidence).
pub fn detect(sample: &str) -> ListFormat {
    let mut d = Detector::default();
    for line in sample.lines() {
        if d.settled() {
            break;
        }
        d.line(line);
    }
    d.format()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, scope, allow) of every entry, and the skipped / invalid counts.
    fn parse(format: ListFormat, text: &str) -> (Vec<(String, u8, bool)>, usize, usize) {
        let mut p = LineParser::new(format);
        let (mut entries, mut skipped, mut invalid) = (Vec::new(), 0, 0);
        let mut out = |_: u32, item: Item<'_>| match item {
            Item::Entry(e) => entries.push((e.name.to_string(), e.rule.scope, e.allow)),
            Item::Skipped(_) => skipped += 1,
            Item::Invalid(_) => invalid += 1,
        };
        for (i, l) in text.lines().enumerate() {
            p.line(i as u32 + 1, l, &mut out);
        }
        p.finish(&mut out);
        (entries, skipped, invalid)
    }

    fn names(v: &[(String, u8, bool)]) -> Vec<&str> {
        v.iter().map(|e| e.0.as_str()).collect()
    }

    #[test]
    fn domains_lines_comments_and_wildcards() {
        let (e, s, i) = parse(
            ListFormat::Domains,
            "# c\n\nA.com # trailing\n*.b.com\nbücher.example\na.com b.com\nlocalhost\n",
        );
        assert_eq!(names(&e), vec!["a.com", "b.com", "xn--bcher-kva.example"]);
        assert_eq!(e[0].1, scope::TREE);
        assert_eq!(e[1].1, scope::BELOW);
        assert_eq!((s, i), (1, 1));
    }

    #[test]
    fn hosts_any_address_several_names_local_entries_skipped() {
        let text = "127.0.0.1 localhost\n::1\tip6-localhost ip6-loopback\n0.0.0.0\tads.example  tracker.example # c\n\
                    :: v6.example\n127.0.0.1   x.example\nfe80::1%lo0 z.example\n255.255.255.255 broadcasthost\n\
                    bare.example\n0.0.0.0 0.0.0.0\nnot-an-ip a.example\n0.0.0.0\n";
        let (e, s, i) = parse(ListFormat::Hosts, text);
        assert_eq!(
            names(&e),
            vec![
                "ads.example",
                "tracker.example",
                "v6.example",
                "x.example",
                "z.example",
                "bare.example"
            ]
        );
        assert_eq!(
            s, 5,
            "localhost, ip6-localhost, ip6-loopback, broadcasthost, 0.0.0.0"
        );
        assert_eq!(i, 2);
    }

    #[test]
    fn adblock_subset_dns_can_enforce() {
        let text = "[Adblock Plus 2.0]\n! comment\n||ads.example^\n@@||good.ads.example^\n||x.example^$popup\n\
                    ||y.example^$third-party\n||z.example\nexample.org##.banner\n/regex/\n||a.example/path^\n\
                    plain.example\n||*.wild.example^\n||c.example^|\n";
        let (e, s, i) = parse(ListFormat::Adblock, text);
        assert_eq!(
            e,
            vec![
                ("ads.example".into(), scope::TREE, false),
                ("good.ads.example".into(), scope::TREE, true),
                ("x.example".into(), scope::TREE, false),
                ("plain.example".into(), scope::TREE, false),
                ("wild.example".into(), scope::BELOW, false),
                ("c.example".into(), scope::TREE, false),
            ]
        );
        assert_eq!((s, i), (5, 0));
    }

    #[test]
    fn important_blocks_are_skipped_but_important_exceptions_kept() {
        // An important block outranks exceptions, which allow-beats-block cannot honour; an important
        // exception is what every exception already is here.
        let text = "||imp.example^$important\n@@||imp.example^\n||b.example^$popup,important\n\
                    @@||ok.example^$important\n";
        let mut p = LineParser::new(ListFormat::Adblock);
        let mut got = Vec::new();
        for (i, l) in text.lines().enumerate() {
            p.line(i as u32 + 1, l, &mut |n, item| {
                got.push(match item {
                    Item::Entry(e) => (n, format!("{} allow={}", e.name, e.allow)),
                    Item::Skipped(m) | Item::Invalid(m) => (n, m),
                })
            });
        }
        let why = "option $important (a block that exceptions cannot override) is not supported";
        assert_eq!(
            got,
            vec![
                (1, format!("\"||imp.example^$important\": {why}")),
                (2, "imp.example allow=true".into()),
                (3, format!("\"||b.example^$popup,important\": {why}")),
                (4, "ok.example allow=true".into()),
            ]
        );
    }

    #[test]
    fn hostile_lines_are_invalid_not_fatal() {
        let long = format!("{}.com", "a".repeat(300));
        let (e, _, i) = parse(
            ListFormat::Domains,
            &format!("{long}\na..b\n\u{1}x.com\nok.com\n"),
        );
        assert_eq!(names(&e), vec!["ok.com"]);
        assert_eq!(i, 3);
    }

    #[test]
    fn detects_each_format() {
        assert_eq!(detect("# hi\na.com\nb.com\n"), ListFormat::Domains);
        assert_eq!(
            detect("# hosts\n127.0.0.1 localhost\n0.0.0.0 a.com\n"),
            ListFormat::Hosts
        );
        assert_eq!(detect("! title\n||a.com^\n"), ListFormat::Adblock);
        assert_eq!(
            detect("$TTL 300\n@ SOA a. b. 1 2 3 4 5\nevil.com CNAME .\n"),
            ListFormat::Rpz
        );
        assert_eq!(
            detect("evil.com CNAME .\n*.evil.com CNAME .\n"),
            ListFormat::Rpz
        );
        assert_eq!(detect(""), ListFormat::Domains);
    }

    #[test]
    fn a_long_comment_header_does_not_use_up_the_sample() {
        let header = "# comment\n\n".repeat(DETECT_LINES as usize + 1);
        assert_eq!(
            detect(&format!("{header}0.0.0.0 hh1.example\n")),
            ListFormat::Hosts
        );
        // Rule lines do count: a guess is settled after DETECT_LINES of them.
        let names = "a.example\n".repeat(DETECT_LINES as usize);
        assert_eq!(
            detect(&format!("{names}0.0.0.0 a.example\n0.0.0.0 b.example\n")),
            ListFormat::Domains
        );
    }
}
