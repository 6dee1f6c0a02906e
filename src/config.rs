//! The TOML configuration: what the admin wrote, checked up front so that a typo fails loudly at start or
//! reload, never half-way through serving.

use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};

/// One thing wrong with a config file, naming the file, the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every problem found in a config, so that `check` can list them all at once.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    /// Zones sent to other servers than `[upstream]`'s (the LAN's own domain to its DHCP or AD server).
    #[serde(default)]
    pub forward: Vec<ForwardConfig>,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub blocklists: Vec<ListConfig>,
    #[serde(default)]
    pub sinkhole: SinkholeConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
    #[serde(default)]
    pub clients: ClientsConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The sinkhole host that records connection attempts; absent = off.
    #[serde(default)]
    pub trap: Option<TrapConfig>,
    /// The admin HTTP endpoint (metrics, health, readiness); absent = off.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Encrypted listeners (DNS over TLS, DNS over HTTPS); absent = off.
    #[serde(default)]
    pub tls_listen: Option<TlsListenConfig>,
    /// Folder of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Path the config was read from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
}

/// Where clients reach c2sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Every address serves both UDP and TCP. Port 0 picks a free port (the same one for UDP and TCP).
    pub listen: Vec<SocketAddr>,
    /// UDP sockets per listen address (SO_REUSEPORT), 0 = one per CPU core.
    #[serde(default)]
    pub udp_sockets: usize,
    /// Queries being forwarded at once, over all listeners; past it new work gets SERVFAIL.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Open TCP connections at once.
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: usize,
    /// A TCP connection with no complete query for this long is closed.
    #[serde(default = "default_tcp_idle_timeout_ms")]
    pub tcp_idle_timeout_ms: u64,
    /// Open TCP connections from one client address at once.
    #[serde(default = "default_tcp_max_connections_per_client")]
    pub tcp_max_connections_per_client: usize,
    /// Of `max_inflight`, how many one client may have at once; unset = a quarter of `max_inflight`.
    #[serde(default)]
    pub max_inflight_per_client: Option<usize>,
    /// Networks (CIDR or bare address) allowed to query; unset = loopback, RFC 1918, CGNAT, ULA, link-local.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Networks refused even inside an allowed one; the most specific entry of allow and deny wins.
    #[serde(default)]
    pub deny: Vec<String>,
    /// What a client outside the allowed networks gets.
    #[serde(default = "default_refuse_action")]
    pub refuse_action: RejectAction,
    /// Queries per second per client (token bucket); 0 = no limit.
    #[serde(default)]
    pub rate_limit: u32,
    /// Queries a client may send in a burst above the rate; 0 = one second's worth (rate_limit).
    #[serde(default)]
    pub rate_limit_burst: u32,
    /// IPv6 clients are counted per prefix of this length (one /64 is usually one host or one LAN).
    #[serde(default = "default_rate_limit_ipv6_prefix")]
    pub rate_limit_ipv6_prefix: u8,
    /// What a client over its rate gets.
    #[serde(default = "default_rate_limit_action")]
    pub rate_limit_action: RejectAction,
    /// Clients tracked by the limiter at once (fixed memory; the least recently seen are forgotten first).
    #[serde(default = "default_rate_limit_clients")]
    pub rate_limit_clients: usize,
    /// When started as root: the user ("name", "UID" or "UID:GID") to switch to once every socket is bound.
    #[serde(default)]
    pub user: Option<String>,
}

/// What happens to a query that admission turns away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectAction {
    /// Answer REFUSED (the client learns at once; the reply is no larger than the query).
    Refuse,
    /// Send nothing (nothing to reflect, the client times out).
    Drop,
}

fn default_refuse_action() -> RejectAction {
    RejectAction::Refuse
}
fn default_rate_limit_action() -> RejectAction {
    RejectAction::Drop
}
fn default_rate_limit_ipv6_prefix() -> u8 {
    64
}
fn default_rate_limit_clients() -> usize {
    65_536
}
fn default_tcp_max_connections_per_client() -> usize {
    64
}

fn default_max_inflight() -> usize {
    4096
}
fn default_tcp_max_connections() -> usize {
    1024
}
fn default_tcp_idle_timeout_ms() -> u64 {
    10_000
}

/// The resolvers c2sink forwards to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Upstreams, tried in order of health: `IP:port` (plain DNS, UDP with TCP fallback),
    /// `tls://IP[:853][#name]` (DNS over TLS), `https://IP[:443][/path][#name]` (DNS over HTTPS).
    pub servers: Vec<UpstreamSpec>,
    /// Time allowed for one try against one upstream.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM file of extra CA certificates trusted for `tls://` and `https://` upstreams (private resolvers).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The certificates read from `ca_file` at load time.
    #[serde(skip)]
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Passes a query's MAC (EDNS 65001) and client-subnet (EDNS 8) options on upstream; by default they
    /// stop at c2sink, which reads them for attribution, so LAN addresses do not reach a public resolver.
    #[serde(default)]
    pub send_client_hints: bool,
    /// Whether the reverse zones of private addresses and `home.arpa` are answered here (NXDOMAIN) or sent
    /// upstream (when the upstream is the LAN's own DNS server).
    #[serde(default)]
    pub private_names: PrivateNames,
}

/// One `[[forward]]` zone: names at or below `zone` go to `servers` instead of `[upstream] servers`, with the
/// same timeout, CA file and failover.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    pub zone: String,
    pub servers: Vec<UpstreamSpec>,
}

/// What becomes of queries for private address space and `home.arpa` (see [`crate::special`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivateNames {
    /// Answered by c2sink (NXDOMAIN): they never reach a public resolver.
    #[default]
    Local,
    /// Sent upstream like any other name.
    Forward,
}

/// One upstream as written in `[upstream] servers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum UpstreamSpec {
    /// Plain DNS over UDP, TCP when truncated.
    Plain(SocketAddr),
    /// DNS over TLS (RFC 7858); the certificate must be valid for `name` (the IP when no name is given).
    Tls { addr: SocketAddr, name: String },
    /// DNS over HTTPS (RFC 8484, HTTP/2 POST); the certificate must be valid for `name`.
    Https {
        addr: SocketAddr,
        name: String,
        path: String,
    },
}

impl UpstreamSpec {
    /// Where the upstream is reached.
    pub fn addr(&self) -> SocketAddr {
        match self {
            UpstreamSpec::Plain(a) => *a,
            UpstreamSpec::Tls { addr, .. } | UpstreamSpec::Https { addr, .. } => *addr,
        }
    }

    /// True for DNS over TLS or HTTPS.
    pub fn is_encrypted(&self) -> bool {
        !matches!(self, UpstreamSpec::Plain(_))
    }
}

impl TryFrom<String> for UpstreamSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for UpstreamSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // "IP" or "IP:port" / "[v6]:port", with a default port.
        fn addr(host: &str, default_port: u16, whole: &str) -> Result<SocketAddr, String> {
            if let Ok(a) = host.parse::<SocketAddr>() {
                return Ok(a);
            }
            // "[v6]" with both brackets (as in "[v6]:port"), or an IPv4 address without any: unbracketed
            // IPv6 cannot say whether its last group is a port ("::1:853"), whatever the scheme.
            let ip = match host.strip_prefix('[') {
                Some(inner) => (inner.strip_suffix(']'))
                    .and_then(|v6| v6.parse::<std::net::Ipv6Addr>().ok())
                    .map(std::net::IpAddr::V6),
                None if host.parse::<std::net::Ipv6Addr>().is_ok() => {
                    return Err(format!(
                        "\"{whole}\": write an IPv6 address in brackets, \"[{host}]\" for port {default_port} \
                         or \"[ADDRESS]:PORT\""
                    ));
                }
                None => host.parse::<std::net::IpAddr>().ok(),
            };
            ip.map(|ip| SocketAddr::new(ip, default_port))
                .ok_or_else(|| {
                    format!("\"{whole}\": \"{host}\" is not an IP address (names would need a resolver to find them)")
                })
        }
        let split_name = |rest: &str| -> (String, Option<String>) {
            match rest.split_once('#') {
                Some((a, n)) => (a.to_string(), Some(n.to_string())),
                None => (rest.to_string(), None),
            }
        };
        let check_name = |name: Option<String>, a: SocketAddr| -> Result<String, String> {
            let name = name.unwrap_or_else(|| a.ip().to_string());
            rustls::pki_types::ServerName::try_from(name.as_str())
                .map(|_| name.clone())
                .map_err(|_| format!("\"{s}\": \"{name}\" is not a valid TLS server name"))
        };
        if let Some(rest) = s.strip_prefix("tls://") {
            let (host, name) = split_name(rest);
            let a = addr(&host, 853, s)?;
            let name = check_name(name, a)?;
            Ok(UpstreamSpec::Tls { addr: a, name })
        } else if let Some(rest) = s.strip_prefix("https://") {
            let (hostpath, name) = split_name(rest);
            let (host, path) = match hostpath.find('/') {
                Some(i) => (hostpath[..i].to_string(), hostpath[i..].to_string()),
                None => (hostpath.clone(), "/dns-query".to_string()),
            };
            let a = addr(&host, 443, s)?;
            let name = check_name(name, a)?;
            if path.contains(['?', ' ']) {
                return Err(format!(
                    "\"{s}\": the path must not hold a query string or spaces"
                ));
            }
            Ok(UpstreamSpec::Https {
                addr: a,
                name,
                path,
            })
        } else if s.contains("://") {
            Err(format!(
                "\"{s}\": unknown scheme; use IP:port, tls://IP#name or https://IP/dns-query#name"
            ))
        } else if s.parse::<std::net::Ipv6Addr>().is_ok() {
            // "2001:db8::1:53" reads as an address and as one with a port: the brackets must say which.
            Err(format!(
                "\"{s}\": write an IPv6 upstream in brackets, \"[{s}]\" for port 53 or \"[ADDRESS]:PORT\""
            ))
        } else {
            // A bare address is plain DNS on port 53, as Unbound's forward-addr and dnsmasq's server= take it.
            addr(s, 53, s).map(UpstreamSpec::Plain).map_err(|_| {
                format!("\"{s}\" is not IP[:port], tls://IP#name or https://IP/dns-query#name")
            })
        }
    }
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamSpec::Plain(a) => write!(f, "{a}"),
            UpstreamSpec::Tls { addr, name } => write!(f, "tls://{addr}#{name}"),
            UpstreamSpec::Https { addr, name, path } => write!(f, "https://{addr}{path}#{name}"),
        }
    }
}

