//! The report as text: an 80-column table, CSV, and one self-contained HTML page with inline SVG timelines.

use super::{ClientSummary, Report};
use std::fmt::Write;

const WIDTH: usize = 80;

/// "2026-11-27T10:00:00.123Z" → "2026-11-27 10:00:00" (the table shows seconds; json/csv keep milliseconds).
fn plain(iso: &str) -> String {
    iso.get(..19).unwrap_or(iso).replace('T', " ")
}

/// "2026-11-27T10:00:00Z" → "11-27 10:00".
fn short(iso: &str) -> String {
    iso.get(5..16)
        .map(|s| s.replace('T', " "))
        .unwrap_or_default()
}

/// Cuts a string to `n` characters, marking the cut.
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

fn every(seconds: f64) -> String {
    // A timer under a second (a replay read with a small --burst) in milliseconds, not "0s".
    let d = if seconds < 1.0 {
        std::time::Duration::from_millis((seconds * 1000.0).round().max(0.0) as u64)
    } else {
        std::time::Duration::from_secs(seconds.round() as u64)
    };
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// How a machine is shown: its hostname(s), else its MAC, else its IP.
fn label(c: &ClientSummary) -> String {
    if c.hostnames.is_empty() {
        c.id.clone()
    } else {
        c.hostnames.join("/")
    }
}

/// Readable in an 80-column terminal.
/// ", and N connections" when the logs hold connections to the sinkhole host.
fn connections_note(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => " and 1 connection".into(),
        n => format!(" and {n} connections"),
    }
}

pub fn table(r: &Report) -> String {
    let mut o = String::new();
    let window = match (&r.since, &r.until) {
        (None, None) => None,
        (s, u) => Some(format!(
            "{} .. {}",
            s.as_deref().map(plain).unwrap_or_else(|| "start".into()),
            u.as_deref().map(plain).unwrap_or_else(|| "end".into())
        )),
    };
    let head = format!(
        "c2sink report: {} blocked queries{} in {} file{}",
        r.events,
        connections_note(r.connection_events),
        r.files,
        if r.files == 1 { "" } else { "s" }
    );
    // The window the report covers is never cut: past 80 columns (both --since and --until given, say)
    // it gets a line of its own.
    match window {
        None => {
            let _ = writeln!(o, "{}", fit(&format!("{head} (UTC)"), WIDTH));
        }
        Some(w) if head.len() + w.len() + 8 <= WIDTH => {
            let _ = writeln!(o, "{head}, {w} (UTC)");
        }
        Some(w) => {
            let _ = writeln!(o, "{}", fit(&head, WIDTH));
            let _ = writeln!(o, "from {w} (UTC)");
        }
    }
    let _ = writeln!(o, "{}", r.headline);
    for c in &r.clients {
        let name = label(c);
        let mut who = vec![name.clone()];
        who.extend(c.macs.iter().filter(|m| **m != name).cloned());
        let ips = c.ips.join(",");
        if ips != name {
            who.push(ips);
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{}",
            fit(
                &format!(
                    "{} {}",
                    if c.periodic { "BEACONING" } else { "CLIENT" },
                    who.join("  ")
                ),
                WIDTH
            )
        );
        let _ = writeln!(
            o,
            "{}",
            fit(
                &format!(
                    "  first {}  last {}  blocked {}  lists {}",
                    plain(&c.first_seen),
                    plain(&c.last_seen),
                    c.blocked,
                    c.lists.join(",")
                ),
                WIDTH
            )
        );
        if c.connections > 0 {
            let _ = writeln!(
                o,
                "{}",
                fit(
                    &format!(
                        "  CONNECTED to the sinkhole host {}x: {}",
                        c.connections,
                        c.connected_to.join(", ")
                    ),
                    WIDTH
                )
            );
        }
        let _ = writeln!(
            o,
            "  {:<36} {:>7}  {:<9} {:>6}",
            "C2 NAME", "QUERIES", "EVERY", "SPREAD"
        );
        let rows = c
            .names
            .iter()
            .map(|n| (n.qname.clone(), n.blocked, n.cadence))
            .chain(c.rules.iter().map(|r| {
                (
                    format!("{} names under {}", r.names, r.rule),
                    r.blocked,
                    r.cadence,
                )
            }));
        for (what, blocked, cadence) in rows {
            let (ev, spread, flag) = match cadence {
                Some(k) => (
                    every(k.median_interval_s),
                    format!("{:.0}%", (k.regularity * 100.0).min(999.0)),
                    if k.periodic { "PERIODIC" } else { "" },
                ),
                None => ("-".into(), "-".into(), ""),
            };
            let _ = writeln!(
                o,
                "  {:<36} {:>7}  {:<9} {:>6}  {flag}",
                fit(&what, 36),
                blocked,
                fit(&ev, 9),
                spread
            );
        }
    }
    if !r.names.is_empty() {
        let labels: std::collections::HashMap<&str, String> = r
            .clients
            .iter()
            .map(|c| (c.id.as_str(), label(c)))
            .collect();
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "  {:<34} {:>7} {:>7}  {:<11}  {:<11}",
            "C2 NAME", "CLIENTS", "QUERIES", "FIRST", "LAST"
        );
        for n in &r.names {
            let _ = writeln!(
                o,
                "  {:<34} {:>7} {:>7}  {:<11}  {:<11}",
                fit(&n.qname, 34),
                n.clients.len(),
                n.blocked,
                short(&n.first_seen),
                short(&n.last_seen)
            );
            let who: Vec<&str> = n
                .clients
                .iter()
                .map(|id| labels.get(id.as_str()).map_or(id.as_str(), String::as_str))
                .collect();
            let _ = writeln!(o, "{}", fit(&format!("    {}", who.join(", ")), WIDTH));
        }
    }
    if r.skipped_lines > 0 {
        let _ = writeln!(o);
        let _ = writeln!(o, "{} unreadable lines skipped, e.g.:", r.skipped_lines);
        for e in &r.skipped_examples {
            let _ = writeln!(o, "  {}", fit(e, WIDTH - 2));
        }
    }
    o.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}

