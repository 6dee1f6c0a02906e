//! `c2sink report`: reads event logs and answers the incident responder's questions: which machines asked
//! for C2 names, since when, how often, and which of them beacon on a timer.
//!
//! A machine is told apart by its MAC when the event has one, else by its hostname, else by its IP (behind a
//! router, the one of a full-length client subnet), so that an IP address reassigned by DHCP half-way does
//! not merge two machines into one, nor a router all the machines behind it.

pub mod cadence;
pub mod read;
mod render;

pub use cadence::Cadence;

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Output forms of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a terminal, 80 columns.
    Table,
    /// For scripts.
    Json,
    /// One row per (client, name), for spreadsheets.
    Csv,
    /// One self-contained page with a timeline per client, for the incident team.
    Html,
}

/// Reads `--burst`: seconds, a finite number not below zero (a negative or NaN window would silently
/// make every query its own beacon, or none).
pub fn parse_burst(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("\"{s}\": must be a number of seconds, 0 or more")),
        Err(e) => Err(format!("\"{s}\": {e}")),
    }
}

/// What to read and which time window to keep.
pub struct Options {
    pub files: Vec<PathBuf>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Queries of one client for one name this close together (seconds) are one beacon.
    pub burst: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub headline: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub files: usize,
    /// Blocked queries: one per block line, or its `count` when it folds repeats.
    pub events: usize,
    /// Connections to the sinkhole host (`[trap]`) in the same logs.
    pub connection_events: usize,
    pub skipped_lines: usize,
    /// Clients that asked for at least one blocked name.
    pub infected: usize,
    /// Of those, clients with at least one name queried on a timer.
    pub beaconing: usize,
    pub clients: Vec<ClientSummary>,
    pub names: Vec<NameSummary>,
    #[serde(skip)]
    pub skipped_examples: Vec<String>,
}

/// One machine.
#[derive(Debug, Serialize)]
pub struct ClientSummary {
    /// The key the machine is told apart by: MAC, else hostname, else IP.
    pub id: String,
    pub hostnames: Vec<String>,
    pub macs: Vec<String>,
    /// Its addresses: behind a router, those of full-length client subnets, not the router's.
    pub ips: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub blocked: usize,
    /// Connections it made to the sinkhole host after a block: stronger evidence than a lookup.
    pub connections: usize,
    /// What it connected to, each once (`tls officeaddons.com`, `http sbmsa.wiki:80`).
    pub connected_to: Vec<String>,
    pub lists: Vec<String>,
    /// A name, or a rule over several names, was queried on a timer.
    pub periodic: bool,
    pub names: Vec<ClientName>,
    /// Rules over two or more of its names that were each asked only once (in one burst), timed as one:
    /// malware that asks a new random label under its C2 zone for each beacon keeps the zone's timer, which
    /// no single name shows.
    pub rules: Vec<ClientRule>,
    #[serde(skip)]
    first: f64,
    #[serde(skip)]
    last: f64,
}

/// One C2 name as one machine asked for it.
#[derive(Debug, Serialize)]
pub struct ClientName {
    pub qname: String,
    /// The lists that blocked this name for this machine.
    pub lists: Vec<String>,
    pub blocked: usize,
    pub first_seen: String,
    pub last_seen: String,
    pub cadence: Option<Cadence>,
    /// Seconds since the epoch of each query (for timelines).
    #[serde(skip)]
    times: Vec<f64>,
}

/// One rule, over the names it matched for one machine that were each asked only once.
#[derive(Debug, Serialize)]
pub struct ClientRule {
    /// The lists whose rule of that text matched.
    pub lists: Vec<String>,
    pub rule: String,
    /// Distinct names, each asked only once, it matched.
    pub names: usize,
    pub blocked: usize,
    pub cadence: Option<Cadence>,
}

/// One C2 name over all machines.
#[derive(Debug, Serialize)]
pub struct NameSummary {
    pub qname: String,
    pub blocked: usize,
    pub clients: Vec<String>,
    pub lists: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Default)]
