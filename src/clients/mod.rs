//! Client attribution: which machine (MAC, hostname) is behind the IP address that sent a query.
//!
//! Under DHCP an IP address belongs to another machine next week, so an event must name the machine when the
//! query arrives. A background thread reads the neighbour tables ([`arp`], [`ndp`]), the DHCP [`leases`] and
//! the static names every `refresh_ms`, and publishes an immutable [`Snapshot`] through `arc-swap`; the query
//! path does one hash lookup in it. A neighbour entry the kernel drops (it ages entries out once a LAN has
//! more than 128 neighbours) still names its address for an hour, unless another MAC or a lease claims it:
//! a beacon every few minutes would otherwise find no MAC at each first query, and one machine would show
//! up in `report` as a MAC and as a bare IP. The router hints in the query itself ([`edns`]) are read only for queries
//! that produce an event.

pub mod arp;
pub mod edns;
pub mod leases;
pub mod ndp;

use crate::config::{Config, LeaseFormat};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lease files are parsed again at least this often, so that leases expire even if the file does not change.
const REPARSE: Duration = Duration::from_secs(60);
/// Bad lines of one lease file logged per change (the rest are counted).
const LOGGED_PROBLEMS: usize = 5;
/// How long a neighbour entry gone from the kernel's table still names its address.
const NEIGHBOUR_MEMORY: Duration = Duration::from_secs(3600);
/// Addresses remembered at most (a LAN's IPv6 privacy addresses come and go): past it the oldest are dropped.
const REMEMBERED_MAX: usize = 65_536;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Reads "aa:bb:cc:dd:ee:ff" or "aa-bb-cc-dd-ee-ff" (any case).
    pub fn parse(s: &str) -> Option<Mac> {
        let mut b = [0u8; 6];
        let mut parts = s.trim().split([':', '-']);
        for byte in &mut b {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 2 {
                return None;
            }
            *byte = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(b))
    }

    /// All-zero MACs are placeholders of incomplete entries.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What is known about the machine at one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub mac: Option<Mac>,
    pub hostname: Option<Arc<str>>,
}

/// Who asked, as written into an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub mac: Option<Mac>,
    pub hostname: Option<Arc<str>>,
    /// EDNS Client Subnet of the query, when a router sent one.
    pub subnet: Option<(IpAddr, u8)>,
}

impl Attribution {
    /// The address of the machine behind a router, from a full-length client subnet (/32, /128): what
    /// `report`, `hunt` and alerts tell machines apart by when there is no MAC or hostname for it.
    pub fn behind(&self) -> Option<IpAddr> {
        edns::full_length(self.subnet)
    }
}

impl From<Attribution> for Identity {
    /// The machine an attribution names, without the query's client subnet (which the query log leaves out).
    fn from(a: Attribution) -> Identity {
        Identity {
            mac: a.mac,
            hostname: a.hostname,
        }
    }
}

/// Every known client at one moment; never changed once published. (hashbrown's default hasher: the
/// lookup is on the query path, and keys come from the LAN's own tables, not from attackers' choosing.)
#[derive(Debug, Default)]
pub struct Snapshot {
    by_ip: hashbrown::HashMap<IpAddr, Identity>,
    host_by_mac: hashbrown::HashMap<Mac, Arc<str>>,
}

impl Snapshot {
    /// The machine at `ip`, if known.
    pub fn get(&self, ip: IpAddr) -> Option<&Identity> {
        self.by_ip.get(&ip.to_canonical())
    }

