//! Forwarding to the upstream resolvers: the client's query bytes go out with a fresh random ID from a fresh
//! random port, and the upstream's answer comes back whole, so nothing the client and upstream say is lost.
//!
//! Failover: upstreams are tried healthiest first; one that fails is moved to the back for a while, so a dead
//! server is not tried first on every query. A server is down after [`DOWN_AFTER`] failures in a row with no
//! answer at all for twice the timeout (so a server that answers most queries under load, or is slow for one
//! name, is never taken for dead): no query waits on it until its bench time is over, and then the one query
//! that comes first has it probed with c2sink's own question (`. NS`, never a client's name, which anyone can
//! make fail) before going there itself; each failed probe doubles the bench, up to [`MAX_BENCH_MS`]. When
//! every server is down, clients get SERVFAIL at once instead of piling up.

use crate::clients::edns;
use crate::config::{UpstreamConfig, UpstreamSpec};
use crate::encrypted::{Doh, Dot};
use crate::sinkhole::OUR_PAYLOAD;

/// Block size encrypted queries are padded to (RFC 8467 4.1's recommendation, Unbound's `pad-queries`).
const QUERY_PAD_BLOCK: usize = 128;
use crate::wire::{self, AnswerShape, Query};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why one try against one upstream did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum TryError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed answer: {0}")]
    Malformed(#[from] wire::WireError),
    #[error("answer does not match the question")]
    Mismatch,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("every upstream is down; the next probe is due within {MAX_BENCH_MS} ms")]
    AllDown,
    /// Every one of a DoT upstream's connections was busy for the whole timeout.
    #[error(
        "waited {0:?} for one of the upstream's DoT connections, all busy (the server was not asked)"
    )]
    PoolFull(Duration),
    /// The client already held its whole share of a DoT upstream's connections for the whole timeout.
    #[error(
        "waited {0:?} for a place in the asking client's share of the upstream's connections (the server was not asked)"
    )]
    OwnShare(Duration),
}

/// Consecutive failures after which a server is down (skipped except for one probe per bench period).
pub const DOWN_AFTER: u32 = 3;
/// Longest bench period, which bounds how long recovery of a returning upstream can take.
pub const MAX_BENCH_MS: u64 = 8_000;

/// Every upstream failed; the client gets SERVFAIL.
#[derive(Debug, thiserror::Error)]
#[error("all {tried} upstream(s) failed; last error from {last_server}: {last_error}")]
pub struct ForwardError {
    pub tried: usize,
    /// The upstream as configured.
    pub last_server: String,
    pub last_error: TryError,
}

/// An upstream's answer, checked for shape.
pub struct Answer {
    pub wire: Vec<u8>,
    pub shape: AnswerShape,
    pub server: SocketAddr,
}

struct Server {
    addr: SocketAddr,
    /// How queries reach it.
    transport: Transport,
    /// The upstream as configured, for logs and metric labels.
    label: String,
    /// Seconds from sending a query to a good answer (`c2sink_upstream_latency_seconds`).
    latency: metrics::Histogram,
    /// Tries that gave no good answer (`c2sink_upstream_failures_total`).
    failures: metrics::Counter,
    /// Consecutive failures.
    fails: AtomicU32,
    /// Milliseconds since `epoch` until which this server is tried last (or, when down, not at all).
    benched_until: AtomicU64,
    /// Milliseconds since `epoch` of the last good answer.
    last_ok: AtomicU64,
    /// 0 = up; n > 0 = down, benched for `1 s << (n - 1)`.
    down_level: AtomicU32,
    /// Milliseconds since `epoch` when `down_level` last changed.
    level_changed: AtomicU64,
}

/// Bench time of a down server at `level` (1 s, 2 s, 4 s, then MAX_BENCH_MS).
fn bench_ms(level: u32) -> u64 {
    (1000u64 << level.saturating_sub(1).min(4)).min(MAX_BENCH_MS)
}

/// Plain DNS, or an encrypted transport with its kept connections.
enum Transport {
    Plain,
    Tls(Dot),
    Https(Doh),
}

/// The configured upstreams with their health.
pub struct Upstreams {
    servers: Vec<Server>,
    timeout: Duration,
    epoch: Instant,
    /// Answers dropped because their ID or question did not match (spoofing or confusion).
    pub mismatched: AtomicU64,
    /// Milliseconds since `epoch` of the last good answer, plus one; 0 = never.
    last_answer: AtomicU64,
    /// Take the client hints (MAC, client subnet) out of queries before they leave.
    strip_hints: bool,
    /// The runtime probes of down servers run on (the main one, where the upstreams were made): not a UDP
    /// thread's, which may be blocked in the kernel while its own queries are answered.
    home: Option<tokio::runtime::Handle>,
    /// Room for TCP questions asked because the datagrams went unanswered ([`TCP_FALLBACKS`]).
    fallbacks: tokio::sync::Semaphore,
}

/// TCP questions at once for unanswered datagrams, over all plain upstreams of one set: a burst of names
/// a dead zone never answers must not open thousands of connections to the upstream. Past it, the query
/// waits for its datagrams only, as it did before the fallback existed.
const TCP_FALLBACKS: usize = 64;

/// c2sink's own question for a down server, `. IN NS` with RD, under a fresh ID.
fn probe_query() -> Vec<u8> {
    let mut raw = Vec::with_capacity(17);
    raw.extend_from_slice(&rand::random::<u16>().to_be_bytes());
    raw.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]);
    raw
}

/// Upper bound of an answer over TCP.
const MAX_TCP: usize = 65_535;
/// Receive buffer for UDP answers (the largest UDP payload).
const MAX_UDP: usize = 65_535;
/// Most datagrams read at a try's deadline for an answer that came in time ([`Upstreams::last_look`]).
const LAST_LOOK_READS: usize = 16;
/// A plain try's TCP fallback, started when the query and its resends went unanswered.
type Fallback<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Answer, TryError>> + Send + 'a>>;