fn default_timeout_ms() -> u64 {
    2000
}

/// Answer cache limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Most answers kept; 0 turns the cache off.
    #[serde(default = "default_cache_size")]
    pub size: usize,
    /// TTL floor in seconds applied to cached positive answers.
    #[serde(default)]
    pub min_ttl: u32,
    /// TTL ceiling in seconds.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u32,
    /// Ceiling for negative answers (NXDOMAIN/NODATA), which are cached by their SOA.
    #[serde(default = "default_negative_max_ttl")]
    pub negative_max_ttl: u32,
    /// Seconds past its TTL an answer is still given when no upstream answers (RFC 8767); 0 turns it off.
    #[serde(default = "default_serve_stale")]
    pub serve_stale: u32,
    /// Milliseconds a query for an expired answer waits for the upstream before it gets that answer stale
    /// (RFC 8767's client response timer); the fetch goes on and refreshes the cache. 0: only once every
    /// upstream has failed.
    #[serde(default = "default_serve_stale_after_ms")]
    pub serve_stale_after_ms: u64,
}

fn default_cache_size() -> usize {
    100_000
}
fn default_max_ttl() -> u32 {
    86_400
}
fn default_negative_max_ttl() -> u32 {
    3_600
}
fn default_serve_stale() -> u32 {
    86_400
}
fn default_serve_stale_after_ms() -> u64 {
    1_800
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size: default_cache_size(),
            min_ttl: 0,
            max_ttl: default_max_ttl(),
            negative_max_ttl: default_negative_max_ttl(),
            serve_stale: default_serve_stale(),
            serve_stale_after_ms: default_serve_stale_after_ms(),
        }
    }
}

/// One list of C2 (or other) domains.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// Name used in events and metrics.
    pub name: String,
    /// The list file.
    pub path: PathBuf,
    /// How the file is written; `auto` guesses from its first lines.
    #[serde(default)]
    pub format: ListFormat,
    /// `block` (default) or `allow`: entries of an allow list are never blocked.
    #[serde(default)]
    pub kind: ListKind,
    /// How this list's matches are answered; unset = the `[sinkhole]` mode. RPZ rules' own actions win.
    pub action: Option<SinkholeMode>,
    /// Address for A answers in `address` mode (default: `sinkhole.ipv4`).
    pub ipv4: Option<Ipv4Addr>,
    /// Address for AAAA answers in `address` mode (default: `sinkhole.ipv6`).
    pub ipv6: Option<Ipv6Addr>,
    /// Download the list from here (http:// or https://); `path` then keeps the last good copy.
    pub url: Option<String>,
    /// How often to download (humantime, e.g. "6h"); default 6h.
    pub refresh: Option<String>,
    /// Reject a download with fewer than (1 - max_shrink) x the entries of the last good copy; 1 turns it off.
    pub max_shrink: Option<f64>,
    /// Accept only a download with this SHA-256 (hex).
    pub sha256: Option<String>,
}

impl ListConfig {
    /// A plain local block list with every option at its default (for tools such as `hunt`).
    pub fn local(name: String, path: PathBuf) -> ListConfig {
        ListConfig {
            name,
            path,
            ..ListConfig::default()
        }
    }
}

/// The format of a list file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListFormat {
    /// Guess per file from its first lines.
    #[default]
    Auto,
    /// One domain per line, `#` comments, `*.domain` wildcards.
    Domains,
    /// `ADDRESS name [name...]` lines; the address is ignored.
    Hosts,
    /// AdBlock-style `||domain^` and `@@||domain^` rules; others are skipped.
    Adblock,
    /// An RPZ zone file with QNAME triggers.
    Rpz,
}

impl ListFormat {
    /// The name used in config and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            ListFormat::Auto => "auto",
            ListFormat::Domains => "domains",
            ListFormat::Hosts => "hosts",
            ListFormat::Adblock => "adblock",
            ListFormat::Rpz => "rpz",
        }
    }
}

/// Whether a list blocks or exempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    /// Domains to sinkhole.
    #[default]
    Block,
    /// Domains never to sinkhole (exceptions).
    Allow,
    /// IPv4/IPv6 addresses and networks: an upstream answer containing one is sinkholed.
    Ip,
}

impl ListKind {
    /// The name the config uses, for logs and `check`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Block => "block",
            ListKind::Allow => "allow",
            ListKind::Ip => "ip",
        }
    }
}

impl ListConfig {
    /// How often a feed is downloaded.
    pub fn refresh_every(&self) -> std::time::Duration {
        self.refresh
            .as_deref()
            .and_then(|r| humantime::parse_duration(r).ok())
            .unwrap_or(std::time::Duration::from_secs(6 * 3600))
    }

    /// The shrink guard's fraction (default 0.5).
    pub fn shrink_limit(&self) -> f64 {
        self.max_shrink.unwrap_or(0.5)
    }

    /// Problems with this list's own keys, as (key suffix, message); `sinkhole` supplies fallbacks.
    pub fn problems(&self, sinkhole: &SinkholeConfig) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(u) = &self.url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            out.push(("url", format!("\"{u}\" is not an http:// or https:// URL")));
        }
        let feed_only = [
            ("refresh", self.refresh.is_some()),
            ("max_shrink", self.max_shrink.is_some()),
            ("sha256", self.sha256.is_some()),
        ];
        for (key, set) in feed_only {
            if set && self.url.is_none() {
                out.push((key, "only used with url".into()));
            }
        }
        if let Some(r) = &self.refresh {
            match humantime::parse_duration(r) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => {}
                Ok(_) => out.push(("refresh", "must be at least 1s".into())),
                Err(e) => out.push(("refresh", format!("\"{r}\": {e}"))),
            }
        }
        if let Some(m) = self.max_shrink
            && !(0.0..=1.0).contains(&m)
        {
            out.push(("max_shrink", format!("{m} is outside 0..=1")));
        }
        if let Some(h) = &self.sha256
            && (h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
        {
            out.push(("sha256", "must be 64 hex digits".into()));
        }
        if self.kind == ListKind::Allow {
            for (key, set) in [
                ("action", self.action.is_some()),
                ("ipv4", self.ipv4.is_some()),
                ("ipv6", self.ipv6.is_some()),
            ] {
                if set {
                    out.push((
                        key,
                        "an allow list blocks nothing, so it has no answer to set".into(),
                    ));
                }
            }
            return out;
        }
        let mode = self.action.unwrap_or(sinkhole.mode);
        if mode == SinkholeMode::Address {
            // An inherited address mode without addresses is reported once, at sinkhole.mode.
            if self.action.is_some()
                && self.ipv4.or(sinkhole.ipv4).is_none()
                && self.ipv6.or(sinkhole.ipv6).is_none()
            {
                out.push((
                    "action",
                    "\"address\" needs ipv4 and/or ipv6 (on the list or in [sinkhole])".into(),
                ));
            }
        } else if self.ipv4.is_some() || self.ipv6.is_some() {
            out.push((
                "ipv4",
                format!(
                    "ipv4/ipv6 are only used with action = \"address\" (this list answers \"{}\")",
                    mode.as_str()
                ),
            ));
        }
        out
    }
}

/// Applying changed lists and config without a restart (SIGHUP always works).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Look for changes to the config file and every list file, and reload when one is seen.
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// How often to look (milliseconds); a change is applied once two looks in a row agree, so an editor's
    /// save (rename, truncate-then-write) is read whole.
    #[serde(default = "default_watch_interval_ms")]
    pub interval_ms: u64,
}

fn default_watch() -> bool {
    true
}
fn default_watch_interval_ms() -> u64 {
    1000
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: default_watch(),
            interval_ms: default_watch_interval_ms(),
        }
    }
}

/// How a blocked name is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkholeMode {
    Null,
    Nxdomain,
    Refused,
    Address,
}

impl SinkholeMode {
    /// The name used in config and in events' `action` field.
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkholeMode::Null => "null",
            SinkholeMode::Nxdomain => "nxdomain",
            SinkholeMode::Refused => "refused",
            SinkholeMode::Address => "address",
        }
    }
}

/// The server-wide sinkhole answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkholeConfig {
    #[serde(default = "default_mode")]
    pub mode: SinkholeMode,
    /// Address given to A questions in `address` mode.
    pub ipv4: Option<Ipv4Addr>,
    /// Address given to AAAA questions in `address` mode.
    pub ipv6: Option<Ipv6Addr>,
    /// TTL of sinkhole answers and of the synthesized SOA; the most RPZ local data may keep of its own.
    #[serde(default = "default_sinkhole_ttl")]
    pub ttl: u32,
}

fn default_mode() -> SinkholeMode {
    SinkholeMode::Null
}
/// Most UDP sockets (and threads) per listen address.
const MAX_UDP_SOCKETS: usize = 256;

/// Longest TTL a sinkhole answer may carry (a day).
const MAX_SINKHOLE_TTL: u32 = 86_400;

