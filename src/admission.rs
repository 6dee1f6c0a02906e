//! Admission: the first step for every packet, before it is read as a query. Who may use c2sink at all
//! (allow and deny networks, the most specific entry wins) and how fast (a per-client token bucket kept in
//! fixed memory, so a flood from spoofed sources cannot grow it).
//!
//! The default lets in only networks that are private by definition, so c2sink is never an open resolver by
//! accident: answering the internet makes it an amplifier for attacks on others.

use crate::config::{RejectAction, ServerConfig};
use crate::pipeline::Client;
use crate::protocol;
use ipnet::IpNet;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Networks allowed when the config has no `allow`: loopback, RFC 1918, CGNAT, IPv6 ULA and link-local.
pub const DEFAULT_ALLOW: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// Ways per set of the limiter's table: a client is looked up in one small set, and the least recently
/// seen client of a full set is forgotten, so steady heavy senders keep their bucket under a spoofed flood.
const WAYS: usize = 4;

/// What admission says about one packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Go on to the pipeline.
    Pass,
    /// Send these bytes (REFUSED) and stop.
    Reply(Vec<u8>),
    /// Send nothing.
    Drop,
}

/// Counters of packets turned away, for logs and metrics.
#[derive(Default)]
pub struct AdmissionStats {
    /// From sources outside the allowed networks.
    pub denied: AtomicU64,
    /// From clients over their rate.
    pub rate_limited: AtomicU64,
}

/// Access control and rate limiting for all listeners.
pub struct Admission {
    acl: Acl,
    limiter: Option<RateLimiter>,
    refuse_action: RejectAction,
    rate_limit_action: RejectAction,
    pub stats: AdmissionStats,
}

/// Reads one allow/deny entry: a CIDR network, or a bare address meaning that one host.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n.trunc(),
        Err(_) => s
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("\"{s}\" is not a network (address/prefix) or an address"))?,
    };
    Ok(as_ipv4(net))
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it is: clients are compared as
/// IPv4 (`to_canonical`), which an IPv6 network never contains.
fn as_ipv4(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// Problems in the admission keys of `[server]`, as (key, message), for config validation.
pub fn config_problems(cfg: &ServerConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, s) in cfg.allow.iter().flatten().enumerate() {
        if let Err(e) = parse_net(s) {
            out.push((format!("allow[{i}]"), e));
        }
    }
    for (i, s) in cfg.deny.iter().enumerate() {
        if let Err(e) = parse_net(s) {
            out.push((format!("deny[{i}]"), e));
        }
    }
    if !(1..=128).contains(&cfg.rate_limit_ipv6_prefix) {
        out.push((
            "rate_limit_ipv6_prefix".into(),
            format!("{} is outside 1..=128", cfg.rate_limit_ipv6_prefix),
        ));
    }
    if !(WAYS..=1 << 24).contains(&cfg.rate_limit_clients) {
        out.push((
            "rate_limit_clients".into(),
            format!("{} is outside {WAYS}..={}", cfg.rate_limit_clients, 1 << 24),
        ));
    }
    out
}

impl Admission {
    /// Admission per the `[server]` keys; fails only on entries that `config_problems` reports.
    pub fn new(cfg: &ServerConfig) -> Result<Admission, String> {
        let allow: Vec<IpNet> = match &cfg.allow {
            Some(list) => list
                .iter()
                .map(|s| parse_net(s))
                .collect::<Result<_, _>>()?,
            None => DEFAULT_ALLOW
                .iter()
                .map(|s| parse_net(s))
                .collect::<Result<_, _>>()?,
        };
        let deny: Vec<IpNet> = cfg
            .deny
            .iter()
            .map(|s| parse_net(s))
            .collect::<Result<_, _>>()?;
        let limiter = (cfg.rate_limit > 0).then(|| {
            RateLimiter::new(
                cfg.rate_limit,
                cfg.rate_limit_burst,
                cfg.rate_limit_ipv6_prefix,
                cfg.rate_limit_clients,
            )
        });
        Ok(Admission {
            acl: Acl::new(&allow, &deny),
            limiter,
            refuse_action: cfg.refuse_action,
            rate_limit_action: cfg.rate_limit_action,
            stats: AdmissionStats::default(),
        })
    }

    /// True when every address may query: the admin made c2sink an open resolver.
    pub fn is_open(&self) -> bool {
        self.acl.is_open()
    }