    /// Merges the sources: neighbour tables say which MAC holds an IP now, then a lease, then a neighbour
    /// entry gone from the table within the last hour (`recalled`); static names beat lease names; a lease's
    /// hostname is used for its IP only while that IP's MAC (if known) is the lease's.
    fn build(
        neighbours: &[(IpAddr, Mac)],
        recalled: &[(IpAddr, Mac)],
        leases: &[&leases::Lease],
        names_ip: &HashMap<IpAddr, Arc<str>>,
        names_mac: &HashMap<Mac, Arc<str>>,
    ) -> Snapshot {
        let mut host_by_mac: hashbrown::HashMap<Mac, Arc<str>> = hashbrown::HashMap::new();
        let mut lease_by_ip = HashMap::new();
        for l in leases {
            if let (Some(m), Some(h)) = (l.mac, &l.hostname) {
                host_by_mac.insert(m, Arc::from(h.as_str()));
            }
            lease_by_ip.insert(l.ip.to_canonical(), *l);
        }
        for (m, h) in names_mac {
            host_by_mac.insert(*m, h.clone());
        }
        let neigh: HashMap<IpAddr, Mac> = neighbours
            .iter()
            .map(|(ip, m)| (ip.to_canonical(), *m))
            .collect();
        let recalled: HashMap<IpAddr, Mac> = recalled
            .iter()
            .map(|(ip, m)| (ip.to_canonical(), *m))
            .collect();
        let mut ips: Vec<IpAddr> = neigh.keys().copied().collect();
        ips.extend(lease_by_ip.keys().copied());
        ips.extend(names_ip.keys().copied());
        ips.extend(recalled.keys().copied());
        let mut by_ip = hashbrown::HashMap::with_capacity(ips.len());
        for ip in ips {
            let lease = lease_by_ip.get(&ip);
            let mac = neigh
                .get(&ip)
                .copied()
                .or(lease.and_then(|l| l.mac))
                .or_else(|| recalled.get(&ip).copied());
            let lease_host = lease
                .filter(|l| l.mac.is_none() || mac.is_none() || l.mac == mac)
                .and_then(|l| l.hostname.as_deref())
                .map(Arc::from);
            let hostname = names_ip
                .get(&ip)
                .cloned()
                .or_else(|| mac.and_then(|m| names_mac.get(&m).cloned()))
                .or(lease_host)
                .or_else(|| mac.and_then(|m| host_by_mac.get(&m).cloned()));
            by_ip.insert(ip, Identity { mac, hostname });
        }
        Snapshot { by_ip, host_by_mac }
    }
}

/// The query path's view of client identities.
pub struct Clients {
    snapshot: Arc<ArcSwap<Snapshot>>,
    edns: bool,
    /// Where EDNS hints are believed from (empty: anywhere).
    edns_from: Vec<ipnet::IpNet>,
}

impl Default for Clients {
    /// Knows no one: events carry only the IP address.
    fn default() -> Self {
        Clients {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            edns: false,
            edns_from: Vec::new(),
        }
    }
}