fn default_sinkhole_ttl() -> u32 {
    60
}

impl Default for SinkholeConfig {
    fn default() -> Self {
        SinkholeConfig {
            mode: default_mode(),
            ipv4: None,
            ipv6: None,
            ttl: default_sinkhole_ttl(),
        }
    }
}

/// Where block events and operational logs go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// "stdout" or a file path (appended to) for block events as JSON lines.
    #[serde(default = "default_events")]
    pub events: String,
    /// Operational log level on stderr: a level for c2sink's lines or a `target=level` list; RUST_LOG overrides it.
    #[serde(default = "default_level")]
    pub level: String,
    /// Rotate a file log once it would grow past this size ("100MB", "1GiB", bytes as a string or a
    /// number); none = no size limit.
    #[serde(default, deserialize_with = "size_text")]
    pub rotate_size: Option<String>,
    /// Rotate a file log this long after it was opened ("1d", "12h"); none = no time limit.
    #[serde(default)]
    pub rotate_every: Option<String>,
    /// Rotated files kept per log; older ones are deleted.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Compress rotated files with gzip.
    #[serde(default)]
    pub gzip: bool,
    /// Also send block events to syslog (RFC 5424): "unix:///dev/log" or "udp://HOST:PORT".
    #[serde(default)]
    pub syslog: Option<String>,
    /// Every query as a JSON line to this file (off by default: it records all browsing).
    #[serde(default)]
    pub queries: Option<String>,
    /// Identical block events within this long after a written one are folded into one line with a
    /// `count` ("0s": a line for every blocked query), so one looping client cannot flood the log.
    #[serde(default = "default_coalesce")]
    pub coalesce: String,
    /// At most this many of a sender's names under one rule get lines of their own per `coalesce` window;
    /// the rest become one line with `"fold":"names"` (0: no cap), so random labels cannot fill the disk.
    /// Unset: 100 ([`LogConfig::names_cap`]); kept apart from the default so that a set value with
    /// `coalesce` off can be pointed out.
    #[serde(default)]
    pub coalesce_names: Option<usize>,
}

fn default_coalesce() -> String {
    "1s".to_string()
}

/// `[log] coalesce_names` when unset.
const DEFAULT_COALESCE_NAMES: usize = 100;

/// Longest `coalesce` window: a beacon slower than this must keep a line per query.
const MAX_COALESCE: Duration = Duration::from_secs(60);

fn default_keep() -> usize {
    10
}

fn default_events() -> String {
    "stdout".to_string()
}
fn default_level() -> String {
    "info".to_string()
}

impl LogConfig {
    /// The names cap per sender, rule and window (`coalesce_names`, 100 when unset).
    pub fn names_cap(&self) -> usize {
        self.coalesce_names.unwrap_or(DEFAULT_COALESCE_NAMES)
    }

    /// The window repeated block events are folded over; `None` for "0s" (every query gets its line).
    pub fn coalesce_window(&self) -> Result<Option<Duration>, String> {
        match humantime::parse_duration(self.coalesce.trim()) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(d) if d > MAX_COALESCE => Err(format!(
                "\"{}\" is longer than {}: a beacon's timer would hide in it",
                self.coalesce,
                humantime::format_duration(MAX_COALESCE)
            )),
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(format!("\"{}\": {e}", self.coalesce)),
        }
    }

    /// The operational log filter, built where `level` is checked so that a config that loads always logs:
    /// a bare level applies to c2sink (other crates stay at `warn`), anything else is a `target=level` list.
    pub fn filter(&self) -> Result<Targets, String> {
        log_filter(&self.level)
    }
}

/// `level` as a filter: `info` means c2sink's own lines at info and every other crate's at warn;
/// `warn,c2sink=debug` is taken as written, and a list without a bare level keeps `warn` for the rest.
///
/// Every word of a list must be a level or `target=level`: the filter syntax reads a bare word as a target
/// to show alone, so a typo (`inof`) would silence every line c2sink writes, reload failures included.
pub fn log_filter(level: &str) -> Result<Targets, String> {
    if let Ok(l) = level.trim().parse::<LevelFilter>() {
        return Ok(Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("c2sink", l));
    }
    let mut has_default = false;
    for word in level.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        // `RUST_LOG=c2sink::upstream` (tracing's "everything from this target") is for the environment
        // ([`rust_log_filter`]); in the config a bare word is far more likely a misspelt level.
        if word.contains('=') {
            continue;
        }
        if word.parse::<LevelFilter>().is_err() {
            return Err(format!(
                "\"{word}\" is not a log level (error, warn, info, debug, trace, off) nor a target=level pair"
            ));
        }
        has_default = true;
    }
    let targets = level
        .parse::<Targets>()
        .map_err(|e| format!("\"{level}\" is not a log level or a target=level list: {e}"))?;
    Ok(if has_default {
        targets
    } else {
        targets.with_default(LevelFilter::WARN)
    })
}

/// `RUST_LOG` as a filter: as [`log_filter`] for a bare level, else the tracing syntax as written, where a
/// bare word is a target to show alone (`RUST_LOG=c2sink::upstream`), as developers expect of it.
pub fn rust_log_filter(value: &str) -> Result<Targets, String> {
    if value.trim().parse::<LevelFilter>().is_ok() {
        return log_filter(value);
    }
    value
        .parse::<Targets>()
        .map_err(|e| format!("\"{value}\" is not a log level or a target=level list: {e}"))
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            events: default_events(),
            level: default_level(),
            rotate_size: None,
            rotate_every: None,
            keep: default_keep(),
            gzip: false,
            syslog: None,
            queries: None,
            coalesce: default_coalesce(),
            coalesce_names: None,
        }
    }
}

/// Where the names and MACs of clients come from (see docs/clients.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsConfig {
    /// IPv4 neighbour table in the kernel's `/proc/net/arp` format; "" turns it off.
    #[serde(default = "default_arp")]
    pub arp: PathBuf,
    /// Read the kernel's IPv6 neighbour table (NDP) over netlink.
    #[serde(default = "default_true")]
    pub ndp: bool,
    /// DHCP lease files, read again whenever they change.
    #[serde(default)]
    pub leases: Vec<LeaseConfig>,
    /// Static names by IP address or MAC ("10.0.0.23" = "reception-pc").
    #[serde(default)]
    pub names: std::collections::BTreeMap<String, String>,
    /// Take the MAC (option 65001, dnsmasq --add-mac) and client subnet (option 8) from a query's EDNS.
    #[serde(default = "default_true")]
    pub edns: bool,
    /// Sources (the routers) whose EDNS hints are believed, as addresses or networks; empty: any source.
    /// Without it, a machine that queries c2sink directly can name another machine in its own queries.
    #[serde(default)]
    pub edns_from: Vec<String>,
    /// How often the files and tables are checked for changes, in milliseconds.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
}

fn default_arp() -> PathBuf {
    PathBuf::from("/proc/net/arp")
}
fn default_true() -> bool {
    true
}
fn default_refresh_ms() -> u64 {
    2000
}

impl Default for ClientsConfig {
    fn default() -> Self {
        ClientsConfig {
            arp: default_arp(),
            ndp: true,
            leases: Vec::new(),
            names: Default::default(),
            edns: true,
            edns_from: Vec::new(),
            refresh_ms: default_refresh_ms(),
        }
    }
}

/// Alerts on a new infected machine: the first block of a (client, list) pair within `window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// `http://HOST:PORT/PATH` that gets a JSON POST with a Slack/Teams-style `text` field.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Syslog target for alerts: "unix:///dev/log" or "udp://HOST:PORT".
    #[serde(default)]
    pub syslog: Option<String>,
    /// A (client, list) pair alerts again only after this long ("24h").
    #[serde(default = "default_alert_window")]
    pub window: String,
    /// Most alerts sent per minute; more wait for their client's next block.
    #[serde(default = "default_max_per_minute")]
    pub max_per_minute: u32,
    /// Tries after the first failed delivery, with doubling backoff from 0.5 s.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Connect/read time allowed for one webhook delivery.
    #[serde(default = "default_alert_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM file of the CA(s) to trust for an `https://` webhook instead of the public roots (a private relay).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The certificates read from `ca_file` at load time.
    #[serde(skip)]
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

fn default_alert_window() -> String {
    "24h".into()
}
fn default_max_per_minute() -> u32 {
    10
}
fn default_retries() -> u32 {
    5
}
fn default_alert_timeout_ms() -> u64 {
    5000
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook: None,
            syslog: None,
            window: default_alert_window(),
            max_per_minute: default_max_per_minute(),
            retries: default_retries(),
            timeout_ms: default_alert_timeout_ms(),
            ca_file: None,
            ca_certs: Vec::new(),
        }
    }
}

/// One DHCP server's lease file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    pub format: LeaseFormat,
    pub path: PathBuf,
}

/// Which DHCP server wrote a lease file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseFormat {
    /// dnsmasq's `dnsmasq.leases`.
    Dnsmasq,
    /// ISC dhcpd's `dhcpd.leases`.
    Isc,
    /// Kea's memfile CSV (DHCPv4 or DHCPv6).
    Kea,
}

/// A size written as text (`"100MB"`) or as a plain number of bytes (`10485760`), kept as text for
/// [`parse_size`]: an admin writes either.
fn size_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Size;
    impl serde::de::Visitor<'_> for Size {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size such as \"100MB\", or a number of bytes")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
    }
    d.deserialize_any(Size)
}

