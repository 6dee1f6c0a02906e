//! Reading c2sink's JSON-line logs back: plain, rotated or gzipped, skipping (and counting) lines that are
//! not c2sink records, so a report over a month of files never stops at one damaged line.

use serde::Deserialize;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::SystemTime;

/// A line of an event log or query log, with the fields reports need.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub ts: String,
    pub kind: String,
    pub client_ip: String,
    #[serde(default)]
    pub client_port: Option<u16>,
    #[serde(default)]
    pub client_mac: Option<String>,
    #[serde(default)]
    pub client_hostname: Option<String>,
    /// EDNS Client Subnet the query carried (`"10.9.9.9/32"`): a full-length one names the machine behind
    /// the router that sent it.
    #[serde(default)]
    pub client_subnet: Option<String>,
    /// The question's name: empty on a connection line (which has no question), and for the root (`.`).
    #[serde(skip)]
    pub qname: String,
    /// `qname` as read: `None` when the line has none (only a connection line may lack it), `Some("")` for
    /// a query for the root, which the query log writes as `""`.
    #[serde(rename = "qname", default)]
    qname_read: Option<String>,
    #[serde(default)]
    pub qtype: Option<String>,
    #[serde(default)]
    pub list: Option<String>,
    /// Of a block line: the list rule that matched (`*.name` for a wildcard).
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
    /// Of a connection to the sinkhole host: the port, what was seen (`tls`, `http`, `unknown`) and the
    /// name the client sent (TLS SNI, HTTP Host).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub seen: Option<String>,
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// Of a line that folds repeated blocked queries (`[log] coalesce`): how many it stands for, and when
    /// the first of them came (`ts` is the last one's).
    #[serde(default)]
    pub count: Option<u64>,
    /// What the answer pointed at (CNAME, DNAME, HTTPS/SVCB targets): on a query line, and on a block line
    /// blocked by one of them (with `via`, the one that matched).
    #[serde(default)]
    pub chain: Vec<String>,
    #[serde(default)]
    pub first_ts: Option<String>,
    /// `"names"` on a line that folds different names of one client under one rule (`[log] coalesce_names`):
    /// `qname` is only the last of them.
    #[serde(default)]
    pub fold: Option<String>,
    /// `ts` parsed.
    #[serde(skip, default = "epoch")]
    pub time: SystemTime,
    /// `first_ts` parsed, else `time`.
    #[serde(skip, default = "epoch")]
    pub first_time: SystemTime,
}

/// Who a line names: the key a machine is told apart by, and what the line says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// MAC, else hostname, else address.
    pub id: String,
    pub mac: Option<String>,
    pub hostname: Option<String>,
    /// The machine's address: `client_ip`, or behind a router `SUBNET-ADDRESS via client_ip`.
    pub ip: String,
}

impl Entry {
    /// The machine the line names, keyed by its MAC, else its hostname, else its address (so that an address
    /// DHCP gave to another machine is another machine), with the MAC and hostname it gave (taken out).
    /// Behind a router, a full-length client subnet is the machine's address: `client_ip` is the router's,
    /// shared by every machine behind it.
    pub fn machine(&mut self) -> Machine {
        let mac = self.client_mac.take().filter(|m| !m.is_empty());
        let hostname = self.client_hostname.take().filter(|h| !h.is_empty());
        // The sender is always shown: `10.9.9.9 via 192.168.1.1` for a machine behind a router (and for a
        // machine that made its subnet up, which then cannot hide where it sent from).
        let behind = self.behind();
        let ip = behind.map_or_else(
            || self.client_ip.clone(),
            |a| format!("{a} via {}", self.client_ip),
        );
        let id = mac
            .clone()
            .or_else(|| hostname.clone())
            .or_else(|| behind.map(|a| a.to_string()))
            .unwrap_or_else(|| self.client_ip.clone());
        Machine {
            id,
            mac,
            hostname,
            ip,
        }
    }

    /// The address of a full-length client subnet (/32, /128), if the line has one.
    fn behind(&self) -> Option<std::net::IpAddr> {
        let (a, p) = self.client_subnet.as_deref()?.split_once('/')?;
        crate::clients::edns::full_length(Some((a.parse().ok()?, p.parse().ok()?)))
    }

    /// A blocked query (of the event log).
    pub fn is_block(&self) -> bool {
        self.kind == "block"
    }

    /// A connection to the sinkhole host: it asks no name (`qname` is empty).
    pub fn is_connection(&self) -> bool {
        self.kind == "connection"
    }