/// One CSV field. A field a spreadsheet would take for a formula (starting with `=`, `+`, `-`, `@`, tab or
/// CR: a query name or hostname the client chose) is made text with a leading `'`, as OWASP advises, so
/// opening the report cannot run `=HYPERLINK(...)` or worse.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// One row per (client, name); `connected_to` is the client's (what it connected to on the sinkhole host),
/// and a client seen only connecting gets one row with no name.
pub fn csv(r: &Report) -> String {
    let mut o = String::from(
        "client,hostname,mac,ips,qname,lists,blocked,first_seen,last_seen,beacons,median_interval_s,regularity,periodic,connected_to\n",
    );
    for c in &r.clients {
        // The client's columns around each row's name columns.
        let mut row = |name: [String; 9]| {
            let who = [
                c.id.clone(),
                c.hostnames.join(" "),
                c.macs.join(" "),
                c.ips.join(" "),
            ];
            let fields: Vec<String> = who
                .iter()
                .chain(&name)
                .chain([&c.connected_to.join(" ")])
                .map(|f| csv_field(f))
                .collect();
            let _ = writeln!(o, "{}", fields.join(","));
        };
        if c.names.is_empty() {
            row([
                String::new(),
                String::new(),
                "0".into(),
                c.first_seen.clone(),
                c.last_seen.clone(),
                "0".into(),
                String::new(),
                String::new(),
                "false".into(),
            ]);
        }
        for n in &c.names {
            let (beacons, med, reg, per) = match n.cadence {
                Some(k) => (
                    k.beacons.to_string(),
                    format!("{:.1}", k.median_interval_s),
                    format!("{:.3}", k.regularity),
                    k.periodic.to_string(),
                ),
                None => (
                    n.blocked.min(1).to_string(),
                    String::new(),
                    String::new(),
                    "false".into(),
                ),
            };
            row([
                n.qname.clone(),
                n.lists.join(" "),
                n.blocked.to_string(),
                n.first_seen.clone(),
                n.last_seen.clone(),
                beacons,
                med,
                reg,
                per,
            ]);
        }
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}\
.headline{font-size:1.3em;font-weight:bold}.periodic{color:#b00020;font-weight:bold}\
svg{background:#fafafa;border:1px solid #ddd}svg text{font-size:11px;font-family:monospace}";

/// One page, no external assets: summary tables and a timeline of queries per infected client.
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>c2sink report</title><style>{STYLE}</style></head><body>\n<h1>c2sink report</h1>\n<p class=\"headline\">{}</p>\n<p>{} blocked queries{} from {} file(s){}{}.</p>\n",
        esc(&r.headline),
        r.events,
        connections_note(r.connection_events),
        r.files,
        r.since
            .as_deref()
            .map(|s| format!(", since {}", esc(s)))
            .unwrap_or_default(),
        r.until
            .as_deref()
            .map(|s| format!(", until {}", esc(s)))
            .unwrap_or_default(),
    );
    o.push_str("<h2>Clients</h2>\n<table><tr><th>Client</th><th>MAC</th><th>IP</th><th>First seen</th><th>Last seen</th><th>Blocked</th><th>C2 names</th><th>Beacon</th><th>Connected to the sinkhole</th></tr>\n");
    for c in &r.clients {
        let beacon = c
            .names
            .iter()
            .filter_map(|n| {
                n.cadence
                    .filter(|k| k.periodic)
                    .map(|k| (n.qname.clone(), k))
            })
            .chain(c.rules.iter().filter_map(|r| {
                r.cadence
                    .filter(|k| k.periodic)
                    .map(|k| (format!("{} names under {}", r.names, r.rule), k))
            }))
            .map(|(what, k)| format!("{} every {}", esc(&what), every(k.median_interval_s)))
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"periodic\">{}</td><td class=\"periodic\">{}</td></tr>",
            esc(&label(c)),
            esc(&c.macs.join(" ")),
            esc(&c.ips.join(" ")),
            esc(&plain(&c.first_seen)),
            esc(&plain(&c.last_seen)),
            c.blocked,
            c.names.len(),
            beacon,
            c.connected_to
                .iter()
                .map(|t| esc(t))
                .collect::<Vec<_>>()
                .join("<br>")
        );
    }
    o.push_str("</table>\n<h2>Timelines</h2>\n");
    let lo = r
        .clients
        .iter()
        .map(|c| c.first)
        .fold(f64::INFINITY, f64::min);
    let hi = r
        .clients
        .iter()
        .map(|c| c.last)
        .fold(f64::NEG_INFINITY, f64::max);
    for c in &r.clients {
        let _ = writeln!(o, "<h3>{}</h3>", esc(&label(c)));
        o.push_str(&timeline(c, lo, hi));
    }
    o.push_str("<h2>C2 names</h2>\n<table><tr><th>Name</th><th>Clients</th><th>Queries</th><th>First seen</th><th>Last seen</th></tr>\n");
    for n in &r.names {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.qname),
            esc(&n.clients.join(", ")),
            n.blocked,
            esc(&plain(&n.first_seen)),
            esc(&plain(&n.last_seen))
        );
    }
    o.push_str("</table>\n</body></html>\n");
    o
}