/// Parses a size such as "100MB", "512k", "1GiB" or "4096" into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a size like \"100MB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        u => {
            return Err(format!(
                "\"{s}\": unknown unit \"{u}\" (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    let bytes = n * mult as f64;
    if !(1.0..=1e15).contains(&bytes) {
        return Err(format!("\"{s}\" is out of range (1 byte to 1 PB)"));
    }
    Ok(bytes as u64)
}

/// The sinkhole host: c2sink accepts TCP connections on the address blocked names point at, and logs who
/// connected and what they sent first (TLS SNI, HTTP Host and path).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapConfig {
    /// Addresses to accept on; unset = `sinkhole.ipv4` and `sinkhole.ipv6` (that host must own them).
    #[serde(default)]
    pub listen: Vec<IpAddr>,
    /// TCP ports to accept on (0 picks a free port, for tests).
    #[serde(default = "default_trap_ports")]
    pub ports: Vec<u16>,
    /// Connections held at once; more are closed at once.
    #[serde(default = "default_trap_max_connections")]
    pub max_connections: usize,
    /// Connections one client address may hold at once, so that one host cannot take every slot.
    #[serde(default = "default_trap_max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Time a client gets to send its first bytes (ClientHello or request head).
    #[serde(default = "default_trap_read_timeout_ms")]
    pub read_timeout_ms: u64,
}

fn default_trap_ports() -> Vec<u16> {
    vec![80, 443, 8080]
}
fn default_trap_max_connections() -> usize {
    256
}
fn default_trap_max_connections_per_client() -> usize {
    16
}
fn default_trap_read_timeout_ms() -> u64 {
    5000
}

impl Config {
    /// What `serve` warns at start and `check` prints: settings that are valid but rarely do what was
    /// meant ([`ipv6_only_wildcards`](Self::ipv6_only_wildcards), a sinkhole address no answer uses).
    pub fn notes(&self) -> Vec<String> {
        let mut out = self.ipv6_only_wildcards();
        let s = &self.sinkhole;
        let used = s.mode == SinkholeMode::Address
            || self.trap.as_ref().is_some_and(|t| t.listen.is_empty())
            || (self.blocklists.iter()).any(|l| l.action == Some(SinkholeMode::Address));
        if self.log.coalesce_names.is_some() && self.log.coalesce_window() == Ok(None) {
            out.push(
                "log.coalesce_names is set but log.coalesce is off (\"0s\"): every blocked query gets a \
                 line of its own, so the cap has nothing to fold"
                    .to_string(),
            );
        }
        if (s.ipv4.is_some() || s.ipv6.is_some()) && !used {
            out.push(format!(
                "sinkhole.ipv4/ipv6 are set but no answer uses them: [sinkhole] mode is \"{}\"; set \
                 mode = \"address\" to answer blocked names with them",
                s.mode.as_str()
            ));
        }
        out
    }

    /// Listen addresses on `[::]` without `0.0.0.0` on the same port beside them: IPv6 only (c2sink's
    /// sockets are, so the pair can share a port), which an admin used to dual-stack sockets may not expect.
    pub fn ipv6_only_wildcards(&self) -> Vec<String> {
        let tls = self.tls_listen.iter();
        let lists = std::iter::once(("server.listen", &self.server.listen))
            .chain(tls.clone().map(|t| ("tls_listen.dot", &t.dot)))
            .chain(tls.map(|t| ("tls_listen.doh", &t.doh)));
        let mut out = Vec::new();
        for (key, addrs) in lists {
            for a in addrs
                .iter()
                .filter(|a| a.is_ipv6() && a.ip().is_unspecified())
            {
                let v4 = addrs
                    .iter()
                    .any(|b| b.is_ipv4() && b.ip().is_unspecified() && b.port() == a.port());
                if !v4 && a.port() != 0 {
                    out.push(format!(
                        "{key}: {a} takes IPv6 clients only; add 0.0.0.0:{} for IPv4 clients",
                        a.port()
                    ));
                }
            }
        }
        out
    }

    /// The sinkhole host's listen addresses: `[trap] listen`, else the sinkhole addresses.
    pub fn trap_addresses(&self) -> Vec<SocketAddr> {
        let Some(t) = &self.trap else {
            return Vec::new();
        };
        let ips: Vec<IpAddr> = if t.listen.is_empty() {
            self.sinkhole
                .ipv4
                .map(IpAddr::V4)
                .into_iter()
                .chain(self.sinkhole.ipv6.map(IpAddr::V6))
                .collect()
        } else {
            t.listen.clone()
        };
        ips.iter()
            .flat_map(|&ip| t.ports.iter().map(move |&p| SocketAddr::new(ip, p)))
            .collect()
    }
}

/// The admin HTTP endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// IP:port to serve HTTP on; keep it on loopback or a management network (no authentication).
    pub listen: SocketAddr,
    /// `/readyz` needs an upstream answer at most this many seconds old (else it probes the upstreams).
    #[serde(default = "default_ready_upstream_age_s")]
    pub ready_upstream_age_s: u64,
}

fn default_ready_upstream_age_s() -> u64 {
    60
}

/// Encrypted listeners for clients that support them, with the certificate they present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenConfig {
    /// PEM certificate chain (server certificate first).
    pub cert_file: PathBuf,
    /// PEM private key of the certificate.
    pub key_file: PathBuf,
    /// Addresses for DNS over TLS (usually port 853).
    #[serde(default)]
    pub dot: Vec<SocketAddr>,
    /// Addresses for DNS over HTTPS (HTTP/2; usually port 443).
    #[serde(default)]
    pub doh: Vec<SocketAddr>,
    /// URL path of DoH queries.
    #[serde(default = "default_doh_path")]
    pub doh_path: String,
    /// TLS settings for DoT, built from the files at load time.
    #[serde(skip)]
    pub dot_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// TLS settings for DoH (ALPN h2), built from the files at load time.
    #[serde(skip)]
    pub doh_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

fn default_doh_path() -> String {
    "/dns-query".to_string()
}

/// Where events are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSink {
    Stdout,
    File(PathBuf),
}

