//! DHCP lease files: which machine (MAC, hostname) the DHCP server gave each IP address to.
//!
//! Each parser returns the leases in force at `now` (expired, released and freed ones removed; for an address
//! that appears more than once the last record wins, as the servers append updates) and the lines it could not
//! read, so that one bad line costs one lease, not the file.

use super::Mac;
use crate::config::LeaseFormat;
use std::collections::HashMap;
use std::net::IpAddr;

/// One address handed out by a DHCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: IpAddr,
    pub mac: Option<Mac>,
    pub hostname: Option<String>,
}

/// A line of a lease file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub line: usize,
    pub message: String,
}

/// What a lease file says.
#[derive(Debug, Default)]
pub struct Parsed {
    pub leases: Vec<Lease>,
    pub problems: Vec<LineProblem>,
}

/// Reads a lease file's text in the given format; `now` is seconds since the Unix epoch.
pub fn parse(format: LeaseFormat, text: &str, now: u64) -> Parsed {
    match format {
        LeaseFormat::Dnsmasq => dnsmasq(text, now),
        LeaseFormat::Isc => isc(text, now),
        LeaseFormat::Kea => kea(text, now),
    }
}

/// Later records replace earlier ones; `None` removes the address (released, expired).
#[derive(Default)]
struct Table {
    by_ip: HashMap<IpAddr, Option<Lease>>,
    problems: Vec<LineProblem>,
}

impl Table {
    fn set(&mut self, ip: IpAddr, lease: Option<Lease>) {
        self.by_ip.insert(ip, lease);
    }
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(LineProblem {
            line,
            message: message.into(),
        });
    }
    fn done(self) -> Parsed {
        let mut leases: Vec<Lease> = self.by_ip.into_values().flatten().collect();
        leases.sort_by_key(|l| l.ip);
        Parsed {
            leases,
            problems: self.problems,
        }
    }
}

/// A hostname as a server wrote it, or `None` for its "unknown" markers.
fn hostname(raw: &str) -> Option<String> {
    let h = raw.trim().trim_matches('"').trim_end_matches('.');
    if h.is_empty() || h == "*" || h.len() > 253 || h.chars().any(char::is_control) {
        None
    } else {
        Some(h.to_string())
    }
}

/// dnsmasq: `EXPIRY MAC IP HOSTNAME CLIENT-ID` per line (expiry 0 = never). DHCPv6 leases follow a
/// `duid ...` line and carry an IAID where the MAC would be.
fn dnsmasq(text: &str, now: u64) -> Parsed {
    let mut t = Table::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || f[0] == "duid" {
            continue;
        }
        if f.len() < 4 {
            t.problem(n, "expected EXPIRY MAC IP HOSTNAME [CLIENT-ID]");
            continue;
        }
        let Ok(expiry) = f[0].parse::<u64>() else {
            t.problem(n, format!("expiry \"{}\" is not a number", f[0]));
            continue;
        };
        let Ok(ip) = f[2].parse::<IpAddr>() else {
            t.problem(n, format!("\"{}\" is not an IP address", f[2]));
            continue;
        };
        let mac = Mac::parse(f[1]);
        if mac.is_none() && ip.is_ipv4() {
            t.problem(n, format!("\"{}\" is not a MAC address", f[1]));
            continue;
        }
        let live = expiry == 0 || expiry > now;
        t.set(
            ip,
            live.then(|| Lease {
                ip,
                mac,
                hostname: hostname(f[3]),
            }),
        );
    }
    t.done()
}