impl Upstreams {
    /// Upstreams in the admin's order of preference, per `[upstream]`.
    pub fn new(cfg: &UpstreamConfig) -> Self {
        let needs = |f: fn(&UpstreamSpec) -> bool| cfg.servers.iter().any(f);
        let connector = |alpn: &[u8]| {
            crate::encrypted::tls_connector(&cfg.ca_certs, alpn).map_err(|e| {
                tracing::error!(error = %e, "cannot set up TLS for encrypted upstreams");
                e.to_string()
            })
        };
        let dot = needs(|s| matches!(s, UpstreamSpec::Tls { .. })).then(|| connector(b"dot"));
        let doh = needs(|s| matches!(s, UpstreamSpec::Https { .. })).then(|| connector(b"h2"));
        let no_tls = || Err("no TLS settings".to_string());
        Upstreams {
            servers: cfg
                .servers
                .iter()
                .map(|spec| {
                    let addr = spec.addr();
                    let label = spec.to_string();
                    let transport = match spec {
                        UpstreamSpec::Plain(_) => Transport::Plain,
                        UpstreamSpec::Tls { name, .. } => {
                            Transport::Tls(Dot::new(addr, name, dot.clone().unwrap_or_else(no_tls)))
                        }
                        UpstreamSpec::Https { name, path, .. } => Transport::Https(Doh::new(
                            addr,
                            name,
                            path,
                            doh.clone().unwrap_or_else(no_tls),
                        )),
                    };
                    Server {
                        addr,
                        transport,
                        latency: metrics::histogram!("c2sink_upstream_latency_seconds", "upstream" => label.clone()),
                        failures: metrics::counter!("c2sink_upstream_failures_total", "upstream" => label.clone()),
                        label,
                        fails: AtomicU32::new(0),
                        benched_until: AtomicU64::new(0),
                        last_ok: AtomicU64::new(0),
                        down_level: AtomicU32::new(0),
                        level_changed: AtomicU64::new(0),
                    }
                })
                .collect(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            epoch: Instant::now(),
            mismatched: AtomicU64::new(0),
            last_answer: AtomicU64::new(0),
            strip_hints: !cfg.send_client_hints,
            home: tokio::runtime::Handle::try_current().ok(),
            fallbacks: tokio::sync::Semaphore::new(TCP_FALLBACKS),
        }
    }

    /// True if some upstream gave a good answer within `window` (for readiness).
    pub fn answered_within(&self, window: Duration) -> bool {
        let last = self.last_answer.load(Ordering::Relaxed);
        last > 0 && self.now_ms().saturating_sub(last - 1) <= window.as_millis() as u64
    }

    /// Asks the upstreams for the root's NS set, so an idle server can learn whether any upstream answers.
    pub async fn probe(self: &Arc<Self>) -> Result<(), ForwardError> {
        let raw = probe_query();
        let query = wire::parse_query(&raw).map_err(|e| ForwardError {
            tried: 0,
            last_server: "(probe)".to_string(),
            last_error: TryError::Malformed(e),
        })?;
        self.forward(&raw, &query).await.map(|_| ())
    }

    /// Asks a down server c2sink's own question (`. NS`), whose answer says whether the server is back. A
    /// client's question would not: a name that never resolves (a client can ask for many) would fail every
    /// probe and keep a working upstream benched for everyone.
    async fn probe_down(&self, server: &Server) -> bool {
        let raw = probe_query();
        let Ok(query) = wire::parse_query(&raw) else {
            return false;
        };
        self.try_counted(server, &raw, &query).await.is_ok()
    }

    /// [`probe_down`](Self::probe_down) of server `i` as a task of its own, on the main runtime.
    fn probe_in_background(self: &Arc<Self>, i: usize) {
        let me = Arc::clone(self);
        let probe = async move {
            if let Some(server) = me.servers.get(i) {
                me.probe_down(server).await;
            }
        };
        match &self.home {
            Some(home) => drop(home.spawn(probe)),
            None => drop(tokio::spawn(probe)),
        }
    }

    /// One try against `server`, with its outcome recorded: latency, health, metrics.
    async fn try_counted(
        &self,
        server: &Server,
        raw: &[u8],
        query: &Query<'_>,
    ) -> Result<Answer, TryError> {
        let started = Instant::now();
        match self.try_one(server, raw, query).await {
            Ok(a) => {
                server.latency.record(started.elapsed().as_secs_f64());
                self.last_answer
                    .store(self.now_ms().saturating_add(1), Ordering::Relaxed);
                // Any answer, REFUSED too, says the server is up: an authoritative server refuses names
                // outside its zones (and the `. NS` probe), a filtering one the names it blocks.
                self.record_ok(server);
                Ok(a)
            }
            // A wait for a connection (the client's own flood, or every connection busy) used the try up:
            // the server was never asked, and is no worse for it.
            Err(e @ (TryError::OwnShare(_) | TryError::PoolFull(_))) => Err(e),
            Err(e) => {
                server.failures.increment(1);
                self.record_failure(server, &e);
                tracing::debug!(upstream = %server.label, error = %e, qname = %query.name, "upstream try failed");
                Err(e)
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Servers in the order to try them: healthy servers (and one retry of a server that failed lately) in
    /// config order, then the other servers that failed lately; and apart, the down servers whose bench is
    /// over and whose probe this query won. Other down servers are left out.
    fn order(&self) -> (Vec<usize>, Vec<usize>) {
        let now = self.now_ms();
        let mut tiers: [Vec<usize>; 3] = Default::default();
        for (i, s) in self.servers.iter().enumerate() {
            let fails = s.fails.load(Ordering::Relaxed);
            let until = s.benched_until.load(Ordering::Relaxed);
            if s.down_level.load(Ordering::Relaxed) == 0 {
                // Healthy, or failed lately and due for a retry in its configured place (by one query only,
                // so a black hole does not hold up everything at once): config order. Otherwise last.
                let retry = fails > 0
                    && until <= now
                    && s.benched_until
                        .compare_exchange(
                            until,
                            now + self.timeout_ms(),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok();
                tiers[if fails == 0 || retry { 1 } else { 2 }].push(i);
            } else if until <= now {
                // Down, and its bench is over: the one query that wins this exchange has it probed; the
                // others see it benched for the probe's duration.
                let probe_until = now + self.timeout_ms();
                if s.benched_until
                    .compare_exchange(until, probe_until, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    tiers[0].push(i);
                }
            }
        }
        let [probe, healthy, failing] = tiers;
        ([healthy, failing].concat(), probe)
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// True when the server at `i` is down (for logs and tests of failover).
    pub fn is_down(&self, i: usize) -> bool {
        self.servers
            .get(i)
            .is_some_and(|s| s.down_level.load(Ordering::Relaxed) > 0)
    }

    /// Records a good answer from `s`: it is up.
    fn record_ok(&self, s: &Server) {
        s.fails.store(0, Ordering::Relaxed);
        s.benched_until.store(0, Ordering::Relaxed);
        s.last_ok.store(self.now_ms(), Ordering::Relaxed);
        if s.down_level.swap(0, Ordering::Relaxed) > 0 {
            tracing::info!(upstream = %s.label, "upstream answers again");
        }
    }

    /// Records a failed try against `s`; marks it down, or backs off a down server whose probe failed.
    fn record_failure(&self, s: &Server, e: &TryError) {
        let now = self.now_ms();
        let fails = s.fails.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let level = s.down_level.load(Ordering::Relaxed);
        let timeout = self.timeout_ms();
        if level == 0 {
            let silent = now.saturating_sub(s.last_ok.load(Ordering::Relaxed));
            if fails >= DOWN_AFTER && silent >= 2 * timeout {
                if s.down_level
                    .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    s.level_changed.store(now, Ordering::Relaxed);
                    s.benched_until.store(now + bench_ms(1), Ordering::Relaxed);
                    tracing::warn!(upstream = %s.label, error = %e, "upstream is down");
                }
            } else {
                // Failed lately: tried after the healthy ones for a second.
                s.benched_until.store(now + 1000, Ordering::Relaxed);
            }
        } else if now.saturating_sub(s.level_changed.load(Ordering::Relaxed)) > timeout {
            // A try that started after the server was marked down: a failed probe. (Tries that were already
            // in flight when it went down end within one timeout, a third more with a follow-up, and do not
            // lengthen the bench.)
            let next = level.saturating_add(1).min(8);
            s.down_level.store(next, Ordering::Relaxed);
            s.level_changed.store(now, Ordering::Relaxed);
            s.benched_until
                .store(now + bench_ms(next), Ordering::Relaxed);
        }
    }

    /// Sends `raw` (a client's query, parsed as `query`) upstream and returns the first good answer.
    pub async fn forward(
        self: &Arc<Self>,
        raw: &[u8],
        query: &Query<'_>,
    ) -> Result<Answer, ForwardError> {
        let mut last: Option<(String, TryError)> = None;
        let (mut order, probes) = self.order();
        if order.is_empty() {
            // No server to ask meanwhile: this query waits for the probes, and goes to one that is back.
            for &i in probes.iter().rev() {
                if self.probe_down(&self.servers[i]).await {
                    order.insert(0, i);
                }
            }
        } else {
            // A probe of a dead server lasts a timeout: it must not hold up a query that a healthy server
            // can answer now. A server found back gets the next queries in its configured place.
            for &i in &probes {
                self.probe_in_background(i);
            }
        }
        // An error answer (SERVFAIL, REFUSED, ...) from one server does not speak for the others, which are
        // asked in turn as Unbound and dnsmasq do; it reaches the client only if none does better.
        let mut error_answer: Option<Answer> = None;
        for &i in &order {
            let server = &self.servers[i];
            match self.try_counted(server, raw, query).await {
                Ok(a) if SOFT_ERRORS.contains(&a.shape.header.rcode()) => {
                    error_answer.get_or_insert(a);
                }
                Ok(a) => return Ok(a),
                Err(e) => last = Some((server.label.clone(), e)),
            }
        }
        if let Some(a) = error_answer {
            return Ok(a);
        }
        let (last_server, last_error) = last.unwrap_or_else(|| {
            (
                self.servers
                    .first()
                    .map_or_else(|| "(none)".to_string(), |s| s.label.clone()),
                TryError::AllDown,
            )
        });
        Err(ForwardError {
            // None tried because every one is down: all of them failed, before this query.
            tried: if order.is_empty() {
                self.servers.len()
            } else {
                order.len()
            },
            last_server,
            last_error,
        })
    }

    /// One try against one server: UDP, then TCP if the UDP answer is truncated; or one encrypted exchange.
    async fn try_one(
        &self,
        server: &Server,
        raw: &[u8],
        query: &Query<'_>,
    ) -> Result<Answer, TryError> {
        let addr = server.addr;
        let id: u16 = rand::random();
        let mut out = raw.to_vec();
        wire::set_id(&mut out, id);
        // c2sink recurses for its clients: it asks for recursion whatever the client set (as Unbound asks
        // its forwarders), so that the answer is the same for every client sharing it (cache, merging). Of
        // the client's other header bits only the opcode, AD and CD mean anything in a query; the rest (AA,
        // RA, Z, an RCODE) could only make a strict upstream answer FORMERR to every client sharing it.
        if let Some(flags) = out.get_mut(2..4) {
            flags[0] = (flags[0] & 0x78) | 0x01;
            flags[1] &= 0x30;
        }
        // The query goes with c2sink's own OPT record: its payload, the client's DO, and the router's client
        // hints only if the admin asked for them; the client's other options are for c2sink, not for Quad9.
        let hints = !self.strip_hints;
        let keep = |code| hints && (code == edns::OPT_ECS || code == edns::OPT_DNSMASQ_MAC);
        wire::own_opt(&mut out, OUR_PAYLOAD, keep);
        if !matches!(server.transport, Transport::Plain) {
            // Over TLS and HTTPS, every query is the same few sizes whatever its name (RFC 8467).
            wire::pad(&mut out, QUERY_PAD_BLOCK);
        }
        // The encrypted exchanges are boxed: their futures are twice the size of the plain one's, and every
        // forward's future is as large as its largest branch, copied whole when its task starts and ends.
        let exchange = match &server.transport {
            Transport::Plain => None,
            Transport::Tls(dot) => Some(Box::pin(dot.exchange(&out, self.timeout)).await),
            Transport::Https(doh) => Some(
                Box::pin(tokio::time::timeout(self.timeout, doh.exchange(&out)))
                    .await
                    .unwrap_or(Err(TryError::Timeout(self.timeout))),
            ),
        };
        if let Some(result) = exchange {
            let wire = result?;
            let shape = check_answer(&wire, id, query).inspect_err(|_| {
                self.mismatched.fetch_add(1, Ordering::Relaxed);
            })?;
            return Ok(Answer {
                wire,
                shape,
                server: addr,
            });
        }
        // One deadline for the whole try (`timeout_ms`: "time for one try against one upstream"), follow-ups
        // included; a follow-up of an answer (TCP after TC, the query again without OPT) gets at least a
        // third of the timeout, since the server has just shown it is there, but the try never more than a
        // third past its timeout. Each follow-up used to get a whole timeout of its own: a late answer, then
        // TC, then a TCP that never answers, took two timeouts, and with a FORMERR retry between, four.
        let clock = TryClock::new(self.timeout);
        let answer = self.plain(addr, &out, id, query, clock).await?;
        // A server that predates EDNS (an old router, a LAN appliance) answers a query with OPT FORMERR or
        // NOTIMP, itself without OPT (RFC 6891 section 7): asked again without OPT, as Unbound falls back.
        let no_edns = matches!(answer.shape.header.rcode(), RCODE_FORMERR | RCODE_NOTIMP)
            && answer.shape.opt.is_none();
        if no_edns
            && let Some(Some(rr)) = wire::opt_record(&out)
            && wire::remove_last_opt(&mut out, rr)
        {
            let clock = clock.follow_up(self.timeout);
            return self.plain(addr, &out, id, query, clock).await;
        }
        Ok(answer)
    }

    /// One exchange over plain DNS: UDP, then TCP if the UDP answer is truncated.
    async fn plain(
        &self,
        addr: SocketAddr,
        out: &[u8],
        id: u16,
        query: &Query<'_>,
        clock: TryClock,
    ) -> Result<Answer, TryError> {
        // Its own future, ended before a follow-up: a TCP fallback still under way when a truncated answer
        // came would otherwise keep its connection and one of the fallbacks' places through the follow-up.
        let answer = self.datagrams(addr, out, id, query, clock).await?;
        if !answer.shape.header.truncated() {
            return Ok(answer);
        }
        let clock = clock.follow_up(self.timeout);
        tokio::time::timeout_at(clock.deadline, self.tcp(addr, out, id, query))
            .await
            .map_err(|_| TryError::Timeout(clock.elapsed()))?
    }

    /// The query over UDP until the deadline of `clock`, with resends and a TCP fallback.
    ///
    /// A datagram lost on the way (either way) must not cost the client the whole timeout and then a
    /// SERVFAIL: the same query (same ID and port, so either answer counts) is sent again after a third and
    /// after two thirds of the timeout, as Unbound resends within its own timeout. When the query and both
    /// its resends have gone unanswered, it is asked over TCP too, within the same try (the first answer
    /// wins): a server that rate-limits answers (nsd's and BIND's RRL drop half of them and truncate the
    /// rest) never limits TCP, and three datagrams all dropped had cost one not-yet-cached NXDOMAIN or NODATA
    /// lookup in eight a SERVFAIL, where Unbound, retrying longer, lost about one in a thousand.
    async fn datagrams(
        &self,
        addr: SocketAddr,
        out: &[u8],
        id: u16,
        query: &Query<'_>,
        clock: TryClock,
    ) -> Result<Answer, TryError> {
        let deadline = clock.deadline;
        let timed_out = || TryError::Timeout(clock.elapsed());
        // Under the deadline too (the wait for room in a send buffer); no timer is set unless it waits.
        let sock = tokio::time::timeout_at(deadline, udp_sent(addr, out))
            .await
            .map_err(|_| timed_out())??;
        // One timer for the whole exchange, moved on through its steps (the two resends, TCP just after the
        // last of them, the deadline): each timer a query registers can wake the thread's event loop
        // through its eventfd, and the three a try used to set cost a system call each on most queries.
        let every = self.timeout / 3;
        // This exchange's own start: a follow-up's steps count from its own send, its deadline is the try's.
        let start = tokio::time::Instant::now();
        let steps = [
            start + every,
            start + every * 2,
            start + self.timeout * 2 / 3 + self.timeout / 12,
        ];
        let mut step = 0;
        let timer = tokio::time::sleep_until(steps[0].min(deadline));
        tokio::pin!(timer);
        // Boxed, and only once it starts: most tries never need it.
        let mut tcp: Option<Fallback<'_>> = None;
        // Room for the largest datagram, left uninitialized: zeroing 64 KiB per query cost more than the
        // rest of the forward.
        let mut buf = Vec::with_capacity(MAX_UDP);
        loop {
            buf.clear();
            tokio::select! {
                r = sock.recv_buf(&mut buf) => {
                    let n = r?;
                    if let Some(a) = self.answer_in(&mut buf, n, id, query, addr) {
                        return Ok(a);
                    }
                }
                r = async {
                    match tcp.as_mut() {
                        Some(t) => t.await,
                        None => std::future::pending().await,
                    }
                } => match r {
                    Ok(a) => return Ok(a),
                    // No TCP there (or it broke): the datagrams may still be answered.
                    Err(_) => tcp = None,
                },
                () = &mut timer => {
                    // A thread busy past the deadline catches up here: no resends, no fallback. The
                    // select's order is random, so an answer seen in the same turn as the deadline wins
                    // through the last look, as it did when the deadline was a timeout around the exchange.
                    if timer.deadline() >= deadline || tokio::time::Instant::now() >= deadline {
                        let late = self.last_look(&sock, &mut buf, id, query, addr, tcp.as_mut());
                        return late.ok_or_else(timed_out);
                    }
                    if step < 2 {
                        let Ok(sent) = tokio::time::timeout_at(deadline, sock.send(out)).await else {
                            let late = self.last_look(&sock, &mut buf, id, query, addr, tcp.as_mut());
                            return late.ok_or_else(timed_out);
                        };
                        sent?;
                    } else if let Ok(room) = self.fallbacks.try_acquire() {
                        tcp = Some(Box::pin(async move {
                            let _room = room;
                            self.tcp(addr, out, id, query).await
                        }));
                    }
                    step += 1;
                    timer
                        .as_mut()
                        .reset(steps.get(step).map_or(deadline, |&t| t.min(deadline)));
                }
            }
        }
    }

    /// The answer to `id` if the `n` bytes received into `buf` are one; anything else (not ours, garbage) is
    /// counted and the exchange waits on, until its deadline.
    fn answer_in(
        &self,
        buf: &mut Vec<u8>,
        n: usize,
        id: u16,
        query: &Query<'_>,
        server: SocketAddr,
    ) -> Option<Answer> {
        match check_answer(buf.get(..n)?, id, query) {
            Ok(shape) => {
                buf.truncate(n);
                Some(Answer {
                    wire: std::mem::take(buf),
                    shape,
                    server,
                })
            }
            Err(_) => {
                self.mismatched.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// At the deadline, an answer already received (datagrams, then the TCP fallback), without waiting: at
    /// most [`LAST_LOOK_READS`] datagrams, so that a flood of wrong ones cannot hold the try.
    ///
    /// The datagrams are read straight from the socket: tokio may not know of one yet (a turn of its event
    /// loop takes at most 1,024 events and runs the timers after them), and the socket is dropped next.
    fn last_look(
        &self,
        sock: &UdpSocket,
        buf: &mut Vec<u8>,
        id: u16,
        query: &Query<'_>,
        addr: SocketAddr,
        tcp: Option<&mut Fallback<'_>>,
    ) -> Option<Answer> {
        let raw = socket2::SockRef::from(sock);
        for _ in 0..LAST_LOOK_READS {
            buf.clear();
            buf.resize(MAX_UDP, 0);
            match std::io::Read::read(&mut &*raw, buf) {
                Ok(n) => {
                    if let Some(a) = self.answer_in(buf, n, id, query, addr) {
                        return Some(a);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // An ICMP error queued by an earlier datagram: an answer may still be behind it.
                Err(_) => {}
            }
        }
        // Polled outside the task's budget, which a flood of datagrams may have spent.
        let fallback = std::pin::pin!(tokio::task::unconstrained(tcp?.as_mut()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fallback.poll(&mut cx) {
            std::task::Poll::Ready(Ok(a)) => Some(a),
            _ => None,
        }
    }

    async fn tcp(
        &self,
        addr: SocketAddr,
        out: &[u8],
        id: u16,
        query: &Query<'_>,
    ) -> Result<Answer, TryError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let len = u16::try_from(out.len()).map_err(|_| TryError::Mismatch)?;
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(out);
        stream.write_all(&framed).await?;
        let mut lenb = [0u8; 2];
        stream.read_exact(&mut lenb).await?;
        let n = usize::from(u16::from_be_bytes(lenb)).min(MAX_TCP);
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf).await?;
        let shape = check_answer(&buf, id, query).inspect_err(|_| {
            self.mismatched.fetch_add(1, Ordering::Relaxed);
        })?;
        Ok(Answer {
            wire: buf,
            shape,
            server: addr,
        })
    }
}

/// A UDP socket connected to `addr` (the kernel picks a random source port, as a bind to port 0 would) with
/// `out` already sent. Sent before the socket joins the event loop: a new registration starts without write
/// readiness, so a send through it waited one turn of the loop for the kernel to say what it knew.
async fn udp_sent(addr: SocketAddr, out: &[u8]) -> std::io::Result<UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM.nonblocking(),
        None,
    )?;
    sock.connect(&addr.into())?;
    let sent = match sock.send(out) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => return Err(e),
    };
    let sock = UdpSocket::from_std(sock.into())?;
    if !sent {
        // No room in the send buffer (never seen on a new socket): wait for it as any other send would.
        sock.send(out).await?;
    }
    Ok(sock)
}

/// When one try against one server began and must end (`timeout_ms`, follow-ups included).
#[derive(Clone, Copy)]
struct TryClock {
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
}

impl TryClock {
    fn new(timeout: Duration) -> TryClock {
        let start = tokio::time::Instant::now();
        TryClock {
            start,
            deadline: start + timeout,
        }
    }

    /// The clock for a follow-up of an answer (TCP after TC, the query again without OPT): what is left of
    /// the try, or a third of the timeout from now if that is more, but never past a third beyond the
    /// timeout, however many follow-ups the try takes.
    fn follow_up(self, timeout: Duration) -> TryClock {
        let latest = self.start + timeout + timeout / 3;
        let deadline = self
            .deadline
            .max(tokio::time::Instant::now() + timeout / 3)
            .min(latest);
        TryClock { deadline, ..self }
    }

    fn elapsed(self) -> Duration {
        self.start.elapsed()
    }
}

/// RCODEs a server may send without echoing the question: FORMERR, SERVFAIL, NOTIMP, REFUSED, NOTAUTH.
const BARE_ERRORS: [u8; 5] = [1, 2, 4, 5, 9];
/// RCODEs after which the next server is asked: FORMERR, SERVFAIL, NOTIMP, REFUSED. Another server may
/// parse, resolve or serve what this one did not.
const SOFT_ERRORS: [u8; 4] = [RCODE_FORMERR, 2, RCODE_NOTIMP, RCODE_REFUSED];
/// A server that refuses c2sink's queries.
const RCODE_REFUSED: u8 = 5;
/// A query the server could not read, or does not implement: from a server without EDNS, the OPT's fault.
const RCODE_FORMERR: u8 = 1;
const RCODE_NOTIMP: u8 = 4;

/// Accepts an answer only if it is a well-formed response to exactly our question under our ID.
fn check_answer(msg: &[u8], id: u16, query: &Query<'_>) -> Result<AnswerShape, TryError> {
    let header = wire::Header::read(msg)?;
    // Only QUERY goes upstream: a reply of another opcode (an UPDATE's, say) answers something else.
    if header.id != id || !header.is_response() || header.opcode() != 0 {
        return Err(TryError::Mismatch);
    }
    // A refusal without the question is still this server's answer: nsd, for one, leaves the question out
    // of FORMERR, NOTIMP, REFUSED and NOTAUTH (RFC 1035 does not ask for it). Waiting for a "real" answer
    // would only time out, and count as a failure against a server that answered. These carry no data, so
    // accepting them without the question gives a spoofer nothing to plant; any other RCODE (NXDOMAIN, which
    // would be cached) still needs the question. The pipeline gives the client the error with its own
    // question.
    if header.qdcount == 0 && BARE_ERRORS.contains(&header.rcode()) {
        return Ok(wire::answer_shape(msg)?);
    }
    // The question must come back as asked: the same name up to case (length octets are never letters, so
    // a case-blind compare keeps the label structure), the same type and class.
    let q = query.question;
    let (qname, qfixed) = q.split_at(q.len().saturating_sub(4));
    let echoed = msg
        .get(wire::HEADER_LEN..wire::HEADER_LEN + q.len())
        .ok_or(TryError::Mismatch)?;
    let (ename, efixed) = echoed.split_at(qname.len());
    if header.qdcount != 1 || !ename.eq_ignore_ascii_case(qname) || efixed != qfixed {
        return Err(TryError::Mismatch);
    }
    Ok(wire::answer_shape(msg)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long timeout: what these tests check must not depend on how fast the machine runs them.
    fn ups(n: usize) -> Upstreams {
        Upstreams::new(&UpstreamConfig {
            servers: (0..n)
                .map(|i| UpstreamSpec::Plain(SocketAddr::from(([127, 0, 0, 1], 5300 + i as u16))))
                .collect(),
            timeout_ms: 60_000,
            ca_file: None,
            ca_certs: Vec::new(),
            send_client_hints: false,
            private_names: Default::default(),
        })
    }

    fn fail(u: &Upstreams, i: usize, fails: u32, bench_ms: u64) {
        u.servers[i].fails.store(fails, Ordering::Relaxed);
        u.servers[i]
            .down_level
            .store(u32::from(fails >= DOWN_AFTER), Ordering::Relaxed);
        u.servers[i]
            .benched_until
            .store(u.now_ms() + bench_ms, Ordering::Relaxed);
    }

    #[test]
    fn failed_server_goes_last_and_down_server_is_skipped() {
        let u = ups(3);
        assert_eq!(u.order().0, vec![0, 1, 2]);
        fail(&u, 0, 1, 10_000);
        assert_eq!(u.order().0, vec![1, 2, 0]);
        fail(&u, 0, DOWN_AFTER, 10_000);
        assert_eq!(u.order().0, vec![1, 2]);
        assert!(u.is_down(0));
    }

    #[test]
    fn down_server_is_probed_by_one_query_only() {
        let u = ups(2);
        fail(&u, 0, DOWN_AFTER, 0);
        // The bench is over: the first caller has server 0 probed (with c2sink's own question), the next one
        // does not see it.
        assert_eq!(u.order(), (vec![1], vec![0]));
        assert_eq!(u.order(), (vec![1], vec![]));
    }

    #[test]
    fn all_down_gives_no_server_to_try() {
        let u = ups(2);
        fail(&u, 0, DOWN_AFTER, 5_000);
        fail(&u, 1, DOWN_AFTER, 5_000);
        assert!(u.order().0.is_empty());
    }

    /// The readiness check shows this error: with every upstream down it names them all, not "all 0".
    #[tokio::test]
    async fn all_down_reports_every_upstream_as_failed() {
        let u = Arc::new(ups(2));
        fail(&u, 0, DOWN_AFTER, 5_000);
        fail(&u, 1, DOWN_AFTER, 5_000);
        let raw = probe_query();
        let q = wire::parse_query(&raw).unwrap();
        let e = u.forward(&raw, &q).await.err().unwrap();
        assert!(matches!(e.last_error, TryError::AllDown));
        assert!(e.to_string().starts_with("all 2 upstream(s) failed"), "{e}");
    }

    /// Every forward's future is as large as its largest branch and is copied whole when its task starts
    /// and ends: the encrypted exchanges, twice the plain one's size, stay boxed out of it.
    #[test]
    fn a_plain_try_does_not_carry_the_encrypted_exchanges_in_its_future() {
        let u = ups(1);
        let raw = probe_query();
        let q = wire::parse_query(&raw).unwrap();
        let addr = u.servers[0].addr;
        let (dot, doh) = (
            crate::encrypted::Dot::new(addr, "dns.test", Err("no TLS here".into())),
            crate::encrypted::Doh::new(addr, "dns.test", "/dns-query", Err("no TLS here".into())),
        );
        let try_one = std::mem::size_of_val(&u.try_one(&u.servers[0], &raw, &q));
        let dot = std::mem::size_of_val(&dot.exchange(&raw, u.timeout));
        let doh = std::mem::size_of_val(&doh.exchange(&raw));
        assert!(
            try_one < dot.min(doh),
            "try {try_one} B, DoT {dot} B, DoH {doh} B"
        );
    }

    /// One plain upstream at `addr` (a loopback socket the test plays), with `timeout_ms` a try.
    fn ups_at(addr: SocketAddr, timeout_ms: u64) -> Upstreams {
        Upstreams::new(&UpstreamConfig {
            servers: vec![UpstreamSpec::Plain(addr)],
            timeout_ms,
            ca_file: None,
            ca_certs: Vec::new(),
            send_client_hints: false,
            private_names: Default::default(),
        })
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The probe query under `id`.
    fn query_as(id: u16) -> Vec<u8> {
        let mut out = probe_query();
        wire::set_id(&mut out, id);
        out
    }

    fn id_of(msg: &[u8]) -> u16 {
        u16::from_be_bytes([msg[0], msg[1]])
    }

    /// A socket the test answers from, and one plain upstream at it with a `timeout_ms` try.
    fn played_upstream(timeout_ms: u64) -> (std::net::UdpSocket, Upstreams) {
        let up = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        up.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let u = ups_at(up.local_addr().unwrap(), timeout_ms);
        (up, u)
    }

    /// Reads the query `id` at `up` (past earlier ones' resends): the answer to it (QR set), and where to.
    fn answer_to(up: &std::net::UdpSocket, id: u16) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 512];
        loop {
            let (n, from) = up.recv_from(&mut buf).unwrap();
            if id_of(&buf[..n]) == id {
                let mut answer = buf[..n].to_vec();
                answer[2] |= 0x80;
                return (answer, from);
            }
        }
    }

    /// An answer that came before the deadline wins over it when a busy thread sees both in one turn: a
    /// random select order once dropped about one in five of them as timeouts.
    #[test]
    fn an_answer_in_before_the_deadline_wins_when_both_are_seen_at_once() {
        let (up, u) = played_upstream(100);
        let addr = u.servers[0].addr;
        // No TCP fallback here: every place is taken.
        let _all = u.fallbacks.try_acquire_many(TCP_FALLBACKS as u32).unwrap();
        let rt = current_thread();
        let mut timeouts = 0;
        for id in 1..=20u16 {
            let out = query_as(id);
            let q = wire::parse_query(&out).unwrap();
            let r = rt.block_on(async {
                let fut = u.plain(addr, &out, id, &q, TryClock::new(u.timeout));
                tokio::pin!(fut);
                assert!(
                    tokio::time::timeout(Duration::from_millis(5), &mut fut)
                        .await
                        .is_err()
                );
                let (answer, from) = answer_to(&up, id);
                up.send_to(&answer, from).unwrap();
                // The answer is in the socket; the thread is busy until past the deadline.
                std::thread::sleep(u.timeout + Duration::from_millis(30));
                fut.await
            });
            match r {
                Ok(a) => assert_eq!(id_of(&a.wire), id),
                Err(TryError::Timeout(_)) => timeouts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            timeouts, 0,
            "answers in the socket before the deadline were dropped"
        );
    }

    /// A truncated answer that comes while the TCP fallback is connected: the follow-up over TCP does not
    /// keep the fallback's connection (nor its place among the fallbacks). The test upstream answers the
    /// follow-up only once the fallback's connection has ended, so a try that kept it would time out.
    #[test]
    fn the_tc_follow_up_does_not_keep_the_fallback_connection() {
        use std::io::{Read, Write};
        use std::sync::mpsc;
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = std::net::TcpListener::bind(addr).unwrap();
        let (fallback_came, truncate) = mpsc::channel();
        let (fallback_ended, answer) = mpsc::channel();
        // UDP: the query is answered, truncated, once the fallback has connected.
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            let _ = truncate.recv_timeout(Duration::from_secs(5));
            let mut a = buf[..n].to_vec();
            a[2] |= 0x82;
            udp.send_to(&a, from).unwrap();
        });
        // TCP: the first connection (the fallback) is never answered; the second (the follow-up) is answered
        // once the first has ended, or never.
        std::thread::spawn(move || {
            let (mut first, _) = tcp.accept().unwrap();
            let _ = fallback_came.send(());
            std::thread::spawn(move || {
                let mut b = [0u8; 512];
                while matches!(first.read(&mut b), Ok(n) if n > 0) {}
                let _ = fallback_ended.send(());
            });
            let (mut second, _) = tcp.accept().unwrap();
            let mut len = [0u8; 2];
            second.read_exact(&mut len).unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            second.read_exact(&mut q).unwrap();
            if answer.recv_timeout(Duration::from_secs(5)).is_ok() {
                q[2] |= 0x80;
                let mut framed = (q.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&q);
                second.write_all(&framed).unwrap();
            }
            std::thread::sleep(Duration::from_secs(1));
        });
        let u = ups_at(addr, 1200);
        let out = query_as(12);
        let q = wire::parse_query(&out).unwrap();
        let r = current_thread().block_on(u.plain(addr, &out, 12, &q, TryClock::new(u.timeout)));
        let a = r.unwrap_or_else(|e| panic!("the follow-up waited for the fallback to end: {e}"));
        assert!(!a.shape.header.truncated(), "the follow-up's answer");
        assert_eq!(u.fallbacks.available_permits(), TCP_FALLBACKS);
    }

    /// A thread busy past its deadline may see only part of what came meanwhile in its next turn (tokio takes
    /// a bounded number of events per turn, here 8): an answer that came in time still wins, whether the
    /// socket's readable event or its first writable one (the resend's) is among those left for later.
    #[test]
    fn an_answer_behind_a_full_turn_of_events_still_wins() {
        let (up, u) = played_upstream(100);
        let addr = u.servers[0].addr;
        let _all = u.fallbacks.try_acquire_many(TCP_FALLBACKS as u32).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_io_events_per_tick(8)
            .build()
            .unwrap();
        for (id, others_answered) in [(7u16, true), (8, false)] {
            let out = query_as(id);
            let q = wire::parse_query(&out).unwrap();
            let r = rt.block_on(async {
                // Other upstream sockets of the same thread: new, so each reports itself writable once.
                let others: Vec<UdpSocket> = (0..24)
                    .map(|_| {
                        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                        s.set_nonblocking(true).unwrap();
                        UdpSocket::from_std(s).unwrap()
                    })
                    .collect();
                let fut = u.plain(addr, &out, id, &q, TryClock::new(u.timeout));
                tokio::pin!(fut);
                if others_answered {
                    // Turns enough for every writable event; then the others' answers come before ours.
                    assert!(
                        tokio::time::timeout(Duration::from_millis(5), &mut fut)
                            .await
                            .is_err()
                    );
                } else {
                    // One poll: the query leaves, and no turn of the loop sees any socket writable yet.
                    std::future::poll_fn(|cx| {
                        assert!(fut.as_mut().poll(cx).is_pending());
                        std::task::Poll::Ready(())
                    })
                    .await;
                }
                let (answer, from) = answer_to(&up, id);
                if others_answered {
                    for o in &others {
                        up.send_to(b"x", o.local_addr().unwrap()).unwrap();
                    }
                }
                up.send_to(&answer, from).unwrap();
                std::thread::sleep(u.timeout + Duration::from_millis(30));
                let r = fut.await;
                drop(others);
                r
            });
            let a = r.unwrap_or_else(|e| {
                panic!("query {id}: an answer in before the deadline lost: {e}")
            });
            assert_eq!(id_of(&a.wire), id);
        }
    }

    /// Answers under a wrong ID (a spoofer, a confused server) queued at the deadline are not all read before
    /// the try gives up: the last look reads a bounded number.
    #[test]
    fn a_flood_of_wrong_answers_does_not_hold_the_try_past_its_deadline() {
        let (up, u) = played_upstream(100);
        let addr = u.servers[0].addr;
        let _all = u.fallbacks.try_acquire_many(TCP_FALLBACKS as u32).unwrap();
        let out = query_as(13);
        let q = wire::parse_query(&out).unwrap();
        let r = current_thread().block_on(async {
            let fut = u.plain(addr, &out, 13, &q, TryClock::new(u.timeout));
            tokio::pin!(fut);
            assert!(
                tokio::time::timeout(Duration::from_millis(5), &mut fut)
                    .await
                    .is_err()
            );
            let (mut wrong, from) = answer_to(&up, 13);
            wrong[0] ^= 0xff;
            // The thread is busy while 150 wrong answers come, until past the deadline.
            for _ in 0..150 {
                up.send_to(&wrong, from).unwrap();
            }
            std::thread::sleep(u.timeout + Duration::from_millis(30));
            fut.await
        });
        assert!(matches!(r, Err(TryError::Timeout(_))), "{:?}", r.err());
        let read = u.mismatched.load(Ordering::Relaxed);
        assert!(
            (1..64).contains(&read),
            "{read} wrong answers read at the deadline"
        );
    }

    #[test]
    fn failures_of_a_server_that_still_answers_do_not_mark_it_down() {
        let u = ups(1);
        u.record_ok(&u.servers[0]);
        for _ in 0..10 {
            u.record_failure(&u.servers[0], &TryError::Timeout(u.timeout));
        }
        // It answered less than twice the timeout ago: slow for some names, not dead.
        assert!(!u.is_down(0));
        assert_eq!(u.order().0, vec![0]);
    }

    #[test]
    fn silent_server_goes_down_and_in_flight_failures_do_not_lengthen_its_bench() {
        // Silent for an hour against a 60 s timeout: down however slowly the test runs, and every failure
        // after that within the timeout, so from a try that was in flight when it went down.
        let mut u = ups(1);
        u.epoch = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .expect("an instant an hour back");
        for _ in 0..DOWN_AFTER {
            u.record_failure(&u.servers[0], &TryError::Timeout(u.timeout));
        }
        // Never answered, and the epoch is long ago: silent for far more than twice the timeout.
        assert!(u.is_down(0));
        let until = u.servers[0].benched_until.load(Ordering::Relaxed);
        for _ in 0..100 {
            u.record_failure(&u.servers[0], &TryError::Timeout(u.timeout));
        }
        assert_eq!(u.servers[0].down_level.load(Ordering::Relaxed), 1);
        assert_eq!(u.servers[0].benched_until.load(Ordering::Relaxed), until);
        u.record_ok(&u.servers[0]);
        assert!(!u.is_down(0));
    }

    #[test]
    fn bench_doubles_up_to_the_cap() {
        assert_eq!(
            (1..=7).map(bench_ms).collect::<Vec<_>>(),
            vec![1000, 2000, 4000, 8000, 8000, 8000, 8000]
        );
    }

    #[test]
    fn failed_server_gets_back_its_place_by_one_retry() {
        let u = ups(2);
        fail(&u, 0, 1, 0);
        // Bench over: one query retries it first, the others keep it last until it answers.
        assert_eq!(u.order().0, vec![0, 1]);
        assert_eq!(u.order().0, vec![1, 0]);
        u.record_ok(&u.servers[0]);
        assert_eq!(u.order().0, vec![0, 1]);
    }

    use crate::wire::test_message as message;

    #[test]
    fn answer_must_echo_our_id_and_question_up_to_case() {
        let raw = message(7, 0x0100, "Www.Example.com", 1);
        let query = wire::parse_query(&raw).expect("query");
        let ok = message(7, 0x8180, "www.EXAMPLE.com", 1);
        assert!(check_answer(&ok, 7, &query).is_ok());
        let wrong_id = message(8, 0x8180, "www.example.com", 1);
        assert!(matches!(
            check_answer(&wrong_id, 7, &query),
            Err(TryError::Mismatch)
        ));
        let not_response = message(7, 0x0100, "www.example.com", 1);
        assert!(matches!(
            check_answer(&not_response, 7, &query),
            Err(TryError::Mismatch)
        ));
        // The right ID and question, but the reply of an UPDATE (opcode 5), not of a QUERY.
        let update = message(7, 0x8180 | (5 << 11), "www.example.com", 1);
        assert!(matches!(
            check_answer(&update, 7, &query),
            Err(TryError::Mismatch)
        ));
        let other_name = message(7, 0x8180, "www.example.org", 1);
        assert!(matches!(
            check_answer(&other_name, 7, &query),
            Err(TryError::Mismatch)
        ));
        // Types 65 (0x41) and 97 (0x61) differ only by "case" as bytes: they must not match.
        let raw65 = message(7, 0x0100, "a.b", 65);
        let query65 = wire::parse_query(&raw65).expect("query");
        let ans97 = message(7, 0x8180, "a.b", 97);
        assert!(matches!(
            check_answer(&ans97, 7, &query65),
            Err(TryError::Mismatch)
        ));
        let short = &ok[..ok.len() - 3];
        assert!(check_answer(short, 7, &query).is_err());
        // An error reply that leaves the question out (as nsd's REFUSED does) is the server's answer; a
        // NOERROR one without the question is not.
        let refused_bare = [0, 7, 0x81, 0x05, 0, 0, 0, 0, 0, 0, 0, 0];
        let shape = check_answer(&refused_bare, 7, &query).expect("an answer");
        assert_eq!(shape.header.rcode(), 5);
        // NOERROR or NXDOMAIN without the question would be cached as data: not accepted.
        for rcode in [0x80, 0x83] {
            let bare = [0, 7, 0x81, rcode, 0, 0, 0, 0, 0, 0, 0, 0];
            assert!(matches!(
                check_answer(&bare, 7, &query),
                Err(TryError::Mismatch)
            ));
        }
    }
}