impl Config {
    /// Reads and validates a config file, reporting every problem found.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let problem = |key: &str, message: String| Problem {
            file: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![problem("", format!("cannot read: {e}"))]))?;
        Self::parse(&text, path)
    }

    /// Parses config text as if read from `path` (used by `load`, tests and fuzzing).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| key_at(text, s.start)).unwrap_or_default();
            ConfigError(vec![
                Problem {
                    file: path.to_path_buf(),
                    key,
                    message: e.message().trim().to_string(),
                }
                .with_line(text, e.span().map(|s| s.start)),
            ])
        })?;
        cfg.source = path.to_path_buf();
        cfg.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if cfg.base_dir.as_os_str().is_empty() {
            cfg.base_dir = PathBuf::from(".");
        }
        let mut problems = cfg.validate();
        if let Some(f) = cfg.upstream.ca_file.clone() {
            match load_ca_file(&cfg.resolve(&f)) {
                Ok(certs) => cfg.upstream.ca_certs = certs,
                Err(message) => problems.push(Problem {
                    file: path.to_path_buf(),
                    key: "upstream.ca_file".into(),
                    message,
                }),
            }
        }
        if let Some(f) = cfg.alerts.ca_file.clone() {
            match load_ca_file(&cfg.resolve(&f)) {
                Ok(certs) => cfg.alerts.ca_certs = certs,
                Err(message) => problems.push(Problem {
                    file: path.to_path_buf(),
                    key: "alerts.ca_file".into(),
                    message,
                }),
            }
        }
        if let Some(t) = &mut cfg.tls_listen {
            let (cert, key) = (
                cfg.base_dir.join(&t.cert_file),
                cfg.base_dir.join(&t.key_file),
            );
            match load_server_tls(&cert, &key) {
                Ok((dot, doh)) => (t.dot_tls, t.doh_tls) = (Some(dot), Some(doh)),
                Err((key_name, message)) => problems.push(Problem {
                    file: path.to_path_buf(),
                    key: format!("tls_listen.{key_name}"),
                    message,
                }),
            }
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError(problems))
        }
    }

    /// What makes `s` no server to forward to: port 0, an unspecified address, or c2sink itself (one query
    /// would come back to it until max_inflight is full).
    fn server_problems(&self, s: &UpstreamSpec) -> Vec<String> {
        let u = s.addr();
        let mut out = Vec::new();
        if u.port() == 0 {
            out.push(format!("{s}: port 0"));
        }
        if u.ip().is_unspecified() {
            out.push(format!("{s}: unspecified address"));
        }
        // The listeners of the same protocol as `s`: plain DNS, DoT or DoH.
        let tls = self.tls_listen.as_ref();
        let (key, listeners): (&str, &[SocketAddr]) = match s {
            UpstreamSpec::Plain(_) => ("server.listen", &self.server.listen),
            UpstreamSpec::Tls { .. } => ("tls_listen.dot", tls.map_or(&[], |t| &t.dot)),
            UpstreamSpec::Https { .. } => ("tls_listen.doh", tls.map_or(&[], |t| &t.doh)),
        };
        let own = listeners.iter().position(|l| {
            l.port() == u.port()
                && (l.ip() == u.ip()
                    || (l.ip().is_unspecified()
                        && l.is_ipv4() == u.is_ipv4()
                        && u.ip().is_loopback()))
        });
        if let Some(j) = own {
            out.push(format!(
                "{s} is c2sink's own {key}[{j}] ({}): every forwarded query would come back to c2sink",
                listeners[j]
            ));
        }
        out
    }

    /// Semantic checks that serde cannot express.
    fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut p = |key: String, message: String| {
            out.push(Problem {
                file: self.source.clone(),
                key,
                message,
            })
        };
        if self.server.listen.is_empty() {
            p(
                "server.listen".into(),
                "at least one address is needed".into(),
            );
        }
        // Every TCP port c2sink binds (DNS, DoT, DoH, the admin endpoint, the trap): an address listed
        // twice, or one a wildcard on the same port already covers, fails to bind (IPv6 wildcards are IPv6
        // only, so `0.0.0.0` and `[::]` may share a port).
        let mut binds: Vec<(String, SocketAddr)> = Vec::new();
        let mut groups: Vec<(&str, Vec<SocketAddr>)> =
            vec![("server.listen", self.server.listen.clone())];
        if let Some(t) = &self.tls_listen {
            groups.push(("tls_listen.dot", t.dot.clone()));
            groups.push(("tls_listen.doh", t.doh.clone()));
        }
        if let Some(a) = &self.admin {
            groups.push(("admin.listen", vec![a.listen]));
        }
        groups.push(("trap.ports", self.trap_addresses()));
        for (key, addrs) in &groups {
            for (i, a) in addrs.iter().enumerate() {
                let here = match *key {
                    "admin.listen" => key.to_string(),
                    "trap.ports" => format!("{key} ({a})"),
                    _ => format!("{key}[{i}]"),
                };
                let covered = binds.iter().find(|(_, b)| {
                    b.port() == a.port()
                        && a.port() != 0
                        && (b.ip() == a.ip()
                            || (b.is_ipv4() == a.is_ipv4()
                                && (b.ip().is_unspecified() || a.ip().is_unspecified())))
                });
                if let Some((other, b)) = covered {
                    p(
                        here.clone(),
                        format!("{a} overlaps {other} ({b}): the same port cannot be bound twice"),
                    );
                }
                binds.push((here, *a));
            }
        }
        if self.server.max_inflight == 0 {
            p("server.max_inflight".into(), "must be at least 1".into());
        }
        // Each socket is a thread and a descriptor per listen address; more than cores gains nothing.
        if self.server.udp_sockets > MAX_UDP_SOCKETS {
            p(
                "server.udp_sockets".into(),
                format!(
                    "{} is outside 0..={MAX_UDP_SOCKETS} (0: one per CPU core)",
                    self.server.udp_sockets
                ),
            );
        }
        // 0 would time out every TCP read that is not already waiting, and a TLS handshake never fits.
        let idle = self.server.tcp_idle_timeout_ms;
        if !(100..=3_600_000).contains(&idle) {
            p(
                "server.tcp_idle_timeout_ms".into(),
                format!("{idle} is outside 100..=3600000"),
            );
        }
        if let Some(n) = self.server.max_inflight_per_client
            && !(1..=self.server.max_inflight.max(1)).contains(&n)
        {
            p(
                "server.max_inflight_per_client".into(),
                format!(
                    "{n} is outside 1..=max_inflight ({})",
                    self.server.max_inflight
                ),
            );
        }
        if self.server.tcp_max_connections == 0 {
            p(
                "server.tcp_max_connections".into(),
                "must be at least 1".into(),
            );
        }
        if self.server.tcp_max_connections_per_client == 0 {
            p(
                "server.tcp_max_connections_per_client".into(),
                "must be at least 1".into(),
            );
        }
        for (key, problem) in crate::admission::config_problems(&self.server) {
            p(format!("server.{key}"), problem);
        }
        // A user name must exist here, or serve (as root) stops at start.
        if let Some(u) = &self.server.user
            && let Err(e) = crate::privilege::RunAs::parse(u).and_then(|r| r.resolve())
        {
            p("server.user".into(), e.to_string());
        }
        if self.upstream.servers.is_empty() {
            p(
                "upstream.servers".into(),
                "at least one upstream is needed".into(),
            );
        }
        for (i, s) in self.upstream.servers.iter().enumerate() {
            for problem in self.server_problems(s) {
                p(format!("upstream.servers[{i}]"), problem);
            }
        }
        let mut zones = std::collections::HashSet::new();
        for (i, f) in self.forward.iter().enumerate() {
            match crate::blocklist::normalize_domain(&f.zone) {
                Err(e) => p(format!("forward[{i}].zone"), format!("{:?}: {e}", f.zone)),
                Ok(z) if !zones.insert(z.clone()) => {
                    p(format!("forward[{i}].zone"), format!("{z} is listed twice"))
                }
                // Zones answered here whatever the config says (private ones may be forwarded).
                Ok(z) if crate::special::always_zone(&z).is_some() => p(
                    format!("forward[{i}].zone"),
                    format!("{z} is answered by c2sink itself (RFC 6761, 7686)"),
                ),
                Ok(_) => {}
            }
            if f.servers.is_empty() {
                p(
                    format!("forward[{i}].servers"),
                    "at least one server is needed".into(),
                );
            }
            for (j, s) in f.servers.iter().enumerate() {
                for problem in self.server_problems(s) {
                    p(format!("forward[{i}].servers[{j}]"), problem);
                }
            }
        }
        if !(10..=60_000).contains(&self.upstream.timeout_ms) {
            p(
                "upstream.timeout_ms".into(),
                format!("{} is outside 10..=60000", self.upstream.timeout_ms),
            );
        }
        for (i, s) in self.clients.edns_from.iter().enumerate() {
            if let Err(e) = crate::admission::parse_net(s) {
                p(format!("clients.edns_from[{i}]"), e);
            }
        }
        if self.cache.min_ttl > self.cache.max_ttl {
            p(
                "cache.min_ttl".into(),
                format!(
                    "{} is above cache.max_ttl {}",
                    self.cache.min_ttl, self.cache.max_ttl
                ),
            );
        }
        if self.cache.serve_stale_after_ms > 60_000 {
            p(
                "cache.serve_stale_after_ms".into(),
                format!(
                    "{} is above 60000 (a client has given up long before)",
                    self.cache.serve_stale_after_ms
                ),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.blocklists.iter().enumerate() {
            if l.name.trim().is_empty() {
                p(format!("blocklists[{i}].name"), "must not be empty".into());
            } else if !names.insert(l.name.as_str()) {
                p(
                    format!("blocklists[{i}].name"),
                    format!("\"{}\" is used by another list", l.name),
                );
            }
            for (key, message) in l.problems(&self.sinkhole) {
                p(format!("blocklists[{i}].{key}"), message);
            }
            let path = self.resolve(&l.path);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {}
                // A feed's copy is downloaded at start when missing; its folder must exist.
                Err(_) if l.url.is_some() && path.parent().is_some_and(Path::is_dir) => {}
                Ok(_) => p(
                    format!("blocklists[{i}].path"),
                    format!("{} is not a regular file", path.display()),
                ),
                Err(e) => p(
                    format!("blocklists[{i}].path"),
                    format!("{}: {e}", path.display()),
                ),
            }
        }
        if !(50..=3_600_000).contains(&self.reload.interval_ms) {
            p(
                "reload.interval_ms".into(),
                format!("{} is outside 50..=3600000", self.reload.interval_ms),
            );
        }
        if self.sinkhole.mode == SinkholeMode::Address
            && self.sinkhole.ipv4.is_none()
            && self.sinkhole.ipv6.is_none()
        {
            p(
                "sinkhole.mode".into(),
                "mode \"address\" needs sinkhole.ipv4 and/or sinkhole.ipv6".into(),
            );
        }
        // Past 2^31 - 1 clients read a TTL as 0 (RFC 2181 section 8); past a day a sinkholed name stays in
        // clients' caches long after a false positive is taken off the list.
        if self.sinkhole.ttl > MAX_SINKHOLE_TTL {
            p(
                "sinkhole.ttl".into(),
                format!("{} is outside 0..={MAX_SINKHOLE_TTL}", self.sinkhole.ttl),
            );
        }
        if self.log.events.trim().is_empty() {
            p(
                "log.events".into(),
                "must be \"stdout\" or a file path".into(),
            );
        } else if let EventSink::File(f) = self.event_sink() {
            let dir = f.parent().unwrap_or(Path::new("."));
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                p(
                    "log.events".into(),
                    format!("folder {} does not exist", dir.display()),
                );
            } else if f.is_dir() {
                p(
                    "log.events".into(),
                    format!("{} is a folder, not a file", f.display()),
                );
            }
        }
        if let Some(t) = &self.tls_listen {
            if t.dot.is_empty() && t.doh.is_empty() {
                p(
                    "tls_listen".into(),
                    "give tls_listen.dot and/or tls_listen.doh addresses".into(),
                );
            }
            if !t.doh_path.starts_with('/') || t.doh_path.contains(['?', ' ']) {
                p(
                    "tls_listen.doh_path".into(),
                    format!("\"{}\" must start with / and hold no query", t.doh_path),
                );
            }
        }
        if let Some(size) = &self.log.rotate_size
            && let Err(e) = parse_size(size)
        {
            p("log.rotate_size".into(), e);
        }
        if let Some(every) = &self.log.rotate_every {
            match humantime::parse_duration(every) {
                Ok(d) if d.as_secs() >= 1 => {}
                Ok(_) => p("log.rotate_every".into(), "must be at least 1s".into()),
                Err(e) => p("log.rotate_every".into(), format!("\"{every}\": {e}")),
            }
        }
        if let Err(e) = self.log.coalesce_window() {
            p("log.coalesce".into(), e);
        }
        if self.log.keep == 0 && (self.log.rotate_size.is_some() || self.log.rotate_every.is_some())
        {
            p("log.keep".into(), "must be at least 1 when rotating".into());
        }
        if let Some(url) = &self.log.syslog
            && let Err(e) = crate::events::SyslogTarget::parse(url)
        {
            p("log.syslog".into(), e);
        }
        if let Some(q) = &self.log.queries {
            let f = self.resolve(Path::new(q));
            let dir = f.parent().unwrap_or(Path::new("."));
            if q.trim().is_empty() {
                p("log.queries".into(), "must be a file path".into());
            } else if q == "stdout" || q == "-" {
                // Not a file called "stdout": every query there would bury the block events.
                p(
                    "log.queries".into(),
                    format!("\"{q}\": the query log must be a file path"),
                );
            } else if !dir.as_os_str().is_empty() && !dir.is_dir() {
                p(
                    "log.queries".into(),
                    format!("folder {} does not exist", dir.display()),
                );
            } else if f.is_dir() {
                p(
                    "log.queries".into(),
                    format!("{} is a folder, not a file", f.display()),
                );
            } else if matches!(self.event_sink(), EventSink::File(e) if same_file(&e, &f)) {
                // Two writers rotating one file would each move the other's lines away.
                p(
                    "log.queries".into(),
                    format!(
                        "{} is also log.events: give each log its own file",
                        f.display()
                    ),
                );
            }
        }
        // Lines appended to the config or a list (and rotation moving it away) leave a config that no longer
        // parses, at the next reload and start, and a list of JSON lines; a feed's download replaces the file.
        let inputs = self.inputs();
        for (key, out) in self.written_files() {
            if let Some((what, _)) = inputs.iter().find(|(k, i)| *k != key && same_file(i, &out)) {
                p(
                    key,
                    format!(
                        "{} is {what}, which c2sink reads: it must not write over it",
                        out.display()
                    ),
                );
            }
        }
        if let Some(w) = &self.alerts.webhook
            && let Err(e) = crate::alerts::WebhookUrl::parse(w)
        {
            p("alerts.webhook".into(), e);
        }
        if let Some(url) = &self.alerts.syslog
            && let Err(e) = crate::events::SyslogTarget::parse(url)
        {
            p("alerts.syslog".into(), e);
        }
        match humantime::parse_duration(&self.alerts.window) {
            Ok(d) if d.as_secs() >= 1 => {}
            Ok(_) => p("alerts.window".into(), "must be at least 1s".into()),
            Err(e) => p(
                "alerts.window".into(),
                format!("\"{}\": {e}", self.alerts.window),
            ),
        }
        if self.alerts.max_per_minute == 0 {
            p("alerts.max_per_minute".into(), "must be at least 1".into());
        }
        if !(100..=60_000).contains(&self.alerts.timeout_ms) {
            p(
                "alerts.timeout_ms".into(),
                format!("{} is outside 100..=60000", self.alerts.timeout_ms),
            );
        }
        for (key, name) in &self.clients.names {
            if key.parse::<std::net::IpAddr>().is_err() && crate::clients::Mac::parse(key).is_none()
            {
                p(
                    format!("clients.names.\"{key}\""),
                    "key must be an IP address or a MAC address".into(),
                );
            }
            if name.trim().is_empty() {
                p(
                    format!("clients.names.\"{key}\""),
                    "name must not be empty".into(),
                );
            }
        }
        for (i, l) in self.clients.leases.iter().enumerate() {
            if l.path.as_os_str().is_empty() {
                p(
                    format!("clients.leases[{i}].path"),
                    "must not be empty".into(),
                );
            }
        }
        if !(100..=3_600_000).contains(&self.clients.refresh_ms) {
            p(
                "clients.refresh_ms".into(),
                format!("{} is outside 100..=3600000", self.clients.refresh_ms),
            );
        }
        if let Some(t) = &self.trap {
            if self.trap_addresses().is_empty() {
                p(
                    "trap.listen".into(),
                    "no address: set trap.listen or sinkhole.ipv4/ipv6 (and trap.ports)".into(),
                );
            }
            if t.max_connections == 0 {
                p("trap.max_connections".into(), "must be at least 1".into());
            }
            if t.max_connections_per_client == 0 {
                p(
                    "trap.max_connections_per_client".into(),
                    "must be at least 1".into(),
                );
            }
            if !(100..=60_000).contains(&t.read_timeout_ms) {
                p(
                    "trap.read_timeout_ms".into(),
                    format!("{} is outside 100..=60000", t.read_timeout_ms),
                );
            }
        }
        if let Some(admin) = &self.admin
            && admin.ready_upstream_age_s == 0
        {
            p(
                "admin.ready_upstream_age_s".into(),
                "must be at least 1".into(),
            );
        }
        if let Err(e) = self.log.filter() {
            p("log.level".into(), e);
        }
        out
    }

    /// Where a query for `name` (lower case, no trailing dot) goes when no list blocks it, as `check
    /// --explain` says it: answered by c2sink itself (a special-use or private zone, as the query path
    /// answers them), to a `[[forward]]` zone's servers (the most specific zone), or upstream.
    pub fn route_of(&self, name: &str) -> String {
        // Answered before anything else on the query path, whatever the zones say.
        if name == crate::health::NAME {
            return format!(
                "c2sink answers it itself (TXT \"{}\", NODATA for other types: the health-check name); \
                 it never goes upstream",
                crate::health::TEXT
            );
        }
        let forward = self
            .forward
            .iter()
            .filter_map(|f| {
                let zone = crate::blocklist::normalize_domain(&f.zone).ok()?;
                crate::wire::within(name, &zone).then_some((zone, f))
            })
            .max_by_key(|(z, _)| z.split('.').count());
        let special = match forward {
            Some(_) => crate::special::always_zone(name),
            None => crate::special::zone_of(name, self.upstream.private_names),
        };
        if let Some((zone, how)) = special {
            let what = match how {
                crate::special::Local::Loopback => "127.0.0.1 / ::1",
                crate::special::Local::LoopbackName => "PTR localhost.",
                crate::special::Local::Nxdomain if name == zone => "NODATA",
                crate::special::Local::Nxdomain => "NXDOMAIN",
            };
            return format!(
                "c2sink answers it itself ({what}, local zone {zone}); it never goes upstream"
            );
        }
        match forward {
            Some((zone, f)) => {
                let servers: Vec<String> = f.servers.iter().map(ToString::to_string).collect();
                format!(
                    "it is forwarded to the servers of [[forward]] zone {zone} ({})",
                    servers.join(", ")
                )
            }
            None => "it is forwarded upstream".to_string(),
        }
    }

    /// Resolves a path from the config against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Where the full query log goes, if it is on.
    pub fn query_log(&self) -> Option<PathBuf> {
        self.log
            .queries
            .as_ref()
            .map(|q| self.resolve(Path::new(q)))
    }

    /// The files c2sink writes, with their keys: the logs and the feeds' copies.
    fn written_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        if let EventSink::File(f) = self.event_sink() {
            out.push(("log.events".to_string(), f));
        }
        if let Some(q) = self.query_log() {
            out.push(("log.queries".to_string(), q));
        }
        for (i, l) in self.blocklists.iter().enumerate() {
            if l.url.is_some() {
                out.push((format!("blocklists[{i}].path"), self.resolve(&l.path)));
            }
        }
        out
    }

    /// The files c2sink reads (and, for a feed, writes itself), each with its key or what it is.
    fn inputs(&self) -> Vec<(String, PathBuf)> {
        let mut out = vec![("the config file".to_string(), self.source.clone())];
        for (i, l) in self.blocklists.iter().enumerate() {
            let path = self.resolve(&l.path);
            if l.url.is_some() {
                let mut meta = path.clone().into_os_string();
                meta.push(".feed");
                out.push((format!("blocklists[{i}].path's .feed file"), meta.into()));
            }
            out.push((format!("blocklists[{i}].path"), path));
        }
        for (i, l) in self.clients.leases.iter().enumerate() {
            out.push((format!("clients.leases[{i}].path"), self.resolve(&l.path)));
        }
        let files = [
            ("upstream.ca_file", self.upstream.ca_file.as_ref()),
            ("alerts.ca_file", self.alerts.ca_file.as_ref()),
            (
                "tls_listen.cert_file",
                self.tls_listen.as_ref().map(|t| &t.cert_file),
            ),
            (
                "tls_listen.key_file",
                self.tls_listen.as_ref().map(|t| &t.key_file),
            ),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                out.push((key.to_string(), self.resolve(path)));
            }
        }
        out
    }

    /// Where block events go.
    pub fn event_sink(&self) -> EventSink {
        if self.log.events == "stdout" || self.log.events == "-" {
            EventSink::Stdout
        } else {
            EventSink::File(self.resolve(Path::new(&self.log.events)))
        }
    }
}