    /// What `serve` warns at start and `check` prints about `allow`: an access list that refuses every
    /// client, or one that makes an open resolver, is rarely meant and costs dearly either way.
    pub fn warnings(&self, server: &ServerConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        if server.allow.as_ref().is_some_and(Vec::is_empty) {
            out.push(
                "server.allow is empty: every client is refused (only this host's own queries are answered)",
            );
        }
        if self.is_open() {
            out.push(
                "server.allow lets every address query: this is an OPEN RESOLVER; make sure a firewall \
                 keeps the internet out, or it will be used to amplify attacks on others",
            );
        }
        out
    }

    /// Whether `ip` may query at all (used to close TCP connections from denied sources at once).
    pub fn allowed(&self, ip: IpAddr) -> bool {
        self.acl.allows(ip.to_canonical())
    }

    /// True when denied sources get nothing (so a TCP connection from one can be closed at once).
    pub fn drops_denied(&self) -> bool {
        self.refuse_action == RejectAction::Drop
    }

    /// Counts a source turned away before any packet was read (a closed TCP connection).
    pub fn count_denied(&self) {
        self.stats.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// [`check`](Self::check) for `client`'s packet; one the host sends itself (its source is the address
    /// it was sent to) always passes, so that `c2sink healthcheck` (the container's HEALTHCHECK) and an
    /// admin's `dig` on the box, over UDP and then TCP when truncated, work when `allow` names only the LAN.
    /// The listener only says so when nobody else could have sent it (a TCP handshake completed with that
    /// source; for UDP see `udp_batch::sent_by_host`).
    pub fn check_client(&self, client: &Client, raw: &[u8]) -> Admit {
        if from_this_host(client) {
            return Admit::Pass;
        }
        self.check(client.addr.ip(), raw)
    }

    /// [`allowed`](Self::allowed) for `client`, with the host's own connections allowed.
    pub fn allows_client(&self, client: &Client) -> bool {
        from_this_host(client) || self.allowed(client.addr.ip())
    }

    /// The verdict on one packet from `src`: pass, refuse, or drop.
    pub fn check(&self, src: IpAddr, raw: &[u8]) -> Admit {
        let ip = src.to_canonical();
        if !self.acl.allows(ip) {
            self.stats.denied.fetch_add(1, Ordering::Relaxed);
            return reject(self.refuse_action, raw);
        }
        if let Some(l) = &self.limiter
            && !l.take(ip)
        {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return reject(self.rate_limit_action, raw);
        }
        Admit::Pass
    }
}

/// Whether `client` is this host itself (the listener decided, knowing what its transport proves).
fn from_this_host(client: &Client) -> bool {
    client.from_host
}

/// REFUSED for a query, nothing for anything that is not one (never answer a response: no loops).
fn reject(action: RejectAction, raw: &[u8]) -> Admit {
    match action {
        RejectAction::Drop => Admit::Drop,
        RejectAction::Refuse => match crate::wire::Header::read(raw) {
            Ok(h) if !h.is_response() => {
                Admit::Reply(protocol::error_reply(raw, protocol::RCODE_REFUSED))
            }
            _ => Admit::Drop,
        },
    }
}

/// Room for queries waiting on upstreams: `max_inflight` in all, and at most `max_inflight_per_client` of
/// them one client's (one address: a LAN's IPv6 clients share one /64). Without the second, one machine
/// asking random names under a zone whose servers never answer holds every slot for a timeout each, and
/// every other client's cache miss gets SERVFAIL. Sources that speak for many clients count only against
/// the total: the host itself (a forwarder on the box) and the single router addresses of
/// `[clients] edns_from`.
pub struct ForwardSlots {
    total: Arc<Semaphore>,
    /// `max_inflight`, as configured: what a client's share is a part of.
    total_slots: usize,
    /// Slots held per client address.
    held: Arc<PerClient>,
    /// The single addresses of `[clients] edns_from`: forwarding routers, each the source of a whole
    /// network's queries (a network listed there is many machines, each held to its share).
    routers: Vec<IpAddr>,
}

/// One query's slot, given back on drop.
pub struct ForwardSlot {
    _permit: OwnedSemaphorePermit,
    client: Option<ClientSlot>,
    whole: usize,
}

/// Who a forward is for, and the part of an upstream's connections it may hold: `part` of `whole`, as
/// `max_inflight_per_client` is of `max_inflight` (so an admin who raised the first for an unlisted router
/// raised this too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker {
    pub key: u128,
    pub part: usize,
    pub whole: usize,
}