struct ClientAcc {
    hostnames: BTreeSet<String>,
    macs: BTreeSet<String>,
    ips: BTreeSet<String>,
    lists: BTreeSet<String>,
    /// Per name: the times asked and the lists that blocked it for this machine.
    names: BTreeMap<String, NameTimes>,
    /// Per rule text: the lists it came from and the names it matched.
    rules: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
    /// Times of its connections to the sinkhole host (a folded line's first and last), how many, and their
    /// targets.
    connections: Vec<f64>,
    connected: usize,
    connected_to: BTreeSet<String>,
}

/// One name over all machines: who asked, and its queries.
#[derive(Default)]
struct NameAcc {
    clients: BTreeSet<String>,
    queries: NameTimes,
}

/// One name's queries (from one machine, or from all).
#[derive(Default)]
struct NameTimes {
    /// When: each line's time, and a folded line's first time too.
    times: Vec<f64>,
    lists: BTreeSet<String>,
    /// Queries, counting each line's `count`.
    blocked: usize,
}

impl NameTimes {
    /// Adds one line: its times, the queries it stands for, the list that blocked them.
    fn add(&mut self, when: &[f64], queries: usize, list: Option<&String>) {
        self.times.extend_from_slice(when);
        self.blocked = self.blocked.saturating_add(queries);
        self.lists.extend(list.cloned());
    }
}

/// The times one line tells of: its own, and a folded line's first one.
fn line_times(e: &read::Entry) -> impl Iterator<Item = f64> + use<> {
    let first = (e.first_time != e.time).then(|| secs(e.first_time));
    first.into_iter().chain([secs(e.time)])
}

/// A log that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Reads the logs and builds the report.
pub fn build(opts: &Options) -> Result<Report, ReadError> {
    let mut clients: BTreeMap<String, ClientAcc> = BTreeMap::new();
    let mut names: BTreeMap<String, NameAcc> = BTreeMap::new();
    let mut skipped = read::Skipped::default();
    let (mut events, mut connection_events) = (0usize, 0);
    let mut vanished = read::Vanished::default();
    for path in &opts.files {
        let done = read::for_each_entry(path, opts.since, opts.until, &mut skipped, |mut e| {
            let connection = e.is_connection();
            if !e.is_block() && !connection {
                return;
            }
            let when: Vec<f64> = line_times(&e).collect();
            let queries = e.queries() as usize;
            let target = connection.then(|| e.connection_target());
            let read::Machine {
                id,
                mac,
                hostname,
                ip,
            } = e.machine();
            let c = clients.entry(id.clone()).or_default();
            c.ips.insert(ip);
            c.macs.extend(mac);
            c.hostnames.extend(hostname);
            if let Some(target) = target {
                connection_events += queries;
                c.connections.extend(&when);
                c.connected = c.connected.saturating_add(queries);
                c.connected_to.insert(target);
                return;
            }
            events = events.saturating_add(queries);
            let qname = e.report_name();
            c.names
                .entry(qname.clone())
                .or_default()
                .add(&when, queries, e.list.as_ref());
            if let (Some(l), Some(r)) = (&e.list, &e.rule) {
                let (lists, matched) = c.rules.entry(r.clone()).or_default();
                lists.insert(l.clone());
                // A line folding many names counts as one name here (its names are at least one), so that
                // its queries add to the rule's row.
                matched.insert(qname.clone());
            }
            let n = names.entry(qname).or_default();
            n.clients.insert(id);
            n.queries.add(&when, queries, e.list.as_ref());
            c.lists.extend(e.list);
        });
        vanished
            .note(path, done)
            .map_err(|(path, source)| ReadError { path, source })?;
    }
    let files = vanished
        .finish("report", opts.files.len())
        .map_err(|(path, source)| ReadError { path, source })?;
    let mut out: Vec<ClientSummary> = clients
        .into_iter()
        .map(|(id, c)| summarize_client(id, c, opts.burst))
        .collect();
    out.sort_by(|a, b| {
        b.periodic
            .cmp(&a.periodic)
            .then(b.blocked.cmp(&a.blocked))
            .then(a.id.cmp(&b.id))
    });
    let mut name_out: Vec<NameSummary> = names
        .into_iter()
        .map(|(qname, n)| {
            let (n, clients) = (n.queries, n.clients);
            let (first, last) = span(&n.times);
            NameSummary {
                qname,
                blocked: n.blocked,
                clients: clients.into_iter().collect(),
                lists: n.lists.into_iter().collect(),
                first_seen: iso(first),
                last_seen: iso(last),
            }
        })
        .collect();
    name_out.sort_by(|a, b| {
        b.clients
            .len()
            .cmp(&a.clients.len())
            .then(b.blocked.cmp(&a.blocked))
    });
    let infected = out.len();
    let beaconing = out.iter().filter(|c| c.periodic).count();
    let headline = match infected {
        0 => "No client asked for a blocked name in these logs.".to_string(),
        n => format!(
            "{n} client{} look{} infected; {beaconing} beacon{} on a timer.",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" },
            if beaconing == 1 { "s" } else { "" },
        ),
    };
    Ok(Report {
        headline,
        since: opts.since.map(|t| iso(secs(t))),
        until: opts.until.map(|t| iso(secs(t))),
        files,
        events,
        connection_events,
        skipped_lines: skipped.count,
        infected,
        beaconing,
        clients: out,
        names: name_out,
        skipped_examples: skipped.examples,
    })
}

