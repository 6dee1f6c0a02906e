//! RPZ zone files (Response Policy Zones, as BIND and Unbound load them and threat-intel vendors ship them):
//! only QNAME triggers, with the actions a resolver can give without asking anyone else.
//!
//! | record                         | c2sink does                                   |
//! |--------------------------------|-----------------------------------------------|
//! | `name CNAME .`                 | NXDOMAIN                                      |
//! | `name CNAME *.`                | NODATA (NOERROR, no answer)                   |
//! | `name CNAME rpz-passthru.`     | allow (never blocked)                         |
//! | `name CNAME rpz-drop.`         | no answer at all                              |
//! | `name A 192.0.2.1` / `AAAA`    | answer with these addresses (local data)      |
//! | `*.name ...`                   | the same for names strictly below `name`      |
//!
//! Owners are completed with the current `$ORIGIN` as in BIND (`@` is that origin, `$ORIGIN .` the root;
//! BIND's zone dumps change `$ORIGIN` often), then have the zone name stripped. The zone is named by the
//! first SOA's owner, and until an SOA by the first `$ORIGIN`. An absolute owner outside it is invalid; a
//! relative one that the current `$ORIGIN` puts outside it is taken relative to the zone as written (as
//! c2sink always read hand-written files). With neither, a relative owner is taken as written. SOA and NS
//! records at the apex are read and ignored; `$TTL` and record TTLs give local data its TTL. Other triggers (`rpz-ip`, `rpz-nsdname`, `rpz-nsip`,
//! `rpz-client-ip`), CNAME rewrites to other names, `rpz-tcp-only` and other local-data types are counted as
//! skipped.

use super::formats::{Entry, Item};
use super::matcher::{Rule, RuleAction, scope};
use super::parse::{normalize_into, short};
use std::net::IpAddr;

/// Labels that mark a trigger other than QNAME.
const OTHER_TRIGGERS: &[&str] = &["rpz-ip", "rpz-nsdname", "rpz-nsip", "rpz-client-ip"];

/// Where a record's owner lands relative to the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Apex,
    /// The trigger name, relative to the zone, lower case, possibly starting with `*.`.
    Name(String),
}

/// Parser state across the lines of one zone file.
#[derive(Default)]
pub struct Zone {
    /// The zone's name (lower case, no trailing dot, "" for the root), stripped from every owner: the first
    /// SOA's owner; before any SOA, `first_origin`.
    zone: Option<String>,
    /// True once the first record has settled `zone` (for now: the first SOA names it in any case).
    zone_settled: bool,
    /// True once an SOA has named the zone.
    soa_seen: bool,
    /// The first `$ORIGIN`: the zone's name when the zone file starts without an SOA.
    first_origin: Option<String>,
    /// The current `$ORIGIN`, which relative owners and `@` stand for ("" for the root).
    origin: Option<String>,
    last_owner: Option<Owner>,
    /// The `$TTL` in force: the TTL of local data written without one.
    default_ttl: Option<u32>,
    /// A record spanning lines in parentheses: its first line and text so far.
    pending: Option<(u32, String)>,
    depth: i32,
}

/// A zone-file TTL in seconds: plain (`300`) or in BIND's units (`1h30m`, `2D`: w, d, h, m, s). A value with
/// the top bit set counts as 0 (RFC 2181, section 8); past 32 bits it is no TTL.
fn parse_ttl(text: &str) -> Option<u32> {
    let msb_zero = |t: u32| if t > i32::MAX as u32 { 0 } else { t };
    if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if let Ok(secs) = text.parse::<u32>() {
        return Some(msb_zero(secs));
    }
    let (mut total, mut n, mut digits) = (0u64, 0u64, false);
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            n = n.checked_mul(10)?.checked_add(u64::from(d))?;
            digits = true;
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        if !std::mem::take(&mut digits) {
            return None;
        }
        total = total.checked_add(n.checked_mul(unit)?)?;
        n = 0;
    }
    if digits || text.is_empty() {
        return None;
    }
    u32::try_from(total).ok().map(msb_zero)
}