impl ForwardSlot {
    /// The client this forward counts against, `None` for a source that speaks for many (the host, a listed
    /// router): what an upstream holds to a per-client share.
    pub fn asker(&self) -> Option<Asker> {
        self.client.as_ref().map(|c| Asker {
            key: c.key,
            part: c.table.cap,
            whole: self.whole,
        })
    }
}

impl ForwardSlots {
    /// Slots per the `[server]` keys; `routers`: `[clients] edns_from` (entries that do not read are left
    /// out: the config's validation reports them).
    pub fn new(cfg: &ServerConfig, routers: &[String]) -> Arc<ForwardSlots> {
        let total = cfg.max_inflight.max(1);
        Arc::new(ForwardSlots {
            total: Arc::new(Semaphore::new(total)),
            total_slots: total,
            held: PerClient::new(
                cfg.max_inflight_per_client
                    .unwrap_or(total / 4)
                    .clamp(1, total),
            ),
            routers: routers
                .iter()
                .filter_map(|s| parse_net(s).ok())
                .filter(|n| n.prefix_len() == n.max_prefix_len())
                .map(|n| n.addr().to_canonical())
                .collect(),
        })
    }

    /// A slot for one more query of `client` to forward, or `None` (shed it) when all are taken or the
    /// client holds its share.
    pub fn take(&self, client: &Client) -> Option<ForwardSlot> {
        let permit = self.total.clone().try_acquire_owned().ok()?;
        let ip = client.addr.ip().to_canonical();
        let many = from_this_host(client) || self.routers.contains(&ip);
        let held = if many {
            None
        } else {
            Some(PerClient::enter(&self.held, ip)?)
        };
        Some(ForwardSlot {
            _permit: permit,
            client: held,
            whole: self.total_slots,
        })
    }
}

/// How many of something (open connections, forwards) each client address holds, against a cap. An entry
/// lives only while its client holds one, so the map is bounded by whatever bounds the total. Per address,
/// IPv6 too: a LAN's IPv6 clients all share one /64.
pub struct PerClient {
    held: Mutex<HashMap<u128, usize>>,
    cap: usize,
}

/// One thing counted against its client; uncounted on drop.
pub struct ClientSlot {
    table: Arc<PerClient>,
    key: u128,
}

impl PerClient {
    /// An empty table allowing `cap` per client.
    pub fn new(cap: usize) -> Arc<PerClient> {
        Arc::new(PerClient {
            held: Mutex::new(HashMap::new()),
            cap,
        })
    }

    /// A slot for one more from `ip`, or `None` when its client holds `cap` already.
    pub fn enter(table: &Arc<PerClient>, ip: IpAddr) -> Option<ClientSlot> {
        let key = client_key(ip, 128);
        let mut held = table.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key).or_insert(0);
        if *n >= table.cap {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: table.clone(),
            key,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.table.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// Who counts as one client for per-client limits: an IPv4 address (as mapped IPv6), or an IPv6 address cut
/// to its first `v6_prefix` bits, since one host may hold a whole /64 of SLAAC and privacy addresses.
pub fn client_key(ip: IpAddr, v6_prefix: u8) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let keep = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
            // A prefix that happened to look like a mapped IPv4 address stays distinct by its low bit.
            let k = bits & mask;
            if Ipv6Addr::from(k).to_ipv4_mapped().is_some() {
                k | 1
            } else {
                k
            }
        }
    }
}

/// Allow and deny networks as masks per family, most specific first (deny before allow at the same prefix):
/// the per-packet check is a handful of integer compares.
struct Acl {
    /// (network, mask, allowed)
    v4: Vec<(u32, u32, bool)>,
    v6: Vec<(u128, u128, bool)>,
}

impl Acl {
    fn new(allow: &[IpNet], deny: &[IpNet]) -> Acl {
        let mut rules: Vec<(IpNet, bool)> = deny
            .iter()
            .map(|&n| (n, false))
            .chain(allow.iter().map(|&n| (n, true)))
            .collect();
        rules.sort_by_key(|&(n, allowed)| (std::cmp::Reverse(n.prefix_len()), allowed));
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (n, allowed) in rules {
            match n {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.netmask()), allowed)),
                IpNet::V6(n) => {
                    v6.push((u128::from(n.network()), u128::from(n.netmask()), allowed));
                }
            }
        }
        Acl { v4, v6 }
    }

    fn allows(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => first_match(&self.v4, u32::from(a)),
            IpAddr::V6(a) => first_match(&self.v6, u128::from(a)),
        }
    }

    /// True when some family is allowed from everywhere (a /0 allow rule).
    fn is_open(&self) -> bool {
        self.v4
            .iter()
            .any(|&(_, mask, allowed)| allowed && mask == 0)
            || self
                .v6
                .iter()
                .any(|&(_, mask, allowed)| allowed && mask == 0)
    }
}