impl Clients {
    /// Reads every source once, then keeps refreshing in a background thread for as long as `Clients` lives.
    pub fn start(cfg: &Config) -> Clients {
        let mut sources = Sources::new(cfg);
        sources.refresh();
        let first = sources.build();
        tracing::info!(
            known = first.by_ip.len(),
            neighbours = sources.neighbours.len(),
            leases = sources.leases.iter().map(|l| l.leases.len()).sum::<usize>(),
            names = sources.names_ip.len() + sources.names_mac.len(),
            "client attribution ready"
        );
        let snapshot = Arc::new(ArcSwap::from_pointee(first));
        let weak = Arc::downgrade(&snapshot);
        let every = Duration::from_millis(cfg.clients.refresh_ms);
        let spawned = std::thread::Builder::new()
            .name("c2sink-clients".into())
            .spawn(move || {
                crate::sched::background_thread();
                loop {
                    std::thread::sleep(every);
                    let Some(target) = weak.upgrade() else { return };
                    if sources.refresh() {
                        target.store(Arc::new(sources.build()));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the client refresher; client names stay as read at start");
        }
        Clients {
            snapshot,
            edns: cfg.clients.edns,
            // Checked by the config's validation; an entry that still fails to read is left out.
            edns_from: cfg
                .clients
                .edns_from
                .iter()
                .filter_map(|s| crate::admission::parse_net(s).ok())
                .collect(),
        }
    }

    /// The machine at `ip` now (one hash lookup).
    pub fn lookup(&self, ip: IpAddr) -> Identity {
        self.snapshot.load().get(ip).cloned().unwrap_or_default()
    }

    /// Who sent a query from `ip` with these OPT options: a MAC in the query (router with `--add-mac`) beats the
    /// neighbour table, whose entry would be the router's; a full-length client subnet names the address behind
    /// the router. From a router listed in `edns_from` that address is all there is (the router's own MAC and
    /// name are never used for it, or every machine behind it would be one); from any other sender (believed
    /// only because `edns_from` is empty) the sender's own identity stays when nothing is known of the
    /// address, so a LAN machine cannot hide behind a made-up subnet.
    pub fn attribute(&self, ip: IpAddr, edns_options: &[u8]) -> Attribution {
        let snap = self.snapshot.load();
        let ip = ip.to_canonical();
        let listed = self.edns_from.iter().any(|n| n.contains(&ip));
        let hints = if self.edns && (listed || self.edns_from.is_empty()) {
            edns::hints(edns_options)
        } else {
            edns::Hints::default()
        };
        let id = match edns::full_length(hints.subnet) {
            Some(behind) if listed => snap.get(behind),
            Some(behind) => snap.get(behind).or_else(|| snap.get(ip)),
            None => snap.get(ip),
        };
        match hints.mac {
            Some(mac) => Attribution {
                mac: Some(mac),
                hostname: snap.host_by_mac.get(&mac).cloned(),
                subnet: hints.subnet,
            },
            None => Attribution {
                mac: id.and_then(|i| i.mac),
                hostname: id.and_then(|i| i.hostname.clone()),
                subnet: hints.subnet,
            },
        }
    }
}

/// What each client source holds right now, as lines for `c2sink check` (problems name file and line).
pub fn check_sources(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let c = &cfg.clients;
    if !c.arp.as_os_str().is_empty() {
        let p = cfg.resolve(&c.arp);
        match std::fs::read_to_string(&p) {
            Ok(t) => out.push(format!(
                "clients: {}: {}",
                p.display(),
                counted(arp::parse(&t).len(), "neighbour")
            )),
            Err(e) => out.push(format!("clients: warning: {}: {e}", p.display())),
        }
    }
    if c.ndp {
        match ndp::dump() {
            Ok(n) => out.push(format!(
                "clients: IPv6 neighbour table: {}",
                counted(n.len(), "neighbour")
            )),
            Err(e) => out.push(format!(
                "clients: warning: IPv6 neighbour table (netlink): {e}"
            )),
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for l in &c.leases {
        let p = cfg.resolve(&l.path);
        match std::fs::read(&p) {
            Ok(b) => {
                let parsed = leases::parse(l.format, &String::from_utf8_lossy(&b), now);
                out.push(format!(
                    "clients: {}: {} leases in force, {} unreadable lines",
                    p.display(),
                    parsed.leases.len(),
                    parsed.problems.len()
                ));
                for pr in parsed.problems.iter().take(LOGGED_PROBLEMS) {
                    out.push(format!("{}:{}: {}", p.display(), pr.line, pr.message));
                }
            }
            Err(e) => out.push(format!("clients: warning: {}: {e}", p.display())),
        }
    }
    if !c.names.is_empty() {
        out.push(format!(
            "clients: {}",
            counted(c.names.len(), "static name")
        ));
    }
    out
}

/// "1 neighbour", "2 neighbours".
fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// File identity used to notice a change without reading the file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &std::path::Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        })
    }
}

struct LeaseFile {
    format: LeaseFormat,
    path: PathBuf,
    stamp: Option<Stamp>,
    parsed_at: Option<std::time::Instant>,
    leases: Vec<leases::Lease>,
    failing: bool,
}

/// The refresher's state: where to read, and what was read last.
struct Sources {
    arp: Option<PathBuf>,
    arp_failing: bool,
    ndp: bool,
    ndp_failing: bool,
    neighbours: Vec<(IpAddr, Mac)>,
    /// Every neighbour entry seen, with when it was last in the table.
    remembered: HashMap<IpAddr, (Mac, std::time::Instant)>,
    /// Those gone from the table now but seen within [`NEIGHBOUR_MEMORY`], sorted.
    recalled: Vec<(IpAddr, Mac)>,
    leases: Vec<LeaseFile>,
    names_ip: HashMap<IpAddr, Arc<str>>,
    names_mac: HashMap<Mac, Arc<str>>,
}

impl Sources {
    fn new(cfg: &Config) -> Sources {
        let c = &cfg.clients;
        let mut names_ip = HashMap::new();
        let mut names_mac = HashMap::new();
        for (k, v) in &c.names {
            if let Ok(ip) = k.parse::<IpAddr>() {
                names_ip.insert(ip.to_canonical(), Arc::from(v.as_str()));
            } else if let Some(m) = Mac::parse(k) {
                names_mac.insert(m, Arc::from(v.as_str()));
            }
        }
        Sources {
            arp: (!c.arp.as_os_str().is_empty()).then(|| cfg.resolve(&c.arp)),
            arp_failing: false,
            ndp: c.ndp,
            ndp_failing: false,
            neighbours: Vec::new(),
            remembered: HashMap::new(),
            recalled: Vec::new(),
            leases: c
                .leases
                .iter()
                .map(|l| LeaseFile {
                    format: l.format,
                    path: cfg.resolve(&l.path),
                    stamp: None,
                    parsed_at: None,
                    leases: Vec::new(),
                    failing: false,
                })
                .collect(),
            names_ip,
            names_mac,
        }
    }

    /// Reads what changed; true when the snapshot must be rebuilt.
    fn refresh(&mut self) -> bool {
        let mut neighbours = Vec::new();
        if let Some(path) = &self.arp {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    if std::mem::take(&mut self.arp_failing) {
                        tracing::info!(path = %path.display(), "ARP table readable again");
                    }
                    neighbours.extend(arp::parse(&text).into_iter().map(|(i, m)| (i.into(), m)));
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.arp_failing, true) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read ARP table; IPv4 MACs come from leases only");
                    }
                }
            }
        }
        if self.ndp {
            match ndp::dump() {
                Ok(n) => {
                    self.ndp_failing = false;
                    neighbours.extend(n.into_iter().map(|(i, m)| (i.into(), m)));
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.ndp_failing, true) {
                        tracing::warn!(error = %e, "cannot read the IPv6 neighbour table over netlink");
                    }
                }
            }
        }
        let mut changed = neighbours != self.neighbours;
        self.neighbours = neighbours;
        changed |= self.remember(std::time::Instant::now());
        let now = SystemTime::now();
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for lf in &mut self.leases {
            changed |= lf.refresh(now_secs);
        }
        changed
    }

    /// Notes the neighbours in the table at `now` and works out which gone ones still count; true when
    /// those changed.
    fn remember(&mut self, now: std::time::Instant) -> bool {
        for (ip, m) in &self.neighbours {
            self.remembered.insert(ip.to_canonical(), (*m, now));
        }
        self.remembered
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < NEIGHBOUR_MEMORY);
        if self.remembered.len() > REMEMBERED_MAX {
            let mut by_age: Vec<(std::time::Instant, IpAddr)> = self
                .remembered
                .iter()
                .map(|(ip, (_, t))| (*t, *ip))
                .collect();
            by_age.sort_unstable();
            for (_, ip) in &by_age[..by_age.len() - REMEMBERED_MAX] {
                self.remembered.remove(ip);
            }
        }
        let mut recalled: Vec<(IpAddr, Mac)> = self
            .remembered
            .iter()
            .filter(|(_, (_, seen))| *seen != now)
            .map(|(ip, (m, _))| (*ip, *m))
            .collect();
        recalled.sort_unstable();
        let changed = recalled != self.recalled;
        self.recalled = recalled;
        changed
    }

    fn build(&self) -> Snapshot {
        let leases: Vec<&leases::Lease> = self.leases.iter().flat_map(|l| &l.leases).collect();
        Snapshot::build(
            &self.neighbours,
            &self.recalled,
            &leases,
            &self.names_ip,
            &self.names_mac,
        )
    }
}