/// Whether two paths name one file: the same file (links followed, hard links too), or for a file not there
/// yet (a log, a feed's copy) the same name in the same folder.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return (x.dev(), x.ino()) == (y.dev(), y.ino());
    }
    let real = |p: &Path| {
        std::fs::canonicalize(p).ok().or_else(|| {
            let folder = match p.parent() {
                Some(f) if !f.as_os_str().is_empty() => f,
                _ => Path::new("."),
            };
            Some(std::fs::canonicalize(folder).ok()?.join(p.file_name()?))
        })
    };
    a == b || matches!((real(a), real(b)), (Some(x), Some(y)) if x == y)
}

/// DoT and DoH server settings from a PEM chain and key; the error names the key (`cert_file`/`key_file`).
#[allow(clippy::type_complexity)]
fn load_server_tls(
    cert: &Path,
    key: &Path,
) -> Result<
    (
        std::sync::Arc<rustls::ServerConfig>,
        std::sync::Arc<rustls::ServerConfig>,
    ),
    (&'static str, String),
> {
    use rustls::pki_types::pem::PemObject;
    let chain = load_ca_file(cert).map_err(|m| ("cert_file", m))?;
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ("key_file", format!("{}: {e}", key.display())))?;
    let build = |alpn: &[u8]| {
        crate::tls_listen::server_config(&chain, &key_der, alpn).map_err(|e| {
            (
                "key_file",
                format!("{} does not fit {}: {e}", key.display(), cert.display()),
            )
        })
    };
    Ok((build(b"dot")?, build(b"h2")?))
}