/// ISC dhcpd: `lease IP { ... }` blocks; the last block of an address wins; only `binding state active`
/// (or no binding state, as old servers write) with `ends` in the future counts.
fn isc(text: &str, now: u64) -> Parsed {
    let mut t = Table::default();
    let mut current: Option<(usize, Option<IpAddr>, IscLease)> = None;
    let mut depth = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some((_, _, lease)) = current.as_mut() {
            if line.ends_with('{') {
                depth += 1;
                continue;
            }
            if line == "}" {
                if depth > 0 {
                    depth -= 1;
                    continue;
                }
                if let Some((start, ip, lease)) = current.take()
                    && let Some(ip) = ip
                {
                    let _ = start;
                    let live = lease.state_ok && lease.ends.is_none_or(|e| e > now);
                    t.set(
                        ip,
                        live.then_some(Lease {
                            ip,
                            mac: lease.mac,
                            hostname: lease.hostname,
                        }),
                    );
                }
                continue;
            }
            if depth == 0
                && let Err(e) = lease.statement(line)
            {
                t.problem(n, e);
            }
            continue;
        }
        // Outside a lease: a new lease block, or any other block/statement we skip.
        if let Some(rest) = line.strip_prefix("lease ") {
            let addr = rest.trim_end_matches('{').trim();
            let ip = addr.parse::<IpAddr>().ok();
            if ip.is_none() {
                t.problem(n, format!("\"{addr}\" is not an IP address"));
            }
            current = Some((n, ip, IscLease::default()));
            depth = 0;
        } else if line.ends_with('{') {
            // host, failover, ia-na ... blocks: not leases we read; skip to their end.
            current = Some((n, None, IscLease::default()));
            depth = 0;
        }
    }
    if let Some((start, Some(_), _)) = current {
        t.problem(start, "lease block not closed (file cut short?)");
    }
    t.done()
}

/// Fields of one ISC lease block.
struct IscLease {
    ends: Option<u64>,
    state_ok: bool,
    mac: Option<Mac>,
    hostname: Option<String>,
}

impl Default for IscLease {
    fn default() -> Self {
        IscLease {
            ends: None,
            state_ok: true,
            mac: None,
            hostname: None,
        }
    }
}

impl IscLease {
    fn statement(&mut self, line: &str) -> Result<(), String> {
        let s = line.trim_end_matches(';').trim();
        if let Some(v) = s.strip_prefix("ends ") {
            self.ends = isc_time(v.trim()).ok_or_else(|| format!("cannot read time \"{v}\""))?;
        } else if let Some(v) = s.strip_prefix("binding state ") {
            self.state_ok = matches!(v.trim(), "active" | "static");
        } else if let Some(v) = s.strip_prefix("hardware ethernet ") {
            self.mac = Some(Mac::parse(v.trim()).ok_or_else(|| format!("\"{v}\" is not a MAC"))?);
        } else if let Some(v) = s.strip_prefix("client-hostname ") {
            self.hostname = hostname(v);
        }
        Ok(())
    }
}