    /// The name a report counts the line's queries under: for a line folding many names, the rule they
    /// fell under, as `(names under RULE)`, since the line keeps only the last name.
    pub fn report_name(&self) -> String {
        match (self.fold.as_deref(), &self.rule) {
            (Some("names"), Some(rule)) => format!("(names under {rule})"),
            _ => self.qname.clone(),
        }
    }

    /// The queries this line stands for: 1, or its `count`.
    pub fn queries(&self) -> u64 {
        self.count.unwrap_or(1).max(1)
    }

    /// A connection line's target as an admin reads it: `tls officeaddons.com`, `http sbmsa.wiki:80`, or
    /// `unknown :443` when the client sent nothing telling.
    pub fn connection_target(&self) -> String {
        let seen = self.seen.as_deref().unwrap_or("unknown");
        match self.sni.as_deref().or(self.host.as_deref()) {
            Some(name) => format!("{seen} {name}"),
            None => format!("{seen} :{}", self.port.unwrap_or(0)),
        }
    }
}

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

/// Lines that could not be read, for the summary.
#[derive(Debug, Default)]
pub struct Skipped {
    pub count: usize,
    /// The first few, as "file:line: problem".
    pub examples: Vec<String>,
}

impl Skipped {
    fn note(&mut self, file: &Path, line: usize, why: impl std::fmt::Display) {
        self.count += 1;
        if self.examples.len() < 5 {
            self.examples
                .push(format!("{}:{line}: {why}", file.display()));
        }
    }
}

/// Opens a log, decompressing it when it is gzip (by content, whatever its name).
pub fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let mut f = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let head = std::io::Cursor::new(magic[..n].to_vec()).chain(f);
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(
            head,
        ))))
    } else {
        Ok(Box::new(BufReader::new(head)))
    }
}

/// Calls `each` for every readable entry of `path` within `[since, until)`.
pub fn for_each_entry(
    path: &Path,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    skipped: &mut Skipped,
    mut each: impl FnMut(Entry),
) -> std::io::Result<()> {
    let r = open(path)?;
    for (i, line) in r.split(b'\n').enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                // A gzip file cut short (still being written) ends the file, not the report.
                skipped.note(path, i + 1, e);
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut e: Entry = match serde_json::from_slice(&line) {
            Ok(e) => e,
            Err(err) => {
                skipped.note(path, i + 1, err);
                continue;
            }
        };
        match e.qname_read.take() {
            Some(q) => e.qname = q,
            None if e.is_connection() => {}
            None => {
                skipped.note(path, i + 1, "missing field `qname`");
                continue;
            }
        }
        let Ok(t) = humantime::parse_rfc3339(&e.ts) else {
            skipped.note(path, i + 1, format!("bad ts \"{}\"", e.ts));
            continue;
        };
        if since.is_some_and(|s| t < s) || until.is_some_and(|u| t >= u) {
            continue;
        }
        e.time = t;
        // A folded line is placed at its `ts` (the window and the counts go by it); its first time is kept
        // only when it falls inside the window asked for.
        e.first_time = match e.first_ts.as_deref().map(humantime::parse_rfc3339) {
            Some(Ok(f)) if since.is_none_or(|s| f >= s) => f.min(t),
            Some(Ok(_)) | None => t,
            Some(Err(_)) => {
                skipped.note(path, i + 1, "bad first_ts");
                continue;
            }
        };
        each(e);
    }
    Ok(())
}

/// Files of a `report` or `hunt` run that were gone by the time they were opened.
#[derive(Debug, Default)]
pub struct Vanished(Vec<(std::path::PathBuf, std::io::Error)>);

impl Vanished {
    /// Takes the result of reading one file: a file that no longer exists is noted and `Ok`, for a list the
    /// shell expanded from `events.jsonl*` may name a rotated file that was compressed or pruned since.
    pub fn note(
        &mut self,
        path: &Path,
        read: std::io::Result<()>,
    ) -> Result<(), (std::path::PathBuf, std::io::Error)> {
        match read {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.0.push((path.to_path_buf(), e));
                Ok(())
            }
            Err(e) => Err((path.to_path_buf(), e)),
            Ok(()) => Ok(()),
        }
    }

    /// After every file was tried: an error when none of `listed` could be read (a mistyped name, not a
    /// rotation), else a note on stderr for each that vanished (a tool's output, not an operational log).
    pub fn finish(
        mut self,
        cmd: &str,
        listed: usize,
    ) -> Result<usize, (std::path::PathBuf, std::io::Error)> {
        if listed > 0 && self.0.len() == listed {
            return Err(self.0.swap_remove(0));
        }
        for (p, e) in &self.0 {
            eprintln!(
                "c2sink {cmd}: {}: {e} (gone since it was listed: rotated away?); skipped",
                p.display()
            );
        }
        Ok(listed - self.0.len())
    }
}