/// Reads every certificate in a PEM file; an empty or unreadable file is an error.
fn load_ca_file(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

impl Problem {
    /// Adds "line N" to a parse error so that an admin can jump to it.
    fn with_line(mut self, text: &str, at: Option<usize>) -> Problem {
        if let Some(at) = at {
            let line = text[..at.min(text.len())].matches('\n').count() + 1;
            self.message = format!("line {line}: {}", self.message);
        }
        self
    }
}

/// Names the dotted key (with array indexes: `server.listen[1]`, `blocklists[0].kind`) whose key or value
/// sits at byte offset `at`, from the parsed document's spans; by the lines around it if it does not parse.
fn key_at(text: &str, at: usize) -> String {
    if at == 0 {
        // Errors about the document as a whole (a missing top-level table).
        return String::new();
    }
    match toml::de::DeTable::parse(text) {
        Ok(doc) => {
            let mut best = String::new();
            key_in_table(doc.get_ref(), at, "", &mut best);
            best
        }
        Err(_) => key_at_by_lines(text, at),
    }
}

/// The deepest path below `t` (whose own path is `here`) whose key or value spans `at`, into `best`.
fn key_in_table(t: &toml::de::DeTable<'_>, at: usize, here: &str, best: &mut String) {
    for (k, v) in t {
        let part = key_part(k.get_ref());
        let path = if here.is_empty() {
            part
        } else {
            format!("{here}.{part}")
        };
        if k.span().contains(&at) || v.span().contains(&at) {
            best.clone_from(&path);
        }
        key_in_value(v, at, &path, best);
    }
}

/// A key as TOML writes it in a dotted path: bare when it can be (`listen`), else quoted (`"10.0.0.1"`).
fn key_part(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// [`key_in_table`] for a value: tables and arrays are searched whatever their own span (a `[table]`
/// header's span need not cover its keys).
fn key_in_value(
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    at: usize,
    here: &str,
    best: &mut String,
) {
    match v.get_ref() {
        toml::de::DeValue::Table(t) => key_in_table(t, at, here, best),
        toml::de::DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let path = format!("{here}[{i}]");
                if item.span().contains(&at) {
                    best.clone_from(&path);
                }
                key_in_value(item, at, &path, best);
            }
        }
        _ => {}
    }
}