/// `never`, `epoch N`, or `W YYYY/MM/DD HH:MM:SS` (UTC) as dhcpd writes it; `Some(None)` for never.
fn isc_time(v: &str) -> Option<Option<u64>> {
    if v == "never" {
        return Some(None);
    }
    if let Some(e) = v.strip_prefix("epoch ") {
        return e.trim().parse().ok().map(Some);
    }
    let mut f = v.split_whitespace().skip(1);
    let (date, time) = (f.next()?, f.next()?);
    let d: Vec<i64> = date
        .split('/')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let c: Vec<i64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if d.len() != 3
        || c.len() != 3
        || !(1970..=9999).contains(&d[0])
        || !(1..=12).contains(&d[1])
        || !(1..=31).contains(&d[2])
        || c.iter().any(|v| !(0..=60).contains(v))
    {
        return None;
    }
    let secs = days_from_civil(d[0], d[1], d[2]) * 86_400 + c[0] * 3600 + c[1] * 60 + c[2];
    u64::try_from(secs).ok().map(Some)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn strip_comment(line: &str) -> &str {
    // '#' inside a quoted string is kept.
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Kea memfile CSV (v4 or v6, told apart by the header): later rows replace earlier ones; state 0 is a
/// lease in force; commas inside fields are escaped as `&#x2c`.
fn kea(text: &str, now: u64) -> Parsed {
    let mut t = Table::default();
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return t.done();
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(c_addr), Some(c_expire)) = (col("address"), col("expire")) else {
        t.problem(
            1,
            "not a Kea lease file header (needs address and expire columns)",
        );
        return t.done();
    };
    let (c_hw, c_host, c_state, c_type) = (
        col("hwaddr"),
        col("hostname"),
        col("state"),
        col("lease_type"),
    );
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<String> = line.split(',').map(|v| v.replace("&#x2c", ",")).collect();
        if f.len() < cols.len().min(c_addr.max(c_expire) + 1) {
            t.problem(n, format!("{} fields, header has {}", f.len(), cols.len()));
            continue;
        }
        let get = |c: Option<usize>| c.and_then(|c| f.get(c)).map(|v| v.trim());
        let Ok(ip) = f[c_addr].trim().parse::<IpAddr>() else {
            t.problem(n, format!("\"{}\" is not an IP address", f[c_addr]));
            continue;
        };
        let Ok(expire) = f[c_expire].trim().parse::<u64>() else {
            t.problem(n, format!("expire \"{}\" is not a number", f[c_expire]));
            continue;
        };
        // IA_PD rows hold delegated prefixes, not a host's address.
        if get(c_type) == Some("2") {
            continue;
        }
        let state_ok = get(c_state).is_none_or(|s| s.is_empty() || s == "0");
        let live = state_ok && (expire == 0 || expire > now);
        let mac = get(c_hw).and_then(Mac::parse);
        let host = get(c_host).and_then(hostname);
        t.set(
            ip,
            live.then_some(Lease {
                ip,
                mac,
                hostname: host,
            }),
        );
    }
    t.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn mac(s: &str) -> Option<Mac> {
        Some(Mac::parse(s).unwrap())
    }
    fn names(p: &Parsed) -> Vec<(String, Option<String>)> {
        p.leases
            .iter()
            .map(|l| (l.ip.to_string(), l.hostname.clone()))
            .collect()
    }

    #[test]
    fn dnsmasq_reads_v4_and_v6_and_skips_bad_and_expired_lines() {
        let text = format!(
            "{f} aa:bb:cc:dd:ee:01 10.0.0.10 laptop-a 01:aa:bb:cc:dd:ee:01\n\
             0 aa:bb:cc:dd:ee:02 10.0.0.11 * *\n\
             {p} aa:bb:cc:dd:ee:03 10.0.0.12 gone *\n\
             notanumber aa:bb:cc:dd:ee:04 10.0.0.13 x *\n\
             {f} aa:bb:cc:dd:ee:05 10.0.0.300 x *\n\
             {f} zz 10.0.0.14 x *\n\
             short line\n\
             duid 00:01:00:01:2c:6f:01:02:aa:bb:cc:dd:ee:01\n\
             {f} 123456 2001:db8::10 laptop-a6 00:01:00:01\n",
            f = NOW + 100,
            p = NOW - 100
        );
        let p = dnsmasq(&text, NOW);
        assert_eq!(
            names(&p),
            vec![
                ("10.0.0.10".into(), Some("laptop-a".into())),
                ("10.0.0.11".into(), None),
                ("2001:db8::10".into(), Some("laptop-a6".into())),
            ]
        );
        assert_eq!(p.leases[0].mac, mac("aa:bb:cc:dd:ee:01"));
        assert_eq!(p.leases[2].mac, None);
        let lines: Vec<usize> = p.problems.iter().map(|x| x.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7]);
    }

    #[test]
    fn isc_last_block_wins_and_binding_state_and_ends_are_honoured() {
        let text = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
authoring-byte-order little-endian;
server-duid "\000\001";
lease 10.0.0.10 {
  starts 3 2020/01/01 00:00:00;
  ends 3 2020/01/01 12:00:00;
  binding state active;
  hardware ethernet aa:bb:cc:dd:ee:01;
  client-hostname "old-owner";
}
lease 10.0.0.10 {
  starts 4 2026/11/26 10:00:00;
  ends never;
  binding state active;
  next binding state free;
  hardware ethernet aa:bb:cc:dd:ee:02;
  uid "\001\252";
  set vendor-class-identifier = "MSFT 5.0";
  client-hostname "new-owner"; # comment
}
lease 10.0.0.11 {
  ends epoch 1900000000; # later
  binding state active;
  hardware ethernet aa:bb:cc:dd:ee:03;
}
lease 10.0.0.12 {
  ends never;
  binding state active;
  hardware ethernet aa:bb:cc:dd:ee:04;
  client-hostname "released";
}
lease 10.0.0.12 {
  ends never;
  binding state free;
  hardware ethernet aa:bb:cc:dd:ee:04;
}
lease 10.0.0.13 {
  ends 3 2030/13/01 00:00:00;
  hardware ethernet not-a-mac;
}
failover peer "dhcp" state {
  my state normal at 1 2020/01/01 00:00:00;
}
lease bogus {
  ends never;
}
lease 10.0.0.14 {
  ends never;
"#;
        let p = isc(text, NOW);
        assert_eq!(
            names(&p),
            vec![
                ("10.0.0.10".into(), Some("new-owner".into())),
                ("10.0.0.11".into(), None),
                ("10.0.0.13".into(), None),
            ]
        );
        assert_eq!(p.leases[0].mac, mac("aa:bb:cc:dd:ee:02"));
        assert_eq!(p.leases[1].mac, mac("aa:bb:cc:dd:ee:03"));
        let lines: Vec<usize> = p.problems.iter().map(|x| x.line).collect();
        // Bad date, bad MAC, bogus address, unclosed block at the end.
        assert_eq!(lines, vec![38, 39, 44, 47], "{:?}", p.problems);
    }

    #[test]
    fn isc_time_reads_dates_in_utc() {
        assert_eq!(isc_time("4 2026/11/26 10:00:00"), Some(Some(1_795_687_200)));
        assert_eq!(isc_time("epoch 5"), Some(Some(5)));
        assert_eq!(isc_time("never"), Some(None));
        assert_eq!(isc_time("4 2026-11-26 10:00:00"), None);
        assert_eq!(isc_time("4 99999999999999/11/26 10:00:00"), None);
        assert_eq!(isc_time("4 2026/11/26 10:00:99999999999999"), None);
    }

    #[test]
    fn kea_v4_later_rows_win_and_state_and_expiry_count() {
        let f = NOW + 100;
        let text = format!(
            "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n\
             10.0.0.10,aa:bb:cc:dd:ee:01,,3600,{f},1,0,0,old.example.,0,,0\n\
             10.0.0.10,aa:bb:cc:dd:ee:02,,3600,{f},1,0,0,new.example.,0,,0\n\
             10.0.0.11,aa:bb:cc:dd:ee:03,,3600,{f},1,0,0,declined,1,,0\n\
             10.0.0.12,aa:bb:cc:dd:ee:04,,3600,{p},1,0,0,expired,0,,0\n\
             10.0.0.13,aa:bb:cc:dd:ee:05,,3600,{f},1,0,0,comma&#x2cname,0,,0\n\
             10.0.0.x,aa:bb:cc:dd:ee:06,,3600,{f},1,0,0,bad,0,,0\n\
             10.0.0.14,aa:bb:cc:dd:ee:07,,3600,soon,1,0,0,bad,0,,0\n\
             10.0.0.15\n",
            p = NOW - 100
        );
        let p = kea(&text, NOW);
        assert_eq!(
            names(&p),
            vec![
                ("10.0.0.10".into(), Some("new.example".into())),
                ("10.0.0.13".into(), Some("comma,name".into())),
            ]
        );
        assert_eq!(p.leases[0].mac, mac("aa:bb:cc:dd:ee:02"));
        let lines: Vec<usize> = p.problems.iter().map(|x| x.line).collect();
        assert_eq!(lines, vec![7, 8, 9]);
    }

    #[test]
    fn kea_v6_reads_hwaddr_column_and_skips_prefixes() {
        let f = NOW + 100;
        let text = format!(
            "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source,pool_id\n\
             2001:db8::10,00:01:02,3600,{f},1,1800,0,1,128,0,0,host6,aa:bb:cc:dd:ee:01,0,,1,2,0\n\
             2001:db8:1::,00:01:02,3600,{f},1,1800,2,1,56,0,0,pd,aa:bb:cc:dd:ee:01,0,,1,2,0\n"
        );
        let p = kea(&text, NOW);
        assert_eq!(
            names(&p),
            vec![("2001:db8::10".into(), Some("host6".into()))]
        );
        assert_eq!(p.leases[0].mac, mac("aa:bb:cc:dd:ee:01"));
        assert!(p.problems.is_empty());
        let bad = kea("just,some,columns\n1,2,3\n", NOW);
        assert!(bad.leases.is_empty());
        assert_eq!(bad.problems.len(), 1);
    }
}