impl Zone {
    /// Reads one line; rules go to `out` with the line their record started on.
    pub fn line(
        &mut self,
        lineno: u32,
        text: &str,
        buf: &mut String,
        out: &mut dyn FnMut(u32, Item<'_>),
    ) {
        let text = strip_comment(text);
        let (open, close) = parens(text);
        self.depth += open - close;
        if let Some((start, mut acc)) = self.pending.take() {
            acc.push(' ');
            acc.push_str(text);
            if self.depth > 0 {
                self.pending = Some((start, acc));
            } else {
                self.depth = 0;
                self.record(start, &acc, buf, out);
            }
            return;
        }
        if self.depth > 0 {
            self.pending = Some((lineno, text.to_string()));
            return;
        }
        self.depth = 0;
        self.record(lineno, text, buf, out);
    }

    /// Reports a record whose parentheses never closed.
    pub fn finish(&mut self, out: &mut dyn FnMut(u32, Item<'_>)) {
        if let Some((start, _)) = self.pending.take() {
            out(
                start,
                Item::Invalid("parenthesis opened here is never closed".into()),
            );
        }
    }

    fn record(
        &mut self,
        lineno: u32,
        text: &str,
        buf: &mut String,
        out: &mut dyn FnMut(u32, Item<'_>),
    ) {
        let blank_owner = text.starts_with([' ', '\t']);
        let cleaned = text.replace(['(', ')'], " ");
        let mut words = cleaned.split_whitespace().peekable();
        let Some(&first) = words.peek() else {
            return;
        };
        let invalid = |msg: String| Item::Invalid(msg);
        if first.starts_with('$') {
            words.next();
            let arg = words.next();
            return match (first.to_ascii_uppercase().as_str(), arg) {
                ("$TTL", Some(t)) => match parse_ttl(t) {
                    Some(ttl) => self.default_ttl = Some(ttl),
                    None => out(lineno, invalid(format!("\"{}\" is not a TTL", short(t)))),
                },
                ("$TTL", None) => out(lineno, invalid("$TTL without a value".into())),
                ("$ORIGIN", Some(o)) => match self.absolute(o) {
                    Some(origin) => {
                        if self.first_origin.is_none() {
                            self.first_origin = Some(origin.clone());
                        }
                        // Records came before any name for the zone (`@ SOA` with no origin known): the
                        // first `$ORIGIN` names it after all.
                        if self.zone_settled && self.zone.is_none() {
                            self.zone = Some(origin.clone());
                        }
                        self.origin = Some(origin);
                    }
                    None => out(
                        lineno,
                        invalid(format!(
                            "\"{}\" is relative but no $ORIGIN is known",
                            short(o)
                        )),
                    ),
                },
                ("$INCLUDE", _) => out(lineno, invalid("$INCLUDE is not supported".into())),
                _ => out(
                    lineno,
                    invalid(format!("\"{}\": unknown directive", short(text.trim()))),
                ),
            };
        }
        let owner_text = if blank_owner { None } else { words.next() };
        // TTL and class, in either order, before the type.
        let mut rtype = None;
        let mut ttl = Ok(self.default_ttl);
        for w in words.by_ref().take(3) {
            let up = w.to_ascii_uppercase();
            if w.starts_with(|c: char| c.is_ascii_digit()) {
                // Judged once the record is known: only local data answers with it.
                ttl = parse_ttl(w).map(Some).ok_or(w);
                continue;
            }
            if ["IN", "CH", "HS", "CS"].contains(&up.as_str()) {
                continue;
            }
            rtype = Some(up);
            break;
        }
        let Some(rtype) = rtype else {
            return out(
                lineno,
                invalid(format!("\"{}\": no record type", short(text.trim()))),
            );
        };
        let rdata: Vec<&str> = words.collect();
        let owner = match owner_text {
            Some(o) => match self.owner(o, &rtype) {
                Ok(owner) => owner,
                Err(e) => return out(lineno, invalid(e)),
            },
            None => match &self.last_owner {
                Some(o) => o.clone(),
                None => return out(lineno, invalid("record without an owner name".into())),
            },
        };
        self.last_owner = Some(owner.clone());
        let trigger = match owner {
            Owner::Apex if rtype == "SOA" || rtype == "NS" => return,
            Owner::Apex => {
                return out(
                    lineno,
                    Item::Skipped(format!("{rtype} record at the zone apex")),
                );
            }
            Owner::Name(t) => t,
        };
        if let Some(kind) = trigger
            .rsplit('.')
            .next()
            .filter(|l| OTHER_TRIGGERS.contains(l))
        {
            return out(
                lineno,
                Item::Skipped(format!(
                    "{kind} trigger (only QNAME triggers are supported)"
                )),
            );
        }
        let (base, scope) = match trigger.strip_prefix("*.") {
            Some(rest) => (rest, scope::BELOW),
            None => (trigger.as_str(), scope::EXACT),
        };
        if base == "*" || trigger == "*" {
            return out(
                lineno,
                invalid("a wildcard owner for every name in the zone".into()),
            );
        }
        let first_rdata = rdata.first().map(|s| s.to_ascii_lowercase());
        let (action, allow, addr) = match (rtype.as_str(), first_rdata.as_deref()) {
            (_, None) => {
                return out(lineno, invalid(format!("{rtype} record without data")));
            }
            ("CNAME", Some(".")) => (RuleAction::Nxdomain, false, None),
            ("CNAME", Some("*.")) => (RuleAction::Nodata, false, None),
            ("CNAME", Some("rpz-passthru.")) => (RuleAction::Default, true, None),
            ("CNAME", Some("rpz-drop.")) => (RuleAction::Drop, false, None),
            ("CNAME", Some(target)) => {
                return out(
                    lineno,
                    Item::Skipped(format!(
                        "CNAME to \"{}\" (rewrites are not supported)",
                        short(target)
                    )),
                );
            }
            ("A" | "AAAA", _) if ttl.is_err() => {
                let w = ttl.err().unwrap_or_default();
                return out(lineno, invalid(format!("\"{}\" is not a TTL", short(w))));
            }
            ("A", Some(a)) => match a.parse::<std::net::Ipv4Addr>() {
                Ok(v4) => (RuleAction::LocalData, false, Some(IpAddr::V4(v4))),
                Err(_) => {
                    return out(
                        lineno,
                        invalid(format!("\"{}\" is not an IPv4 address", short(a))),
                    );
                }
            },
            ("AAAA", Some(a)) => match a.parse::<std::net::Ipv6Addr>() {
                Ok(v6) => (RuleAction::LocalData, false, Some(IpAddr::V6(v6))),
                Err(_) => {
                    return out(
                        lineno,
                        invalid(format!("\"{}\" is not an IPv6 address", short(a))),
                    );
                }
            },
            ("SOA", _) => return out(lineno, invalid("SOA record below the zone apex".into())),
            (t, _) => {
                return out(
                    lineno,
                    Item::Skipped(format!(
                        "{t} record (only A and AAAA local data are supported)"
                    )),
                );
            }
        };
        if let Err(e) = normalize_into(base, buf) {
            return out(lineno, invalid(e));
        }
        out(
            lineno,
            Item::Entry(Entry {
                name: buf,
                rule: Rule { scope, action },
                allow,
                addr,
                ttl: addr.and(ttl.ok().flatten()),
            }),
        );
    }

    /// A name made absolute against the current `$ORIGIN` (or the zone's name before any): lower case, no
    /// trailing dot, "" for the root; `None` for a relative name when neither is known.
    fn absolute(&self, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        if let Some(abs) = lower.strip_suffix('.') {
            return Some(abs.to_string());
        }
        let origin = self.origin.as_ref().or(self.zone.as_ref())?;
        Some(match (lower.as_str(), origin.as_str()) {
            ("@", _) => origin.clone(),
            (_, "") => lower,
            _ => format!("{lower}.{origin}"),
        })
    }

    /// Where an owner name falls: the apex, or a trigger relative to the zone.
    fn owner(&mut self, name: &str, rtype: &str) -> Result<Owner, String> {
        let abs = self.absolute(name);
        if !self.zone_settled {
            self.zone_settled = true;
            self.zone = self.first_origin.clone();
        }
        // The first SOA names the zone, whatever came before it (`$ORIGIN .`, an NS record).
        if rtype == "SOA"
            && !self.soa_seen
            && let Some(a) = &abs
        {
            self.soa_seen = true;
            self.zone = Some(a.clone());
        }
        let Some(abs) = abs else {
            // No origin and no zone name known: the owner is relative to the zone as written.
            return Ok(match name {
                "@" => Owner::Apex,
                _ => Owner::Name(name.to_ascii_lowercase()),
            });
        };
        match self.zone.as_deref() {
            // No zone name known: nothing to strip.
            None => Ok(Owner::Name(abs)),
            Some(z) if abs == z => Ok(Owner::Apex),
            Some("") => Ok(Owner::Name(abs)),
            Some(z) => match abs.strip_suffix(z).and_then(|r| r.strip_suffix('.')) {
                Some(rel) if !rel.is_empty() => Ok(Owner::Name(rel.to_string())),
                // A relative owner that the current `$ORIGIN` puts outside the zone (hand-written files with
                // `$ORIGIN .` or a stray `$ORIGIN`, which c2sink always read as relative to the zone):
                // still relative to the zone, as written, rather than the whole list refused.
                _ if name != "@" && !name.ends_with('.') => {
                    Ok(Owner::Name(name.to_ascii_lowercase()))
                }
                _ => Err(format!("\"{}\" is outside the zone \"{z}\"", short(&abs))),
            },
        }
    }
}

/// The part of a zone-file line before a `;` comment (outside quoted strings).
fn strip_comment(text: &str) -> &str {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &text[..i],
            _ => {}
        }
    }
    text
}

/// Count of `(` and `)` outside quotes.
fn parens(text: &str) -> (i32, i32) {
    let mut quoted = false;
    let (mut open, mut close) = (0, 0);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => open += 1,
            ')' if !quoted => close += 1,
            _ => {}
        }
    }
    (open, close)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Got = (u32, String, Rule, bool, Option<IpAddr>);
    type Notes = Vec<(u32, String)>;

    fn parse(text: &str) -> (Vec<Got>, Notes, Notes) {
        let mut z = Zone::default();
        let mut buf = String::new();
        let (mut got, mut skipped, mut invalid) = (Vec::new(), Vec::new(), Vec::new());
        let mut out = |line: u32, item: Item<'_>| match item {
            Item::Entry(e) => got.push((line, e.name.to_string(), e.rule, e.allow, e.addr)),
            Item::Skipped(m) => skipped.push((line, m)),
            Item::Invalid(m) => invalid.push((line, m)),
        };
        for (i, l) in text.lines().enumerate() {
            z.line(i as u32 + 1, l, &mut buf, &mut out);
        }
        z.finish(&mut out);
        (got, skipped, invalid)
    }

    fn rule(scope: u8, action: RuleAction) -> Rule {
        Rule { scope, action }
    }

    #[test]
    fn ttls_in_seconds_and_in_bind_units() {
        for (text, want) in [
            ("300", Some(300)),
            ("0", Some(0)),
            ("1h30m", Some(5_400)),
            ("2D", Some(172_800)),
            ("1w2d3h4m5s", Some(788_645)),
            ("2147483647", Some(i32::MAX as u32)),
            ("2147483648", Some(0)),
            ("4294967295", Some(0)),
            ("4294967296", None),
            ("4000w", Some(0)),
            ("8000w", None),
            ("+300", None),
            ("1h30", None),
            ("h", None),
            ("3x", None),
            ("", None),
        ] {
            assert_eq!(parse_ttl(text), want, "{text:?}");
        }
    }

    #[test]
    fn local_data_takes_its_own_ttl_else_the_zones() {
        let mut z = Zone::default();
        let mut buf = String::new();
        let mut got = Vec::new();
        let mut invalid = Vec::new();
        let zone = "$ORIGIN rpz.example.\nno-ttl.test A 192.0.2.9\n$TTL 1h\nzone.test A 192.0.2.1\n\
                    own.test 60 IN A 192.0.2.2\n\tIN 2m AAAA 2001:db8::2\nnx.test 60 CNAME .\n\
                    bad.test 5y A 192.0.2.3\n\tAAAA 2001:db8::3\ncname.test 1h30 CNAME .\n$TTL soon\n";
        for (i, l) in zone.lines().enumerate() {
            z.line(i as u32 + 1, l, &mut buf, &mut |line, item| match item {
                Item::Entry(e) => got.push((line, e.name.to_string(), e.ttl)),
                Item::Invalid(m) => invalid.push((line, m)),
                Item::Skipped(_) => {}
            });
        }
        let names = |n: &str| n.to_string();
        assert_eq!(
            got,
            vec![
                (2, names("no-ttl.test"), None),
                (4, names("zone.test"), Some(3_600)),
                (5, names("own.test"), Some(60)),
                (6, names("own.test"), Some(120)),
                (7, names("nx.test"), None),
                // the owner of a record with a bad TTL still owns the blank-owner records after it
                (9, names("bad.test"), Some(3_600)),
                // a block rule does not use its TTL: a bad one does not cost the rule
                (10, names("cname.test"), None),
            ]
        );
        assert_eq!(
            invalid,
            vec![
                (8, "\"5y\" is not a TTL".to_string()),
                (11, "\"soon\" is not a TTL".to_string())
            ]
        );
    }

    #[test]
    fn qname_triggers_and_actions() {
        let zone = "$TTL 300\n\
            $ORIGIN rpz.example.\n\
            @ IN SOA ns.rpz.example. admin.rpz.example. (\n\
                1 ; serial\n\
                3600 600 86400 300 )\n\
            \tIN NS ns.rpz.example.\n\
            nx.test CNAME .\n\
            *.nx.test 300 IN CNAME .\n\
            nodata.test IN 60 CNAME *.\n\
            good.test CNAME rpz-passthru.\n\
            drop.test CNAME rpz-drop.\n\
            sink.test A 192.0.2.1\n\
            \tAAAA 2001:db8::1\n\
            abs.test.rpz.example. CNAME .\n\
            ; comment\n\
            Upper.TEST cname . ; trailing\n";
        let (got, skipped, invalid) = parse(zone);
        assert!(invalid.is_empty(), "{invalid:?}");
        assert!(skipped.is_empty(), "{skipped:?}");
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            got,
            vec![
                (
                    7,
                    "nx.test".into(),
                    rule(scope::EXACT, RuleAction::Nxdomain),
                    false,
                    None
                ),
                (
                    8,
                    "nx.test".into(),
                    rule(scope::BELOW, RuleAction::Nxdomain),
                    false,
                    None
                ),
                (
                    9,
                    "nodata.test".into(),
                    rule(scope::EXACT, RuleAction::Nodata),
                    false,
                    None
                ),
                (
                    10,
                    "good.test".into(),
                    rule(scope::EXACT, RuleAction::Default),
                    true,
                    None
                ),
                (
                    11,
                    "drop.test".into(),
                    rule(scope::EXACT, RuleAction::Drop),
                    false,
                    None
                ),
                (
                    12,
                    "sink.test".into(),
                    rule(scope::EXACT, RuleAction::LocalData),
                    false,
                    Some(v4)
                ),
                (
                    13,
                    "sink.test".into(),
                    rule(scope::EXACT, RuleAction::LocalData),
                    false,
                    Some(v6)
                ),
                (
                    14,
                    "abs.test".into(),
                    rule(scope::EXACT, RuleAction::Nxdomain),
                    false,
                    None
                ),
                (
                    16,
                    "upper.test".into(),
                    rule(scope::EXACT, RuleAction::Nxdomain),
                    false,
                    None
                ),
            ]
        );
    }

    #[test]
    fn unsupported_records_are_skipped_and_bad_ones_invalid() {
        let zone = "$ORIGIN rpz.example.\n\
            32.1.2.0.192.rpz-ip CNAME .\n\
            ns.evil.rpz-nsdname CNAME .\n\
            rw.test CNAME walled.garden.example.\n\
            tcp.test CNAME rpz-tcp-only.\n\
            txt.test TXT \"hello; world\"\n\
            other.zone. CNAME .\n\
            bad.test A 999.1.1.1\n\
            notype.test\n\
            $INCLUDE other.zone\n\
            open.test ( CNAME\n";
        let (got, skipped, invalid) = parse(zone);
        assert!(got.is_empty(), "{got:?}");
        let sl: Vec<u32> = skipped.iter().map(|s| s.0).collect();
        assert_eq!(sl, vec![2, 3, 4, 5, 6]);
        let il: Vec<u32> = invalid.iter().map(|s| s.0).collect();
        assert_eq!(il, vec![7, 8, 9, 10, 11], "{invalid:?}");
    }

    #[test]
    fn zone_without_origin_takes_owners_as_written() {
        let (got, _, invalid) = parse("evil.test CNAME .\n*.evil.test CNAME .\n");
        assert!(invalid.is_empty());
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].2.scope, scope::BELOW);
        // The SOA owner names the zone when there is no $ORIGIN.
        let (got, _, invalid) =
            parse("rpz.local. SOA a. b. 1 2 3 4 5\nx.test.rpz.local. CNAME .\ny.test CNAME .\n");
        assert!(invalid.is_empty(), "{invalid:?}");
        let names: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
        assert_eq!(names, vec!["x.test", "y.test"]);
    }

    #[test]
    fn owners_follow_the_current_origin_as_in_bind_dumps() {
        let zone = "$ORIGIN .\n$TTL 300\n\
            rpz.example IN SOA localhost. root.localhost. 1 3600 600 86400 60\n\
            \t\tNS localhost.\n\
            $ORIGIN rpz.example.\n\
            c2 CNAME .\n\
            $ORIGIN c2.rpz.example.\n\
            * CNAME .\n\
            @ A 192.0.2.1\n\
            $ORIGIN evil\n\
            www CNAME .\n\
            abs.test.rpz.example. CNAME .\n\
            $ORIGIN other.example.\n\
            x CNAME .\n\
            @ CNAME .\n\
            $ORIGIN rpz.example.\n\
            @ NS localhost.\n";
        let (got, skipped, invalid) = parse(zone);
        assert!(skipped.is_empty(), "{skipped:?}");
        let found: Vec<(u32, &str, u8)> =
            got.iter().map(|g| (g.0, g.1.as_str(), g.2.scope)).collect();
        assert_eq!(
            found,
            vec![
                (6, "c2", scope::EXACT),
                (8, "c2", scope::BELOW),
                (9, "c2", scope::EXACT),
                (11, "www.evil.c2", scope::EXACT),
                (12, "abs.test", scope::EXACT),
                (14, "x", scope::EXACT),
            ]
        );
        assert_eq!(
            invalid,
            vec![(
                15,
                "\"other.example\" is outside the zone \"rpz.example\"".to_string()
            )]
        );
        // Without an SOA first, the first $ORIGIN names the zone; `@` is the current origin.
        let (got, _, invalid) = parse(
            "$ORIGIN rpz.example.\nfoo CNAME .\n$ORIGIN sub.rpz.example.\n@ CNAME .\nx.example. CNAME .\n",
        );
        let names: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
        assert_eq!(names, vec!["foo", "sub"]);
        assert_eq!(invalid.len(), 1, "{invalid:?}");
        assert_eq!(invalid[0].0, 5);
    }

    /// Layouts that loaded before owners followed `$ORIGIN` still block the same names.
    #[test]
    fn zone_files_written_by_hand_keep_their_triggers() {
        let soa = "SOA ns.rpz.local. host.rpz.local. ( 1 3600 600 86400 60 )";
        for (what, zone) in [
            (
                "@ SOA before any $ORIGIN",
                format!(
                    "$TTL 300\n@ {soa}\n  NS localhost.\n$ORIGIN rpz.local.\nbad.com CNAME .\n"
                ),
            ),
            (
                "NS before the SOA",
                format!("@ NS localhost.\n$ORIGIN rpz.local.\n@ {soa}\nbad.com CNAME .\n"),
            ),
            (
                "$ORIGIN . then relative owners",
                format!("$ORIGIN .\nrpz.local {soa}\nbad.com CNAME .\n"),
            ),
            (
                "a stray $ORIGIN after an absolute SOA",
                format!("rpz.local. {soa}\n$ORIGIN evil.\nbad.com CNAME .\n"),
            ),
        ] {
            let (got, skipped, invalid) = parse(&zone);
            let names: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
            assert_eq!(names, vec!["bad.com"], "{what}");
            assert!(
                skipped.is_empty() && invalid.is_empty(),
                "{what}: {invalid:?}"
            );
        }
    }
}