/// Whether the most specific rule containing `a` allows it (no rule: denied).
fn first_match<T: Copy + Eq + std::ops::BitAnd<Output = T>>(rules: &[(T, T, bool)], a: T) -> bool {
    rules
        .iter()
        .find(|&&(net, mask, _)| a & mask == net)
        .is_some_and(|r| r.2)
}

/// One client's bucket.
#[derive(Clone, Copy, Default)]
struct Bucket {
    /// The client (IPv4 as mapped IPv6, IPv6 cut to the prefix); meaningful only when `used`.
    key: u128,
    used: bool,
    /// Tokens in thousandths, so slow rates refill smoothly.
    milli_tokens: u64,
    /// Nanoseconds since the limiter's epoch at the last refill.
    last_ns: u64,
}

/// Per-client token buckets in a fixed-size, set-associative table.
struct RateLimiter {
    sets: Box<[Mutex<[Bucket; WAYS]>]>,
    /// Tokens per second.
    rate: u64,
    /// Bucket size in thousandths of a token.
    burst_milli: u64,
    v6_prefix: u8,
    /// Keyed hash, so an attacker cannot aim many sources at one set.
    hasher: std::collections::hash_map::RandomState,
    epoch: Instant,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32, v6_prefix: u8, clients: usize) -> RateLimiter {
        let burst = if burst == 0 { rate } else { burst };
        let nsets = clients.div_ceil(WAYS).max(1);
        RateLimiter {
            sets: (0..nsets)
                .map(|_| Mutex::new([Bucket::default(); WAYS]))
                .collect(),
            rate: u64::from(rate),
            burst_milli: u64::from(burst) * 1000,
            v6_prefix,
            hasher: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
        }
    }

    fn key(&self, ip: IpAddr) -> u128 {
        client_key(ip, self.v6_prefix)
    }

    /// Takes one token from `ip`'s bucket; false when it is empty.
    fn take(&self, ip: IpAddr) -> bool {
        let key = self.key(ip);
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let idx = (self.hasher.hash_one(key) % self.sets.len() as u64) as usize;
        let mut set = self.sets[idx].lock().unwrap_or_else(|p| p.into_inner());
        let way = match set.iter().position(|b| b.used && b.key == key) {
            Some(w) => w,
            None => {
                // A new client: take a free way, else forget the one seen longest ago.
                let w = set
                    .iter()
                    .position(|b| !b.used)
                    .unwrap_or_else(|| (0..WAYS).min_by_key(|&w| set[w].last_ns).unwrap_or(0));
                set[w] = Bucket {
                    key,
                    used: true,
                    milli_tokens: self.burst_milli,
                    last_ns: now,
                };
                w
            }
        };
        let b = &mut set[way];
        let elapsed = u128::from(now.saturating_sub(b.last_ns));
        let refill = elapsed * u128::from(self.rate) * 1000 / 1_000_000_000;
        let refill = u64::try_from(refill).unwrap_or(u64::MAX);
        b.milli_tokens = b.milli_tokens.saturating_add(refill).min(self.burst_milli);
        b.last_ns = now;
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(allow: &[&str], deny: &[&str]) -> Acl {
        let p = |v: &[&str]| {
            v.iter()
                .map(|s| parse_net(s).expect("net"))
                .collect::<Vec<_>>()
        };
        Acl::new(&p(allow), &p(deny))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn default_allows_private_networks_only() {
        let a = acl(DEFAULT_ALLOW, &[]);
        for ok in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(a.allows(ip(ok)), "{ok} should be allowed");
        }
        for no in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:db8::1", "::"] {
            assert!(!a.allows(ip(no)), "{no} should be refused");
        }
        assert!(!a.is_open());
    }

    #[test]
    fn most_specific_entry_wins() {
        let a = acl(&["10.0.0.0/8", "10.1.2.3"], &["10.1.0.0/16"]);
        assert!(a.allows(ip("10.2.0.1")));
        assert!(!a.allows(ip("10.1.0.1")));
        assert!(a.allows(ip("10.1.2.3")));
        // Same network in both: deny wins.
        let a = acl(&["10.0.0.0/8"], &["10.0.0.0/8"]);
        assert!(!a.allows(ip("10.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_sources_are_judged_as_ipv4() {
        let cfg_allow = acl(&["127.0.0.0/8"], &[]);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        assert!(cfg_allow.allows(mapped.to_canonical()));
        let mapped: IpAddr = "::ffff:8.8.8.8".parse().expect("ip");
        assert!(!cfg_allow.allows(mapped.to_canonical()));
    }

    #[test]
    fn open_resolver_is_detected() {
        assert!(acl(&["0.0.0.0/0"], &[]).is_open());
        assert!(acl(&["::/0"], &[]).is_open());
        assert!(!acl(&["10.0.0.0/8"], &["0.0.0.0/0"]).is_open());
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
        assert_eq!(
            parse_net("10.1.2.3/8").expect("net").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_net("::1").expect("net").to_string(), "::1/128");
        // IPv4-mapped entries are the IPv4 networks they name (clients are compared as IPv4).
        assert_eq!(
            parse_net("::ffff:192.168.1.1").expect("net").to_string(),
            "192.168.1.1/32"
        );
        assert_eq!(
            parse_net("::ffff:10.9.0.0/104").expect("net").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_net("::ffff:0:0/95").expect("net").to_string(),
            "::fffe:0:0/95",
            "wider than the mapped range: left as IPv6"
        );
        assert!(acl(&["::ffff:10.0.0.0/104"], &[]).allows("10.1.2.3".parse().expect("ip")));
    }

    /// A LAN's IPv6 clients share one /64: each address is a client of its own; an IPv4 client is the same
    /// client whether it comes as IPv4 or IPv4-mapped IPv6.
    #[test]
    fn connections_count_per_client_address() {
        let table = PerClient::new(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = PerClient::enter(&table, ip("2001:db8:1:2::a")).unwrap();
        let _a2 = PerClient::enter(&table, ip("2001:db8:1:2::a")).unwrap();
        assert!(
            PerClient::enter(&table, ip("2001:db8:1:2::a")).is_none(),
            "at its cap"
        );
        let _b = PerClient::enter(&table, ip("2001:db8:1:2::b")).unwrap();
        assert!(
            PerClient::enter(&table, ip("2001:db8:1:2::c")).is_some(),
            "same /64, another machine"
        );
        let _v4 = PerClient::enter(&table, ip("192.0.2.1")).unwrap();
        let _v4b = PerClient::enter(&table, ip("::ffff:192.0.2.1")).unwrap();
        assert!(
            PerClient::enter(&table, ip("192.0.2.1")).is_none(),
            "mapped is the same"
        );
        assert!(PerClient::enter(&table, ip("192.0.2.2")).is_some());
        drop(a);
        assert!(
            PerClient::enter(&table, ip("2001:db8:1:2::a")).is_some(),
            "a slot freed"
        );
    }

    #[test]
    fn bucket_allows_burst_then_limits() {
        // One a second: the loop would have to stall for a second to see a refill.
        let l = RateLimiter::new(1, 5, 64, 64);
        let a = ip("192.168.1.10");
        let passed = (0..20).filter(|_| l.take(a)).count();
        // Five from the burst, plus at most what refilled during the loop.
        assert!((5..=6).contains(&passed), "{passed}");
        // Another client has its own bucket.
        assert!(l.take(ip("192.168.1.11")));
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_prefix() {
        let l = RateLimiter::new(1, 1, 64, 64);
        assert!(l.take(ip("2001:db8:1:2::1")));
        assert!(!l.take(ip("2001:db8:1:2::ffff")));
        assert!(l.take(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn spoofed_flood_keeps_memory_fixed_and_heavy_sender_limited() {
        let l = RateLimiter::new(1, 1, 64, 16);
        let heavy = ip("10.9.9.9");
        assert!(l.take(heavy));
        let mut heavy_passed = 0;
        for i in 0..100_000u32 {
            let spoofed = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            l.take(spoofed);
            // The heavy sender is seen more recently than most spoofed ones, so it keeps its (empty) bucket.
            if i % 4 == 0 && l.take(heavy) {
                heavy_passed += 1;
            }
        }
        assert_eq!(l.sets.len(), 4);
        assert!(heavy_passed < 1000, "{heavy_passed}");
    }
}
