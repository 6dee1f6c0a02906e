//! `c2sink hunt`: indicators are published after weeks of beaconing (the 3CX ones were), so look back through
//! retained query logs (and event logs) for names on a new list, and say which machines asked, and when.

use crate::blocklist::List;
use crate::report::read::{self, Skipped};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What to scan.
pub struct Options {
    pub list: PathBuf,
    pub logs: Vec<PathBuf>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

/// Everything found.
#[derive(Debug, Serialize)]
pub struct Hunt {
    pub list: String,
    pub list_entries: usize,
    pub files: usize,
    pub lines_scanned: usize,
    pub hits: usize,
    pub clients: Vec<ClientHits>,
    #[serde(skip)]
    pub skipped: Skipped,
}

/// One machine's matching queries.
#[derive(Debug, Serialize)]
pub struct ClientHits {
    /// MAC, else hostname, else IP (as in `report`).
    pub id: String,
    pub hostnames: Vec<String>,
    pub macs: Vec<String>,
    pub ips: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub hits: usize,
    pub names: Vec<NameHits>,
}

/// One name one machine asked for.
#[derive(Debug, Serialize)]
pub struct NameHits {
    pub qname: String,
    /// The list entry it matched (the name or a parent of it, or of a name its answer pointed at).
    pub rule: String,
    /// The names in its answers that matched, when the name itself did not (a C2 name behind a CNAME).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    pub hits: usize,
    pub first_seen: String,
    pub last_seen: String,
    /// How c2sink answered then: a query-log outcome, or "blocked" for event-log lines.
    pub outcomes: Vec<String>,
}

/// Why a hunt could not run.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    #[error(transparent)]
    List(#[from] crate::blocklist::ListError),
    /// A list with no indicator finds nothing whatever the logs hold: a wrong file, not a clean network.
    #[error("{}: no domain indicators in the list: nothing to hunt for", .0.display())]
    EmptyList(PathBuf),
    #[error("{}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A blocked query is written to the query log and the event log: given both, it is one hit.
#[derive(Default)]
struct Blocks {
    /// Blocked queries read so far and not yet matched, by (client address, port, name, type): those of
    /// the query log, then those of the event log. A line is looked for among the other log's only, and a
    /// matched pair leaves, so a client stuck on one socket (millions of lines of one key in one log) costs
    /// no more than any other.
    seen: std::collections::HashMap<BlockKey, [Vec<BlockLine>; 2]>,
}

/// The client address, port, name and type a blocked query's two lines share.
type BlockKey = (String, u16, String, Option<String>);

/// One blocked query's line not yet matched: when, and the queries it stands for (an event line's `count`).
type BlockLine = (SystemTime, u64);

impl Blocks {
    /// `Some` when `e` is a blocked query already counted from the other log (same client, port, name and
    /// type, the nearest such line within a second: the two lines are written a few microseconds apart, but a
    /// folded event line comes when its window ends, after newer lines), with the hits to take back: an
    /// event line that folded N queries was counted N times, but the query log has a line for each of them.
    fn seen_in_other_log(&mut self, e: &read::Entry) -> Option<u64> {
        let from_events = e.is_block();
        let blocked = from_events || e.outcome.as_deref() == Some("blocked");
        let port = e.client_port.filter(|_| blocked)?;
        let key = (e.client_ip.clone(), port, e.qname.clone(), e.qtype.clone());
        let apart = |t: SystemTime| {
            t.duration_since(e.time)
                .unwrap_or_else(|later| later.duration())
        };
        let logs = self.seen.entry(key).or_default();
        let other = &mut logs[usize::from(!from_events)];
        if let Some((i, _)) = other
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| apart(*t) <= Duration::from_secs(1))
            .min_by_key(|(_, (t, _))| apart(*t))
        {
            let (_, count) = other.swap_remove(i);
            return Some(count.saturating_sub(1));
        }
        logs[usize::from(from_events)].push((e.time, e.queries()));
        None
    }
}

#[derive(Default)]
struct Acc {
    hostnames: BTreeSet<String>,
    macs: BTreeSet<String>,
    ips: BTreeSet<String>,
    /// Per name: the rule, the times of its lines, the hits and the outcomes.
    names: BTreeMap<String, NameAcc>,
}

#[derive(Default)]
struct NameAcc {
    rule: String,
    via: BTreeSet<String>,
    /// RFC 3339, as the lines write them (with a folded line's `first_ts`).
    ts: Vec<String>,
    hits: u64,
    outcomes: BTreeSet<String>,
}

/// Scans the logs for names on the list. The list's own bad lines are returned for the caller to show.
pub fn run(opts: &Options) -> Result<(Hunt, List), HuntError> {
    let name = opts
        .list
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hunt".into());
    let cfg = crate::config::ListConfig::local(name, opts.list.clone());
    let list = List::load(&cfg, &opts.list)?;
    // Names are what logs are searched for: a list of none (or only addresses) can find nothing.
    if list.block.is_empty() {
        return Err(HuntError::EmptyList(opts.list.clone()));
    }
    let mut by_client: BTreeMap<String, Acc> = BTreeMap::new();
    let mut skipped = Skipped::default();
    let mut blocks = Blocks::default();
    let (mut lines, mut hits) = (0, 0u64);
    let mut vanished = read::Vanished::default();
    for path in &opts.logs {
        let done = read::for_each_entry(path, opts.since, opts.until, &mut skipped, |mut e| {
            lines += 1;
            if e.is_connection() {
                return; // asks for no name
            }
            if e.fold.as_deref() == Some("names") {
                // Only its last name is known: the line is that one query. The other names it folded are
                // in the query log, when that is on, each with its own line.
                (e.count, e.first_ts, e.first_time) = (None, None, e.time);
            }
            // The name, else a name its answer pointed at: a C2 name published later is found behind the
            // innocent one a machine asked for.
            let (rule, via) = match list.block.find_suffix(&e.qname) {
                Some(m) => (m.text(), None),
                None => match e
                    .chain
                    .iter()
                    .find_map(|t| list.block.find_suffix(t).map(|m| (m.text(), t)))
                {
                    Some((rule, t)) => (rule, Some(t.clone())),
                    None => return,
                },
            };
            let seen = blocks.seen_in_other_log(&e);
            let queries = e.queries();
            let blocked = e.is_block();
            let read::Machine {
                id,
                mac,
                hostname,
                ip,
            } = e.machine();
            if let Some(extra) = seen {
                // Counted from the other log already; take back what a folded event line added.
                if let Some(n) = by_client
                    .get_mut(&id)
                    .and_then(|a| a.names.get_mut(&e.qname))
                {
                    n.hits = n.hits.saturating_sub(extra);
                }
                hits = hits.saturating_sub(extra);
                return;
            }
            hits = hits.saturating_add(queries);
            let a = by_client.entry(id).or_default();
            a.ips.insert(ip);
            a.macs.extend(mac);
            a.hostnames.extend(hostname);
            let n = a.names.entry(e.qname).or_insert_with(|| NameAcc {
                rule,
                ..NameAcc::default()
            });
            n.hits = n.hits.saturating_add(queries);
            n.via.extend(via);
            // A folded line's first time, unless the reader left it out (before --since).
            n.ts.extend(e.first_ts.filter(|_| e.first_time != e.time));
            n.ts.push(e.ts);
            n.outcomes.insert(if blocked {
                "blocked".to_string()
            } else {
                e.outcome.unwrap_or_default()
            });
        });
        vanished
            .note(path, done)
            .map_err(|(path, source)| HuntError::Log { path, source })?;
    }
    let files = vanished
        .finish("hunt", opts.logs.len())
        .map_err(|(path, source)| HuntError::Log { path, source })?;
    let mut clients: Vec<ClientHits> = by_client
        .into_iter()
        .map(|(id, a)| {
            let names: Vec<NameHits> = a
                .names
                .into_iter()
                .map(|(qname, mut n)| {
                    // RFC 3339 UTC strings sort by time.
                    n.ts.sort();
                    NameHits {
                        qname,
                        rule: n.rule,
                        via: n.via.into_iter().collect(),
                        hits: n.hits as usize,
                        first_seen: n.ts.first().cloned().unwrap_or_default(),
                        last_seen: n.ts.last().cloned().unwrap_or_default(),
                        outcomes: n.outcomes.into_iter().collect(),
                    }
                })
                .collect();
            ClientHits {
                id,
                hostnames: a.hostnames.into_iter().collect(),
                macs: a.macs.into_iter().collect(),
                ips: a.ips.into_iter().collect(),
                first_seen: names
                    .iter()
                    .map(|n| n.first_seen.clone())
                    .min()
                    .unwrap_or_default(),
                last_seen: names
                    .iter()
                    .map(|n| n.last_seen.clone())
                    .max()
                    .unwrap_or_default(),
                hits: names
                    .iter()
                    .fold(0, |s, n: &NameHits| s.saturating_add(n.hits)),
                names,
            }
        })
        .collect();
    clients.sort_by(|a, b| a.first_seen.cmp(&b.first_seen));
    Ok((
        Hunt {
            list: opts.list.display().to_string(),
            list_entries: list.len(),
            files,
            lines_scanned: lines,
            hits: hits as usize,
            clients,
            skipped,
        },
        list,
    ))
}

/// "2026-11-24T14:00:15.123Z" → "2026-11-24 14:00:15" (UTC).
fn plain(ts: &str) -> String {
    ts.get(..19).unwrap_or(ts).replace('T', " ")
}

impl Hunt {
    /// For a terminal: a headline, then each machine and the names it asked for.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "hunt: {} hit{} from {} client{} in {} lines of {} file{} ({} name{} on the list)",
            self.hits,
            if self.hits == 1 { "" } else { "s" },
            self.clients.len(),
            if self.clients.len() == 1 { "" } else { "s" },
            self.lines_scanned,
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.list_entries,
            if self.list_entries == 1 { "" } else { "s" },
        );
        for c in &self.clients {
            let mut who: Vec<String> = c.hostnames.clone();
            who.extend(c.macs.iter().cloned());
            who.push(c.ips.join(","));
            let _ = writeln!(o, "\n{}", who.join("  "));
            let _ = writeln!(
                o,
                "  first {}  last {}  hits {}",
                plain(&c.first_seen),
                plain(&c.last_seen),
                c.hits
            );
            for n in &c.names {
                let via = if n.via.is_empty() {
                    String::new()
                } else {
                    format!(" via {}", n.via.join(","))
                };
                let _ = writeln!(
                    o,
                    "  {}{via}  {} hit{} ({})",
                    n.qname,
                    n.hits,
                    if n.hits == 1 { "" } else { "s" },
                    n.outcomes.join(",")
                );
                let _ = writeln!(o, "    {} .. {}", plain(&n.first_seen), plain(&n.last_seen));
            }
        }
        if self.skipped.count > 0 {
            let _ = writeln!(o, "\n{} unreadable lines skipped", self.skipped.count);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One client socket asking A then TXT: the held A line of the event log is written after the TXT one,
    /// and each query must still pair with its own twin (same type, nearest in time).
    #[test]
    fn a_late_event_line_pairs_with_its_own_query() {
        let dir = std::env::temp_dir().join(format!("c2sink-hunt-pair-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list.txt");
        std::fs::write(&list, "sbmsa.wiki\n").unwrap();
        let line = |kind: &str, ts: &str, qtype: &str, tail: &str| {
            format!(
                "{{\"ts\":\"2026-11-29T04:50:{ts}Z\",\"kind\":\"{kind}\",\"client_ip\":\"127.0.11.11\",\"client_port\":40000,\"qname\":\"sbmsa.wiki\",\"qtype\":\"{qtype}\"{tail}}}\n"
            )
        };
        let events = dir.join("events.log");
        let block = ",\"list\":\"c2\",\"rule\":\"sbmsa.wiki\",\"action\":\"null\"";
        std::fs::write(
            &events,
            [
                line("block", "58.041", "A", block),
                line("block", "59.051", "TXT", block),
                line("block", "58.051", "A", block),
            ]
            .concat(),
        )
        .unwrap();
        let queries = dir.join("queries.log");
        let q = ",\"outcome\":\"blocked\"";
        std::fs::write(
            &queries,
            [
                line("query", "58.041123", "A", q),
                line("query", "58.051321", "A", q),
                line("query", "59.051886", "TXT", q),
            ]
            .concat(),
        )
        .unwrap();
        for logs in [
            vec![events.clone(), queries.clone()],
            vec![queries.clone(), events.clone()],
        ] {
            let (h, _) = run(&Options {
                list: list.clone(),
                logs,
                since: None,
                until: None,
            })
            .unwrap();
            assert_eq!(h.hits, 3, "{h:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A line folding many names (`[log] coalesce_names`) knows only its last name; the query log, when on,
    /// has a line for each. Hunting gives one hit per blocked query with both logs, in either order, and
    /// with the event log alone tells the last name as asked once, not `count` times.
    #[test]
    fn a_line_folding_many_names_is_one_hit_of_its_last_name() {
        let dir = std::env::temp_dir().join(format!("c2sink-hunt-fold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list.txt");
        std::fs::write(&list, "c2.example\n").unwrap();
        let line = |kind: &str, ms: u32, port: u16, q: &str, tail: &str| {
            format!(
                "{{\"ts\":\"2026-11-29T04:50:00.{ms:03}Z\",\"kind\":\"{kind}\",\"client_ip\":\"127.0.0.1\",\
                 \"client_port\":{port},\"qname\":\"{q}\",\"qtype\":\"A\"{tail}}}\n"
            )
        };
        let block = ",\"list\":\"c2\",\"rule\":\"c2.example\",\"action\":\"null\"";
        // Two names with lines of their own (a cap of 2), then eight folded: r2..r9, the last on port 1009.
        let (mut ev, mut ql) = (String::new(), String::new());
        for i in 0..10u16 {
            let q = format!("r{i}.c2.example");
            ql += &line(
                "query",
                u32::from(i) * 10,
                1000 + i,
                &q,
                ",\"outcome\":\"blocked\"",
            );
            if i < 2 {
                ev += &line("block", u32::from(i) * 10, 1000 + i, &q, block);
            }
        }
        let fold = ",\"count\":8,\"first_ts\":\"2026-11-29T04:50:00.020Z\",\"fold\":\"names\"";
        ev += &line(
            "block",
            90,
            1009,
            "r9.c2.example",
            &format!("{block}{fold}"),
        );
        let (events, queries) = (dir.join("events.log"), dir.join("queries.log"));
        std::fs::write(&events, ev).unwrap();
        std::fs::write(&queries, ql).unwrap();
        let hunt = |logs: Vec<PathBuf>| {
            let (h, _) = run(&Options {
                list: list.clone(),
                logs,
                since: None,
                until: None,
            })
            .unwrap();
            let r9 = h.clients[0]
                .names
                .iter()
                .find(|n| n.qname == "r9.c2.example")
                .map(|n| (n.hits, n.first_seen.clone()));
            (h.hits, r9)
        };
        let r9 = Some((1, "2026-11-29T04:50:00.090Z".to_string()));
        assert_eq!(
            hunt(vec![events.clone(), queries.clone()]),
            (10, r9.clone())
        );
        assert_eq!(
            hunt(vec![queries.clone(), events.clone()]),
            (10, r9.clone())
        );
        assert_eq!(hunt(vec![events.clone()]), (3, r9));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