/// The key at `at` guessed from the nearest `[table]` header and `key =` before it, for text that does not
/// parse as TOML at all.
fn key_at_by_lines(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let mut table = String::new();
    let mut key = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        let t = line.trim();
        if t.starts_with('[') {
            table = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            key.clear();
        } else if let Some((k, _)) = t.split_once('=')
            && !t.starts_with('#')
        {
            key = k.trim().to_string();
        }
        if at < offset || offset == text.len() && at == offset {
            break;
        }
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = ["127.0.0.1:5353"]
[upstream]
servers = ["127.0.0.1:53"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/tmp/x/c2sink.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.sinkhole.mode, SinkholeMode::Null);
        assert_eq!(c.sinkhole.ttl, 60);
        assert_eq!(c.upstream.timeout_ms, 2000);
        assert_eq!(c.event_sink(), EventSink::Stdout);
        assert_eq!(c.base_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let e = parse(&format!("{GOOD}\n[sinkhole]\nmdoe = \"null\"\n")).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/tmp/x/c2sink.toml"), "{s}");
        assert!(s.contains("sinkhole.mdoe"), "{s}");
        assert!(s.contains("unknown field"), "{s}");
        assert!(s.contains("line 8"), "{s}");
    }

    #[test]
    fn log_level_is_a_level_for_c2sink_or_a_target_list() {
        use tracing::Level;
        let f = log_filter("debug").expect("a level");
        assert!(f.would_enable("c2sink::upstream", &Level::DEBUG));
        assert!(!f.would_enable("rustls::conn", &Level::INFO));
        assert!(f.would_enable("rustls::conn", &Level::WARN));
        let f = log_filter("warn,c2sink=trace,h2=off").expect("a list");
        assert!(f.would_enable("c2sink::pipeline", &Level::TRACE));
        assert!(!f.would_enable("h2::proto", &Level::ERROR));
        assert!(!f.would_enable("rustls::conn", &Level::INFO));
        let e = parse(&format!("{GOOD}[log]\nlevel = \"c2sink=loud\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level") && e.contains("c2sink=loud"), "{e}");
        // A typo is no target to show alone, which would silence c2sink.
        for typo in ["inof", "warn,c2snk", "c2sink=debug,verbose"] {
            let e = log_filter(typo).unwrap_err();
            assert!(e.contains("not a log level"), "{typo}: {e}");
        }
        // In RUST_LOG a bare word is a target, as tracing reads it.
        let f = rust_log_filter("c2sink::upstream").expect("a target");
        assert!(f.would_enable("c2sink::upstream", &Level::TRACE));
        assert!(!f.would_enable("c2sink::reload", &Level::ERROR));
        assert!(rust_log_filter("debug").is_ok_and(|f| f.would_enable("c2sink::x", &Level::DEBUG)));
        // A list without a bare level keeps warnings from every other target.
        let f = log_filter("h2=debug").expect("a list");
        assert!(f.would_enable("c2sink::reload", &Level::WARN));
        assert!(f.would_enable("h2::proto", &Level::DEBUG));
    }

    #[test]
    fn bad_address_names_key() {
        let e =
            parse("[server]\nlisten = [\"127.0.0.1\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n")
                .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("server.listen"), "{s}");
        assert!(s.contains("socket address"), "{s}");
    }

    /// The key named is the one whose value is wrong, wherever its line is: an array item on a later line,
    /// an inline table continued on the next line, a table in an array of tables.
    #[test]
    fn a_parse_error_names_the_exact_key() {
        let cases = [
            (
                "[server]\nlisten = [\n  \"127.0.0.1:53\",\n  \"bad=addr\",\n]\n",
                "server.listen[1]",
                "line 4",
            ),
            (
                "[clients]\nleases = [{ format = \"dnsmasq\", path = \"a\" },\n  { format = \"nope\", path = \"b\" }]\n",
                "clients.leases[1].format",
                "line 3",
            ),
            (
                "[[blocklists]]\nname = \"a\"\npath = \"a.txt\"\n[[blocklists]]\nname = \"b\"\npath = \"b.txt\"\n\
                 kind = \"maybe\"\n",
                "blocklists[1].kind",
                "line 7",
            ),
            ("[server]\ncolour = \"blue\"\n", "server.colour", "line 2"),
            (
                "[clients.names]\n\"10.0.0.1\" = 5\n",
                "clients.names.\"10.0.0.1\"",
                "line 2",
            ),
        ];
        for (text, key, line) in cases {
            let s = parse(text).unwrap_err().to_string();
            assert!(s.contains(&format!("{key}: {line}")), "{key}: {s}");
        }
        // Text that is no TOML still gets a key from the lines around the error.
        let s = parse("[server]\nlisten = [\"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(s.contains("server.listen"), "{s}");
    }

    #[test]
    fn list_keys_are_checked() {
        let dir = std::env::temp_dir().join(format!("c2sink-cfg-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        std::fs::write(dir.join("l.txt"), "a.example\n").expect("write");
        let text = format!(
            "{GOOD}[[blocklists]]\nname = \"a\"\npath = \"l.txt\"\nkind = \"allow\"\naction = \"nxdomain\"\n\
             [[blocklists]]\nname = \"b\"\npath = \"l.txt\"\nipv4 = \"192.0.2.1\"\n\
             [[blocklists]]\nname = \"c\"\npath = \"l.txt\"\naction = \"address\"\n\
             [[blocklists]]\nname = \"d\"\npath = \"nope/feed.txt\"\nurl = \"ftp://x\"\nrefresh = \"soon\"\n\
             max_shrink = 2.0\nsha256 = \"abc\"\n\
             [[blocklists]]\nname = \"e\"\npath = \"new-feed.txt\"\nurl = \"https://x.example/l\"\nrefresh = \"1h\"\n\
             [[blocklists]]\nname = \"f\"\npath = \"l.txt\"\nformat = \"rpz\"\naction = \"address\"\nipv6 = \"2001:db8::1\"\n"
        );
        let e = Config::parse(&text, &dir.join("c2sink.toml")).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "blocklists[0].action",
                "blocklists[1].ipv4",
                "blocklists[2].action",
                "blocklists[3].url",
                "blocklists[3].refresh",
                "blocklists[3].max_shrink",
                "blocklists[3].sha256",
                "blocklists[3].path",
            ],
            "{e}"
        );
        // A feed whose copy is not downloaded yet is fine; so is a list with its own address.
        assert!(
            !keys
                .iter()
                .any(|k| k.starts_with("blocklists[4]") || k.starts_with("blocklists[5]"))
        );
        let e4 = Config::parse(&text, &dir.join("c2sink.toml"))
            .unwrap_err()
            .to_string();
        assert!(e4.contains("not an http:// or https:// URL"), "{e4}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn upstream_forms_parse_with_default_ports() {
        let u = |s: &str| s.parse::<UpstreamSpec>();
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(u("9.9.9.9:53"), Ok(UpstreamSpec::Plain(a("9.9.9.9:53"))));
        // a bare address is plain DNS on port 53
        assert_eq!(u("9.9.9.9"), Ok(UpstreamSpec::Plain(a("9.9.9.9:53"))));
        // unbracketed IPv6 is ambiguous ("::1:53": an address, or ::1 on port 53?): refused with the fix
        let e = u("::1:5353").unwrap_err();
        assert!(e.contains("write an IPv6 upstream in brackets"), "{e}");
        assert!(u("2620:fe::fe").is_err());
        // so over TLS and HTTPS: "tls://::1:853" is not ::1:853 on port 853
        for bare in [
            "tls://::1:853",
            "tls://2620:fe::fe:853#dns.quad9.net",
            "tls://2620:fe::fe#dns.quad9.net",
            "https://::1:8443/dns-query#x.test",
            "https://2620:fe::fe#dns.quad9.net",
        ] {
            let e = u(bare).unwrap_err();
            assert!(e.contains("in brackets"), "{bare}: {e}");
        }
        assert_eq!(u("[::1]"), Ok(UpstreamSpec::Plain(a("[::1]:53"))));
        assert_eq!(u("[::1]:5353"), Ok(UpstreamSpec::Plain(a("[::1]:5353"))));
        let quad9 = |addr: &str| UpstreamSpec::Tls {
            addr: a(addr),
            name: "dns.quad9.net".into(),
        };
        assert_eq!(
            u("tls://9.9.9.9:853#dns.quad9.net"),
            Ok(quad9("9.9.9.9:853"))
        );
        assert_eq!(u("tls://9.9.9.9#dns.quad9.net"), Ok(quad9("9.9.9.9:853")));
        assert_eq!(
            u("tls://[2620:fe::fe]#dns.quad9.net"),
            Ok(quad9("[2620:fe::fe]:853"))
        );
        assert_eq!(
            u("tls://1.1.1.1"),
            Ok(UpstreamSpec::Tls {
                addr: a("1.1.1.1:853"),
                name: "1.1.1.1".into()
            })
        );
        let doh = u("https://9.9.9.9/dns-query#dns.quad9.net").expect("doh");
        assert_eq!(
            doh,
            UpstreamSpec::Https {
                addr: a("9.9.9.9:443"),
                name: "dns.quad9.net".into(),
                path: "/dns-query".into()
            }
        );
        assert_eq!(
            doh.to_string(),
            "https://9.9.9.9:443/dns-query#dns.quad9.net"
        );
        assert_eq!(u(&doh.to_string()), Ok(doh));
        assert_eq!(
            u("https://127.0.0.1:8443#x.test"),
            Ok(UpstreamSpec::Https {
                addr: a("127.0.0.1:8443"),
                name: "x.test".into(),
                path: "/dns-query".into()
            })
        );
        for bad in [
            "tls://dns.quad9.net",
            "quic://9.9.9.9",
            "https://9.9.9.9/q?dns=x#a.b",
            "tls://9.9.9.9#not a name",
            "9.9.9.9:",
            "9.9.9.9:99999",
            // brackets only in pairs, and only around an IPv6 address
            "[::1",
            "::1]",
            "[127.0.0.1]]",
            "[127.0.0.1]",
            "tls://[::1#dns.example",
            "dns.quad9.net",
            "1.2.3",
        ] {
            assert!(u(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_upstream_and_ca_file_name_their_keys() {
        let e = parse("[server]\nlisten = [\"127.0.0.1:53\"]\n[upstream]\nservers = [\"tls://dns.quad9.net\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("upstream.servers") && e.contains("not an IP address"),
            "{e}"
        );
        let e = parse(&format!("{GOOD}ca_file = \"/nonexistent/ca.pem\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("upstream.ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn route_of_names_the_health_check_answer_not_the_invalid_zone() {
        let cfg = parse(
            "[server]\nlisten = [\"127.0.0.1:53\"]\n[upstream]\nservers = [\"127.0.0.1:5399\"]\n",
        )
        .unwrap();
        // The query path answers it TXT "c2sink ok" (NOERROR), not NXDOMAIN as the rest of `.invalid`.
        let health = cfg.route_of(crate::health::NAME);
        assert!(health.contains("TXT \"c2sink ok\""), "{health}");
        assert!(!health.contains("NXDOMAIN"), "{health}");
        let other = cfg.route_of("x.c2sink.invalid");
        assert!(other.contains("NXDOMAIN, local zone invalid"), "{other}");
    }

    #[test]
    fn a_names_cap_with_coalescing_off_is_pointed_out() {
        let base = "[server]\nlisten = [\"127.0.0.1:53\"]\n[upstream]\nservers = [\"127.0.0.1:5399\"]\n[log]\n";
        let notes = |tail: &str| parse(&format!("{base}{tail}")).unwrap().notes();
        let off = notes("coalesce = \"0s\"\ncoalesce_names = 5\n");
        assert_eq!(off.len(), 1, "{off:?}");
        assert!(
            off[0].contains("log.coalesce_names is set but log.coalesce is off"),
            "{off:?}"
        );
        assert!(notes("coalesce = \"0s\"\n").is_empty());
        assert!(notes("coalesce_names = 5\n").is_empty());
        let cfg = parse(&format!("{base}coalesce = \"5s\"\n")).unwrap();
        assert_eq!(cfg.log.names_cap(), 100);
    }

    #[test]
    fn a_sinkhole_address_no_answer_uses_is_pointed_out() {
        let base =
            "[server]\nlisten = [\"127.0.0.1:53\"]\n[upstream]\nservers = [\"127.0.0.1:5399\"]\n";
        let notes = |tail: &str| parse(&format!("{base}{tail}")).unwrap().notes();
        let unused = notes("[sinkhole]\nipv4 = \"10.0.0.5\"\n");
        assert_eq!(unused.len(), 1, "{unused:?}");
        assert!(unused[0].contains("mode is \"null\""), "{unused:?}");
        assert!(notes("[sinkhole]\nmode = \"address\"\nipv4 = \"10.0.0.5\"\n").is_empty());
        assert!(notes("[sinkhole]\nmode = \"nxdomain\"\n").is_empty());
        // the sinkhole host listens on them, unless it has addresses of its own
        let trap = "[sinkhole]\nipv4 = \"127.0.0.1\"\n[trap]\nports = [0]\n";
        assert!(notes(trap).is_empty());
        assert_eq!(notes(&format!("{trap}listen = [\"127.0.0.2\"]\n")).len(), 1);
        // a list answering with the server-wide address uses it
        let by_list = format!(
            "[sinkhole]\nipv6 = \"fd00::5\"\n[[blocklists]]\nname = \"a\"\npath = \"{}/blocklists/3cx.txt\"\n\
             action = \"address\"\n",
            env!("CARGO_MANIFEST_DIR")
        );
        assert!(notes(&by_list).is_empty());
    }

    #[test]
    fn an_ipv6_wildcard_without_its_ipv4_twin_is_pointed_out() {
        let cfg = parse(
            "[server]\nlisten = [\"0.0.0.0:53\", \"[::]:53\", \"[::]:5353\"]\n[upstream]\nservers = [\"127.0.0.1:5399\"]\n",
        )
        .unwrap();
        assert_eq!(
            cfg.ipv6_only_wildcards(),
            vec![
                "server.listen: [::]:5353 takes IPv6 clients only; add 0.0.0.0:5353 for IPv4 clients"
            ]
        );
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let e = parse(
            "[server]\nlisten = []\nmax_inflight = 8\nmax_inflight_per_client = 9\ntcp_idle_timeout_ms = 0\n[upstream]\nservers = []\ntimeout_ms = 1\n[cache]\nserve_stale_after_ms = 60001\n[sinkhole]\nmode = \"address\"\n[[blocklists]]\nname = \"x\"\npath = \"nope.txt\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "server.listen",
                "server.tcp_idle_timeout_ms",
                "server.max_inflight_per_client",
                "upstream.servers",
                "upstream.timeout_ms",
                "cache.serve_stale_after_ms",
                "blocklists[0].path",
                "sinkhole.mode"
            ]
        );
    }

    #[test]
    fn log_clients_and_alerts_keys_are_checked() {
        let e = parse(&format!(
            "{GOOD}[log]\nrotate_size = \"10 parsecs\"\nrotate_every = \"soon\"\ncoalesce = \"2h\"\nsyslog = \"tcp://x\"\n\
             [clients]\nnames = {{ \"not-an-address\" = \"x\", \"10.0.0.1\" = \"\" }}\nrefresh_ms = 5\n\
             [alerts]\nwebhook = \"ftp://hooks.example/x\"\nwindow = \"0s\"\nca_file = \"/nonexistent/ca.pem\"\n"
        ))
        .unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "log.rotate_size",
                "log.rotate_every",
                "log.coalesce",
                "log.syslog",
                "alerts.webhook",
                "alerts.window",
                "clients.names.\"10.0.0.1\"",
                "clients.names.\"not-an-address\"",
                "clients.refresh_ms",
                "alerts.ca_file"
            ],
            "{e}"
        );
        let ok = parse(&format!(
            "{GOOD}[log]\nrotate_size = \"100MB\"\nrotate_every = \"1d\"\n[clients]\narp = \"\"\n\
             leases = [{{ format = \"kea\", path = \"/var/lib/kea/kea-leases4.csv\" }}]\n\
             names = {{ \"aa:bb:cc:dd:ee:ff\" = \"ceo-laptop\" }}\n"
        ))
        .expect("valid");
        assert_eq!(
            parse_size(ok.log.rotate_size.as_deref().unwrap()),
            Ok(100_000_000)
        );
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        // Bytes may be a plain number too; 0 is refused either way, naming the key.
        let ok = parse(&format!("{GOOD}[log]\nrotate_size = 4096\n")).expect("a number of bytes");
        assert_eq!(ok.log.rotate_size.as_deref(), Some("4096"));
        let e = parse(&format!("{GOOD}[log]\nrotate_size = 0\n")).unwrap_err();
        assert!(e.to_string().contains("log.rotate_size"), "{e}");
        let e = parse(&format!("{GOOD}[log]\nrotate_size = true\n")).unwrap_err();
        assert!(e.to_string().contains("rotate_size"), "{e}");
        let e = parse(&format!(
            "{GOOD}[clients]\nleases = [{{ format = \"dhcpcd\", path = \"x\" }}]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("clients.leases"), "{e}");
    }
}