/// An inline SVG: one row per C2 name, one dot per query, on the report's common time axis.
fn timeline(c: &ClientSummary, lo: f64, hi: f64) -> String {
    const W: f64 = 900.0;
    const X0: f64 = 250.0;
    const X1: f64 = 885.0;
    const ROW: f64 = 22.0;
    const TOP: f64 = 24.0;
    let (lo, hi) = if hi - lo < 60.0 {
        (lo - 30.0, hi + 30.0)
    } else {
        (lo, hi)
    };
    let x = |t: f64| X0 + (t - lo) / (hi - lo) * (X1 - X0);
    let h = TOP + ROW * c.names.len() as f64 + 6.0;
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" role=\"img\">\n"
    );
    for i in 0..=4 {
        let t = lo + (hi - lo) * f64::from(i) / 4.0;
        let at = super::iso(t);
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            o,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{h}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"14\" text-anchor=\"{anchor}\">{1}</text>",
            x(t),
            esc(&short(&at))
        );
    }
    for (i, n) in c.names.iter().enumerate() {
        let y = TOP + ROW * i as f64 + ROW / 2.0;
        let color = if n.cadence.is_some_and(|k| k.periodic) {
            "#b00020"
        } else {
            "#1f5fa8"
        };
        let _ = writeln!(
            o,
            "<text x=\"4\" y=\"{:.1}\">{}</text>",
            y + 4.0,
            esc(&fit(&n.qname, 34))
        );
        for &t in &n.times {
            let _ = write!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>",
                x(t)
            );
        }
        o.push('\n');
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Options, build};

    fn sample() -> Report {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("c2sink-render-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("events.log");
        let mut text = String::new();
        for i in 0..10 {
            let t = humantime::format_rfc3339_seconds(
                humantime::parse_rfc3339("2026-11-27T10:00:00Z").unwrap()
                    + std::time::Duration::from_secs(600 * i),
            );
            text.push_str(&format!(
                "{{\"ts\":\"{t}\",\"kind\":\"block\",\"client_ip\":\"10.0.0.2\",\"client_mac\":\"aa:00:00:00:00:02\",\"client_hostname\":\"a-very-long-hostname-of-the-reception-computer-near-the-door\",\"qname\":\"{}\",\"list\":\"3cx\"}}\n",
                "x".repeat(60) + ".example"
            ));
        }
        text.push_str("{\"ts\":\"2026-11-27T10:05:00Z\",\"kind\":\"block\",\"client_ip\":\"10.0.0.3\",\"qname\":\"<b>.example\",\"list\":\"3cx\"}\n");
        // The second machine then connected to the sinkhole host, twice: as c2sink's trap logs it.
        for (ts, tail) in [
            (
                "10:05:01",
                "\"port\":443,\"seen\":\"tls\",\"sni\":\"officeaddons.com\"",
            ),
            ("10:05:09", "\"port\":443,\"seen\":\"unknown\""),
        ] {
            text.push_str(&format!(
                "{{\"ts\":\"2026-11-27T{ts}.000Z\",\"kind\":\"connection\",\"client_ip\":\"10.0.0.3\",\"client_port\":5000,\"client_mac\":null,\"client_hostname\":null,\"protocol\":\"tcp\",{tail}}}\n"
            ));
        }
        std::fs::write(&p, text).unwrap();
        let r = build(&Options {
            files: vec![p],
            since: None,
            until: None,
            burst: 2.0,
        })
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn intervals_read_as_an_admin_writes_them() {
        assert_eq!(every(600.4), "10m");
        assert_eq!(every(90.0), "1m30s");
        assert_eq!(every(0.25), "250ms");
        assert_eq!(every(0.0), "0s");
    }

    #[test]
    fn table_fits_80_columns() {
        let r = sample();
        let t = table(&r);
        for line in t.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} chars: {line}",
                line.chars().count()
            );
        }
        assert!(
            t.contains("2 clients look infected; 1 beacons on a timer."),
            "{t}"
        );
        assert!(t.contains("PERIODIC"), "{t}");
        assert!(t.contains("10m"), "{t}");
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let h = html(&sample());
        assert!(h.contains("<svg"));
        assert!(h.contains("&lt;b&gt;.example"));
        assert!(!h.contains("<b>.example"));
        for ext in ["src=\"http", "href=\"http", "<script src", "<link"] {
            assert!(!h.contains(ext), "{ext}");
        }
    }

    #[test]
    fn csv_has_one_row_per_client_and_name() {
        let c = csv(&sample());
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("aa:00:00:00:00:02,a-very-long"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with(",10,600.0,0.000,true,"), "{}", lines[1]);
        assert!(
            lines[2].starts_with("10.0.0.3,")
                && lines[2].ends_with(",tls officeaddons.com unknown :443"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn connections_to_the_sinkhole_host_are_evidence_not_unreadable_lines() {
        let r = sample();
        assert_eq!((r.events, r.connection_events, r.skipped_lines), (11, 2, 0));
        let c = r
            .clients
            .iter()
            .find(|c| c.id == "10.0.0.3")
            .expect("client");
        assert_eq!(c.connections, 2);
        assert_eq!(c.last_seen, "2026-11-27T10:05:09.000Z");
        let t = table(&r);
        assert!(t.contains("11 blocked queries and 2 connections"), "{t}");
        assert!(
            t.contains("CONNECTED to the sinkhole host 2x: tls officeaddons.com, unknown :443"),
            "{t}"
        );
        assert!(!t.contains("unreadable"), "{t}");
        assert!(html(&r).contains("tls officeaddons.com"));
    }
}