impl LeaseFile {
    /// Parses the file again when it changed (or to let leases expire); true when its leases changed.
    fn refresh(&mut self, now: u64) -> bool {
        let stamp = match Stamp::of(&self.path) {
            Ok(s) => s,
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read lease file; keeping its last leases");
                }
                return false;
            }
        };
        let stale = self.parsed_at.is_none_or(|t| t.elapsed() >= REPARSE);
        if self.stamp == Some(stamp) && !stale {
            return false;
        }
        let text = match std::fs::read(&self.path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read lease file; keeping its last leases");
                }
                return false;
            }
        };
        self.failing = false;
        let parsed = leases::parse(self.format, &text, now);
        if self.stamp != Some(stamp) {
            for p in parsed.problems.iter().take(LOGGED_PROBLEMS) {
                tracing::warn!("{}:{}: {}", self.path.display(), p.line, p.message);
            }
            if parsed.problems.len() > LOGGED_PROBLEMS {
                tracing::warn!(path = %self.path.display(), "... and {} more unreadable lines", parsed.problems.len() - LOGGED_PROBLEMS);
            }
            tracing::debug!(path = %self.path.display(), leases = parsed.leases.len(), "lease file read");
        }
        self.stamp = Some(stamp);
        self.parsed_at = Some(std::time::Instant::now());
        let changed = parsed.leases != self.leases;
        self.leases = parsed.leases;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leases::Lease;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn mac(s: &str) -> Mac {
        Mac::parse(s).unwrap()
    }

    #[test]
    fn parsers_never_panic_on_garbage() {
        // Mutations of valid samples plus random bytes, deterministic so a failure reproduces.
        let samples: [&[u8]; 5] = [
            b"1800000000 aa:bb:cc:dd:ee:01 10.0.0.10 laptop-a *\nduid 00:01\n0 1 2001:db8::1 h *\n",
            b"lease 10.0.0.1 {\n ends 4 2026/11/26 10:00:00;\n binding state active;\n hardware ethernet aa:bb:cc:dd:ee:01;\n client-hostname \"x\";\n}\n",
            b"address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n10.0.0.1,aa:bb:cc:dd:ee:01,,1,1900000000,1,0,0,h,0\n",
            b"IP address HW type Flags HW address Mask Device\n10.0.0.1 0x1 0x2 aa:bb:cc:dd:ee:01 * eth0\n",
            &[0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, b'a', 0, 0, 1, 0, 1, 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 10, 0xfd, 0xe9, 0, 6, 1, 2, 3, 4, 5, 6],
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..4000 {
            let mut b = samples[round % samples.len()].to_vec();
            for _ in 0..(next() % 6) {
                let i = (next() as usize) % b.len().max(1);
                match next() % 3 {
                    0 if !b.is_empty() => b[i] = next() as u8,
                    1 if !b.is_empty() => {
                        b.truncate(i);
                    }
                    _ => b.insert(i.min(b.len()), next() as u8),
                }
            }
            let text = String::from_utf8_lossy(&b);
            for f in [LeaseFormat::Dnsmasq, LeaseFormat::Isc, LeaseFormat::Kea] {
                let _ = leases::parse(f, &text, 1_800_000_000);
            }
            let _ = arp::parse(&text);
            let _ = edns::hints(&b);
            let mut out = Vec::new();
            let _ = ndp::parse(&b, &mut out);
        }
    }

    #[test]
    fn mac_parsing_accepts_common_forms_only() {
        assert_eq!(mac("AA-bb-0c-dd-ee-ff").to_string(), "aa:bb:0c:dd:ee:ff");
        assert_eq!(mac("a:b:c:d:e:f").to_string(), "0a:0b:0c:0d:0e:0f");
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:gg",
            "aaa:bb:cc:dd:ee:ff",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn snapshot_merges_sources_with_the_right_precedence() {
        let leases = [
            Lease {
                ip: ip("10.0.0.2"),
                mac: Some(mac("aa:00:00:00:00:02")),
                hostname: Some("lease-two".into()),
            },
            // The lease file still names the old owner of .3, but the ARP table shows a new MAC there.
            Lease {
                ip: ip("10.0.0.3"),
                mac: Some(mac("aa:00:00:00:00:03")),
                hostname: Some("old-owner".into()),
            },
            Lease {
                ip: ip("10.0.0.9"),
                mac: Some(mac("aa:00:00:00:00:09")),
                hostname: Some("new-owner".into()),
            },
        ];
        let refs: Vec<&Lease> = leases.iter().collect();
        let neigh = vec![
            (ip("10.0.0.2"), mac("aa:00:00:00:00:02")),
            (ip("10.0.0.3"), mac("aa:00:00:00:00:09")),
            (ip("10.0.0.4"), mac("aa:00:00:00:00:04")),
        ];
        let names_ip = HashMap::from([(ip("10.0.0.23"), Arc::from("reception-pc"))]);
        let names_mac = HashMap::from([(mac("aa:00:00:00:00:04"), Arc::from("printer"))]);
        let s = Snapshot::build(&neigh, &[], &refs, &names_ip, &names_mac);
        let host = |a: &str| {
            s.get(ip(a))
                .and_then(|i| i.hostname.as_deref().map(String::from))
        };
        assert_eq!(host("10.0.0.2").as_deref(), Some("lease-two"));
        assert_eq!(host("10.0.0.3").as_deref(), Some("new-owner"));
        assert_eq!(host("10.0.0.4").as_deref(), Some("printer"));
        assert_eq!(host("10.0.0.23").as_deref(), Some("reception-pc"));
        assert_eq!(
            s.get(ip("10.0.0.3")).unwrap().mac,
            Some(mac("aa:00:00:00:00:09"))
        );
        // IPv4-mapped IPv6 (dual-stack sockets) finds the IPv4 entry.
        assert_eq!(
            s.get(ip("::ffff:10.0.0.2")).unwrap().mac,
            Some(mac("aa:00:00:00:00:02"))
        );
        assert!(s.get(ip("10.0.0.99")).is_none());
    }

    /// A neighbour entry gone from the table names its address for an hour after it was last there, unless
    /// another MAC takes the address; then it is forgotten.
    #[test]
    fn a_lapsed_neighbour_is_remembered_for_an_hour() {
        use std::time::Instant;
        let mut s = Sources {
            arp: None,
            arp_failing: false,
            ndp: false,
            ndp_failing: false,
            neighbours: vec![(ip("10.0.0.7"), mac("aa:00:00:00:00:07"))],
            remembered: HashMap::new(),
            recalled: Vec::new(),
            leases: Vec::new(),
            names_ip: HashMap::new(),
            names_mac: HashMap::new(),
        };
        let mac_at = |s: &Sources| s.build().get(ip("10.0.0.7")).and_then(|i| i.mac);
        let t0 = Instant::now();
        assert!(!s.remember(t0), "in the table: nothing recalled");
        s.neighbours.clear();
        assert!(s.remember(t0 + Duration::from_secs(60)));
        assert_eq!(mac_at(&s), Some(mac("aa:00:00:00:00:07")));
        // Another machine takes the address: its MAC, at once and after its entry lapses too.
        s.neighbours = vec![(ip("10.0.0.7"), mac("aa:00:00:00:00:08"))];
        s.remember(t0 + Duration::from_secs(120));
        assert_eq!(mac_at(&s), Some(mac("aa:00:00:00:00:08")));
        s.neighbours.clear();
        s.remember(t0 + Duration::from_secs(180));
        assert_eq!(mac_at(&s), Some(mac("aa:00:00:00:00:08")));
        // An hour after it was last seen, forgotten.
        assert!(s.remember(t0 + Duration::from_secs(120) + NEIGHBOUR_MEMORY));
        assert_eq!(mac_at(&s), None);
    }

    #[test]
    fn edns_mac_beats_the_routers_neighbour_entry() {
        let leases = [Lease {
            ip: ip("10.0.0.5"),
            mac: Some(mac("aa:00:00:00:00:05")),
            hostname: Some("behind-router".into()),
        }];
        let refs: Vec<&Lease> = leases.iter().collect();
        let neigh = vec![(ip("192.168.0.1"), mac("ee:00:00:00:00:01"))];
        let c = Clients {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::build(
                &neigh,
                &[],
                &refs,
                &HashMap::new(),
                &HashMap::new(),
            ))),
            edns: true,
            edns_from: Vec::new(),
        };
        let plain = c.attribute(ip("192.168.0.1"), &[]);
        assert_eq!(plain.mac, Some(mac("ee:00:00:00:00:01")));
        let q = edns::tests_support::query_with_options(&[(65001, vec![0xaa, 0, 0, 0, 0, 5])]);
        let a = c.attribute(ip("192.168.0.1"), edns::tests_support::options_of(&q));
        assert_eq!(a.mac, Some(mac("aa:00:00:00:00:05")));
        assert_eq!(a.hostname.as_deref(), Some("behind-router"));
        let q = edns::tests_support::query_with_options(&[(8, vec![0, 1, 32, 0, 10, 0, 0, 5])]);
        let a = c.attribute(ip("192.168.0.1"), edns::tests_support::options_of(&q));
        assert_eq!(a.hostname.as_deref(), Some("behind-router"));
        assert_eq!(a.subnet, Some((ip("10.0.0.5"), 32)));
        // From a router listed in edns_from, a full-length subnet of an address nothing is known about
        // names no one: not the router.
        let q = edns::tests_support::query_with_options(&[(8, vec![0, 1, 32, 0, 10, 0, 0, 77])]);
        let listed = Clients {
            snapshot: c.snapshot.clone(),
            edns: true,
            edns_from: vec![crate::admission::parse_net("192.168.0.1").expect("net")],
        };
        let a = listed.attribute(ip("192.168.0.1"), edns::tests_support::options_of(&q));
        assert_eq!((a.mac, a.hostname.as_deref()), (None, None));
        assert_eq!(a.behind(), Some(ip("10.0.0.77")));
        // From a sender believed only because edns_from is empty, a made-up subnet does not hide it.
        let a = c.attribute(ip("192.168.0.1"), edns::tests_support::options_of(&q));
        assert_eq!(a.mac, Some(mac("ee:00:00:00:00:01")));
        assert_eq!(a.behind(), Some(ip("10.0.0.77")));
        // A shorter subnet names a network, not a machine: the router it came from is all that is known.
        let q = edns::tests_support::query_with_options(&[(8, vec![0, 1, 24, 0, 10, 0, 0])]);
        let a = c.attribute(ip("192.168.0.1"), edns::tests_support::options_of(&q));
        assert_eq!((a.mac, a.behind()), (Some(mac("ee:00:00:00:00:01")), None));
    }
}