/// Reads `--since` / `--until`: RFC 3339 ("2026-11-27T10:00:00Z"), "2026-11-27 10:00[:00]", a date
/// "2026-11-27" (midnight UTC), or a duration back from now ("24h", "7d").
pub fn parse_when(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let t = s.trim();
    if let Ok(v) = humantime::parse_rfc3339_weak(t) {
        return Ok(v);
    }
    if t.len() == 10
        && let Ok(v) = humantime::parse_rfc3339_weak(&format!("{t} 00:00:00"))
    {
        return Ok(v);
    }
    if t.len() == 16
        && let Ok(v) = humantime::parse_rfc3339_weak(&format!("{t}:00"))
    {
        return Ok(v);
    }
    if let Ok(d) = humantime::parse_duration(t) {
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("\"{s}\" reaches before 1970"));
    }
    Err(format!(
        "\"{s}\" is not a time: use 2026-11-27, \"2026-11-27 10:00\", 2026-11-27T10:00:00Z or a duration back from now like 24h"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_the_time_forms() {
        let now = humantime::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        assert_eq!(
            parse_when("2026-11-27", now),
            Ok(at("2026-11-27T00:00:00Z"))
        );
        assert_eq!(
            parse_when("2026-11-27 10:30", now),
            Ok(at("2026-11-27T10:30:00Z"))
        );
        assert_eq!(
            parse_when("2026-11-27T10:30:05Z", now),
            Ok(at("2026-11-27T10:30:05Z"))
        );
        assert_eq!(parse_when("2h", now), Ok(now - Duration::from_secs(7200)));
        assert!(parse_when("yesterday", now).is_err());
    }

    #[test]
    fn reads_plain_and_gzip_and_skips_bad_lines() {
        let dir = std::env::temp_dir().join(format!("c2sink-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "{\"ts\":\"2026-11-27T10:00:00.000Z\",\"kind\":\"block\",\"client_ip\":\"10.0.0.1\",\"qname\":\"a.example\"}\n\
                    not json\n\n\
                    {\"ts\":\"2026-11-27T11:00:00.000Z\",\"kind\":\"block\",\"client_ip\":\"10.0.0.1\",\"qname\":\"b.example\",\"client_mac\":null}\n";
        let plain = dir.join("e.log");
        std::fs::write(&plain, text).unwrap();
        let gzp = dir.join("e.log.1");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gzp).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
        enc.finish().unwrap();
        for p in [&plain, &gzp] {
            let mut names = Vec::new();
            let mut sk = Skipped::default();
            let since = humantime::parse_rfc3339("2026-11-27T10:30:00Z").ok();
            for_each_entry(p, since, None, &mut sk, |e| names.push(e.qname)).unwrap();
            assert_eq!(names, vec!["b.example"]);
            assert_eq!(sk.count, 1);
            assert!(sk.examples[0].contains(":2:"), "{:?}", sk.examples);
        }
        // A query for the root is logged with qname "": read, not skipped. A query line without qname is.
        let q = dir.join("q.log");
        std::fs::write(
            &q,
            "{\"ts\":\"2026-11-27T11:00:00.000Z\",\"kind\":\"query\",\"client_ip\":\"10.0.0.1\",\"qname\":\"\",\"qtype\":\"NS\"}\n\
             {\"ts\":\"2026-11-27T11:00:01.000Z\",\"kind\":\"query\",\"client_ip\":\"10.0.0.1\",\"qtype\":\"A\"}\n\
             {\"ts\":\"2026-11-27T11:00:02.000Z\",\"kind\":\"connection\",\"client_ip\":\"10.0.0.1\",\"port\":443}\n",
        )
        .unwrap();
        let (mut kinds, mut sk) = (Vec::new(), Skipped::default());
        for_each_entry(&q, None, None, &mut sk, |e| kinds.push((e.kind, e.qname))).unwrap();
        assert_eq!(
            kinds,
            vec![
                ("query".to_string(), String::new()),
                ("connection".to_string(), String::new())
            ]
        );
        assert_eq!(sk.count, 1);
        assert!(
            sk.examples[0].contains(":2: missing field `qname`"),
            "{:?}",
            sk.examples
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