fn summarize_client(id: String, c: ClientAcc, burst: f64) -> ClientSummary {
    let mut names: Vec<ClientName> = c
        .names
        .into_iter()
        .map(|(qname, n)| {
            let mut times = n.times;
            times.sort_by(f64::total_cmp);
            let (first, last) = span(&times);
            ClientName {
                qname,
                lists: n.lists.into_iter().collect(),
                blocked: n.blocked,
                first_seen: iso(first),
                last_seen: iso(last),
                cadence: cadence::estimate(&times, burst),
                times,
            }
        })
        .collect();
    names.sort_by(|a, b| b.blocked.cmp(&a.blocked).then(a.qname.cmp(&b.qname)));
    // A name asked in more than one burst has a cadence of its own; the rule is timed over the others (a
    // new label per beacon), and only when there are two or more of them.
    let once: BTreeMap<&str, &ClientName> = names
        .iter()
        .filter(|n| n.cadence.is_none())
        .map(|n| (n.qname.as_str(), n))
        .collect();
    let mut rules: Vec<ClientRule> = c
        .rules
        .into_iter()
        .filter_map(|(rule, (lists, matched))| {
            let under: Vec<&ClientName> = matched
                .iter()
                .filter_map(|q| once.get(q.as_str()).copied())
                .collect();
            (under.len() > 1).then(|| {
                let times: Vec<f64> = under.iter().flat_map(|n| n.times.iter().copied()).collect();
                ClientRule {
                    lists: lists.into_iter().collect(),
                    rule,
                    names: under.len(),
                    blocked: under.iter().fold(0, |s, n| s.saturating_add(n.blocked)),
                    cadence: cadence::estimate(&times, burst),
                }
            })
        })
        .collect();
    rules.sort_by(|a, b| b.blocked.cmp(&a.blocked).then(a.rule.cmp(&b.rule)));
    let first = names
        .iter()
        .map(|n| span(&n.times).0)
        .chain(c.connections.iter().copied())
        .fold(f64::INFINITY, f64::min);
    let last = names
        .iter()
        .map(|n| span(&n.times).1)
        .chain(c.connections.iter().copied())
        .fold(f64::NEG_INFINITY, f64::max);
    ClientSummary {
        id,
        hostnames: c.hostnames.into_iter().collect(),
        macs: c.macs.into_iter().collect(),
        ips: c.ips.into_iter().collect(),
        first_seen: iso(first),
        last_seen: iso(last),
        blocked: names.iter().fold(0, |s, n| s.saturating_add(n.blocked)),
        connections: c.connected,
        connected_to: c.connected_to.into_iter().collect(),
        lists: c.lists.into_iter().collect(),
        periodic: names.iter().any(|n| n.cadence.is_some_and(|c| c.periodic))
            || rules.iter().any(|r| r.cadence.is_some_and(|c| c.periodic)),
        names,
        rules,
        first,
        last,
    }
}

impl Report {
    /// The report in the requested form.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => render::table(self),
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            Format::Csv => render::csv(self),
            Format::Html => render::html(self),
        }
    }
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn span(times: &[f64]) -> (f64, f64) {
    times
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &t| {
            (lo.min(t), hi.max(t))
        })
}

/// RFC 3339 to the millisecond (as events are written), UTC. Through whole microseconds: an event's
/// `.287` is 0.28699... as an f64, which cut to the millisecond would show as `.286`.
fn iso(t: f64) -> String {
    if !t.is_finite() || t < 0.0 {
        return String::new();
    }
    let micros = (t * 1e6).round();
    if micros >= u64::MAX as f64 {
        return String::new();
    }
    let st = UNIX_EPOCH + std::time::Duration::from_micros(micros as u64);
    humantime::format_rfc3339_millis(st).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the report of `lines` (JSON lines) written to a file of their own.
    fn report_of(lines: &[String]) -> Report {
        report_since(lines, None)
    }

    fn report_since(lines: &[String], since: Option<SystemTime>) -> Report {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("c2sink-report-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("events.log");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        let r = build(&Options {
            files: vec![p],
            since,
            until: None,
            burst: cadence::BURST,
        })
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    fn line(ip: &str, at_s: u64, qname: &str, rule: &str, extra: &str) -> String {
        listed(ip, at_s, qname, "c2", rule, extra)
    }

    fn listed(ip: &str, at_s: u64, qname: &str, list: &str, rule: &str, extra: &str) -> String {
        let ts = humantime::format_rfc3339_millis(
            humantime::parse_rfc3339("2026-11-27T10:00:00Z").unwrap()
                + std::time::Duration::from_secs(at_s),
        );
        format!(
            "{{\"ts\":\"{ts}\",\"kind\":\"block\",\"client_ip\":\"{ip}\",\"qname\":\"{qname}\",\"list\":\"{list}\",\"rule\":\"{rule}\"{extra}}}"
        )
    }

    #[test]
    fn a_new_name_per_beacon_under_one_rule_is_still_a_timer() {
        // 10.0.0.2 beacons every 10 minutes (±20 s), each time to a fresh random label under one zone: no
        // name repeats, so only the rule shows the timer. 10.0.0.3 asks names of that zone at random.
        let mut lines = Vec::new();
        for i in 0..8u64 {
            let jitter = [0, 20, 5, 15, 0, 10, 20, 5][i as usize];
            lines.push(line(
                "10.0.0.2",
                600 * i + jitter,
                &format!("k{i}x7q.c2zone.example"),
                "*.c2zone.example",
                "",
            ));
        }
        // The same machine also asks one name of the zone now and then: it has a row of its own and must not
        // blur the zone's timer.
        for at in [130u64, 1010, 1500, 2950, 4400] {
            lines.push(line(
                "10.0.0.2",
                at,
                "update.c2zone.example",
                "*.c2zone.example",
                "",
            ));
        }
        // A rule of the same text in two lists is one row.
        for i in 0..6u64 {
            for list in ["listA", "listB"] {
                lines.push(listed(
                    "10.0.0.4",
                    300 * i,
                    &format!("r{i}.same.example"),
                    list,
                    "same.example",
                    "",
                ));
            }
        }
        for (i, at) in [30u64, 200, 2400, 2500, 4100].into_iter().enumerate() {
            lines.push(line(
                "10.0.0.3",
                at,
                &format!("n{i}.c2zone.example"),
                "*.c2zone.example",
                "",
            ));
        }
        let r = report_of(&lines);
        let client = |ip: &str| r.clients.iter().find(|c| c.id == ip).unwrap();
        let a = client("10.0.0.2");
        assert!(
            a.names
                .iter()
                .all(|n| n.cadence.is_none() == (n.qname != "update.c2zone.example")),
            "{a:?}"
        );
        assert_eq!(a.rules.len(), 1, "{a:?}");
        let k = a.rules[0].cadence.expect("eight beacons");
        assert!(k.periodic, "{k:?}");
        assert!((k.median_interval_s - 600.0).abs() < 30.0, "{k:?}");
        assert_eq!((a.rules[0].names, a.rules[0].blocked), (8, 8));
        assert!(a.periodic);
        assert!(!client("10.0.0.3").periodic, "{r:?}");
        let same = &client("10.0.0.4").rules;
        assert_eq!(same.len(), 1, "{same:?}");
        assert_eq!(same[0].lists, vec!["listA", "listB"]);
        assert_eq!((same[0].names, same[0].blocked), (6, 12));
        assert!(same[0].cadence.is_some_and(|k| k.periodic), "{same:?}");
        assert_eq!(r.beaconing, 2);
        let t = render::table(&r);
        assert!(
            t.lines()
                .any(|l| l.contains("8 names under *.c2zone.example") && l.ends_with("PERIODIC")),
            "{t}"
        );
    }

    #[test]
    fn a_folded_line_counts_its_queries_and_both_its_times() {
        let lines = [
            line("10.0.0.2", 0, "sbmsa.wiki", "sbmsa.wiki", ""),
            line(
                "10.0.0.2",
                1,
                "sbmsa.wiki",
                "sbmsa.wiki",
                ",\"count\":40,\"first_ts\":\"2026-11-27T10:00:00.200Z\"",
            ),
            // Not a time: the line cannot be placed.
            line(
                "10.0.0.2",
                5,
                "sbmsa.wiki",
                "sbmsa.wiki",
                ",\"count\":3,\"first_ts\":\"soon\"",
            ),
        ];
        let r = report_of(&lines);
        assert_eq!(r.events, 41);
        assert_eq!(r.skipped_lines, 1);
        let n = &r.clients[0].names[0];
        assert_eq!(n.blocked, 41);
        assert_eq!(
            n.times,
            [0.0, 0.2, 1.0].map(|d| 1_795_773_600.0 + d).to_vec()
        );
        assert_eq!(r.names[0].blocked, 41);
        assert!(r.clients[0].rules.is_empty(), "one name: no rule row");
        // A folded line is placed at its ts: from half a second in, it counts whole, but its first time,
        // before the window, is left out.
        let since = humantime::parse_rfc3339("2026-11-27T10:00:00.500Z").ok();
        let r = report_since(&lines, since);
        assert_eq!(r.events, 40);
        assert_eq!(r.clients[0].names[0].times, vec![1_795_773_601.0]);
        assert_eq!(r.clients[0].first_seen, "2026-11-27T10:00:01.000Z");
        // A count no log could hold adds up to the most there can be, not round to nothing.
        let huge = [
            line("10.0.0.9", 0, "a.example", "a.example", ",\"count\":1"),
            line(
                "10.0.0.9",
                9,
                "a.example",
                "a.example",
                ",\"count\":18446744073709551615",
            ),
        ];
        let r = report_of(&huge);
        assert_eq!(r.events, usize::MAX);
        assert_eq!(r.clients[0].blocked, usize::MAX);
    }

    #[test]
    fn a_line_folding_many_names_counts_under_its_rule_not_its_last_name() {
        let lines = [
            line("10.0.0.9", 0, "a1.c2.example", "c2.example", ""),
            line("10.0.0.9", 0, "a2.c2.example", "c2.example", ""),
            line(
                "10.0.0.9",
                1,
                "a9.c2.example",
                "c2.example",
                ",\"count\":500,\"first_ts\":\"2026-11-27T10:00:00.300Z\",\"fold\":\"names\"",
            ),
        ];
        let r = report_of(&lines);
        assert_eq!(r.events, 502);
        let c = &r.clients[0];
        let folded = c
            .names
            .iter()
            .find(|n| n.qname == "(names under c2.example)")
            .expect("a row for the folded names");
        assert_eq!(folded.blocked, 500);
        assert!(c.names.iter().all(|n| n.qname != "a9.c2.example"), "{c:?}");
        assert_eq!(c.rules[0].blocked, 502);
        assert_eq!(
            c.rules[0].names, 3,
            "the two plain names and the folded line's last: {c:?}"
        );
    }

    #[test]
    fn a_folded_connection_line_counts_every_connection() {
        let lines = [
            line("10.0.0.7", 0, "sbmsa.wiki", "sbmsa.wiki", ""),
            "{\"ts\":\"2026-11-27T10:00:05.000Z\",\"kind\":\"connection\",\"client_ip\":\"10.0.0.7\",\
             \"port\":80,\"seen\":\"http\",\"host\":\"sbmsa.wiki\",\"count\":30,\
             \"first_ts\":\"2026-11-27T10:00:01.000Z\"}"
                .to_string(),
        ];
        let r = report_of(&lines);
        assert_eq!(r.connection_events, 30);
        assert_eq!(r.clients[0].connections, 30);
        assert_eq!(r.clients[0].last_seen, "2026-11-27T10:00:05.000Z");
    }
}
