//! The query path, assembled in one place: read the query, check the lists, sinkhole or answer from cache,
//! else forward upstream; log what was blocked.
//!
//! `decide` does everything that needs no network and returns at once; only `forward` awaits an upstream.
//! Listeners call the first, and spawn the second only when needed.

use crate::blocklist::{List, Lists, Verdict};
use crate::cache::{Cache, Expired};
use crate::clients::Clients;
use crate::config::Config;
use crate::events::{BlockView, Events, Protocol, QueryRecord, RuleText};
use crate::inflight::Inflight;
use crate::protocol;
use crate::sinkhole::{OUR_PAYLOAD, Sinkhole};
use crate::telemetry::{Outcome, Telemetry};
use crate::upstream::{Answer, ForwardError, Upstreams};
use crate::wire::{self, Inspect, Query};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::task::TaskTracker;

/// Why a query was sinkholed, as written in its block event.
struct Why<'a> {
    list: &'a List,
    rule: RuleText<'a>,
    action: &'static str,
    via: Option<&'a str>,
    chain: &'a [String],
}

impl<'a> Why<'a> {
    /// The rule `verdict` found, answered as `action` says; `via` names the answer's matching target.
    fn matched(
        verdict: &Verdict<'a>,
        action: &'static str,
        via: Option<(&'a str, &'a Inspect)>,
    ) -> Self {
        Why {
            list: verdict.list,
            rule: RuleText {
                wildcard: verdict.rule.rule.is_wildcard(),
                name: verdict.rule.name,
            },
            action,
            via: via.map(|(t, _)| t),
            chain: via.map_or(&[], |(_, i)| i.targets.as_slice()),
        }
    }
}

/// Who sent a query, how, and to which of this host's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// Sent by this host itself, as far as the transport proves it (an admin's `dig` on the box, the
    /// container's healthcheck, a forwarder beside c2sink): admission lets those through whatever `allow`
    /// says, and counts them as many clients.
    pub from_host: bool,
}

/// What a listener should do with a query.
pub enum Decision {
    /// Send these bytes back now.
    Reply(Vec<u8>),
    /// Needs an upstream: call [`Pipeline::forward`].
    Forward,
    /// Send nothing (not a query, or too broken to answer).
    Drop,
}

/// Which of the lists and the cache a thread asks first: the one that decided its recent queries, so a stream
/// of beacons skips the cache probe and a stream of cache hits skips the list lookup.
struct Lean;

thread_local! {
    /// Blocked names minus cache hits among this thread's recent queries, kept within [-LEAN_MAX, LEAN_MAX].
    static LEAN: std::cell::Cell<i8> = const { std::cell::Cell::new(0) };
}

/// How far the lean goes either way: after a run of one kind, that many of the other turn it.
const LEAN_MAX: i8 = 8;

impl Lean {
    #[inline]
    fn cache_first() -> bool {
        LEAN.with(|l| l.get() < 0)
    }

    #[inline]
    fn toward_lists() {
        LEAN.with(|l| l.set(l.get().saturating_add(1).min(LEAN_MAX)));
    }

    #[inline]
    fn toward_cache() {
        LEAN.with(|l| l.set(l.get().saturating_sub(1).max(-LEAN_MAX)));
    }
}

/// What the lists and the sinkhole answer are right now; replaced whole on reload.
pub struct Policy {
    pub lists: Lists,
    pub sinkhole: Sinkhole,
    /// Unique per policy built, so that a cached answer can remember which lists already passed it.
    generation: u64,
    /// `c2sink_blocked_total` of each list, in the order of `lists.lists`.
    blocked: Vec<metrics::Counter>,
}

impl Policy {
    /// A policy with a generation no earlier policy had.
    pub fn new(lists: Lists, sinkhole: Sinkhole) -> Policy {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Policy {
            blocked: crate::telemetry::blocked_counters(&lists),
            lists,
            sinkhole,
            generation: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Counts a block by `list`, one of this policy's lists (found by address: a name compare per list
    /// would cost more than the increment).
    fn count_block(&self, list: &List) {
        let mut counters = self.lists.lists.iter().zip(&self.blocked);
        let found = counters.find(|(l, _)| std::ptr::eq(&***l, list));
        debug_assert!(found.is_some(), "a list of another policy");
        if let Some((_, c)) = found {
            c.increment(1);
        }
    }
}

/// Counters of what the pipeline did.
#[derive(Default)]
pub struct Stats {
    pub queries: AtomicU64,
    pub blocked: AtomicU64,
    pub cached: AtomicU64,
    pub forwarded: AtomicU64,
    pub failed: AtomicU64,
    pub malformed: AtomicU64,
    /// SERVFAIL at once, no forward slot free (`max_inflight`, `max_inflight_per_client`).
    pub shed: AtomicU64,
}

/// The assembled query path.
pub struct Pipeline {
    pub policy: ArcSwap<Policy>,
    pub cache: Option<Cache>,
    pub upstreams: Arc<Upstreams>,
    pub events: Events,
    pub stats: Stats,
    /// Who is behind a client address (MAC, hostname), for events.
    pub clients: Clients,
    /// Metric handles (no-ops unless `[admin]` installed a recorder).
    pub telemetry: Telemetry,
    /// Whether private reverse zones and `home.arpa` are answered here.
    private_names: crate::config::PrivateNames,
    /// `[[forward]]` zones and their servers, most specific first.
    zones: Vec<(String, Arc<Upstreams>)>,
    /// Questions being fetched now: the same question asked meanwhile waits for that answer.
    inflight: Inflight<Fetched>,
    /// Client hints go upstream (`send_client_hints`): they are part of the cache and merging key.
    hints_in_key: bool,
    /// How long a query with an expired answer in the cache waits for the upstream before it gets that
    /// answer stale; `None` when stale answers come only after every upstream failed (or never).
    stale_after: Option<Duration>,
    /// Fetches that go on after their client got a stale answer: drained at shutdown, and at most
    /// `max_refreshes` at once (`[server] max_inflight`), past which a client waits for its fetch.
    pub refreshes: TaskTracker,
    max_refreshes: usize,
}

/// An upstream's answer made c2sink's own (cached if cacheable), or why there is none; shared by every
/// client that asked the same question while it was fetched.
type Fetched = Result<Arc<Answer>, Arc<ForwardError>>;

/// Whether a fetch gave nothing a client can use: no upstream answered, or one answered SERVFAIL (the
/// name's own servers failing behind it). Either way an expired answer is better (RFC 8767).
fn failed(f: &Fetched) -> bool {
    f.as_ref().map_or(true, |a| {
        u16::from(a.shape.header.rcode()) == protocol::RCODE_SERVFAIL
    })
}

/// The bytes a decision sends, if any.
fn reply_of(d: Decision) -> Option<Vec<u8>> {
    match d {
        Decision::Reply(r) => Some(r),
        Decision::Forward | Decision::Drop => None,
    }
}

impl Pipeline {
    /// Assembles the pipeline from a validated config and loaded lists.
    pub fn new(cfg: &Config, lists: Lists, events: Events) -> Pipeline {
        Pipeline {
            policy: ArcSwap::from_pointee(Policy::new(lists, Sinkhole::from_config(&cfg.sinkhole))),
            cache: Cache::new(&cfg.cache)
                .map(|c| c.keyed_by_client_hints(cfg.upstream.send_client_hints)),
            hints_in_key: cfg.upstream.send_client_hints,
            upstreams: Arc::new(Upstreams::new(&cfg.upstream)),
            events,
            stats: Stats::default(),
            clients: Clients::default(),
            telemetry: Telemetry::new(),
            private_names: cfg.upstream.private_names,
            zones: forward_zones(cfg),
            inflight: Inflight::default(),
            stale_after: (cfg.cache.serve_stale > 0 && cfg.cache.serve_stale_after_ms > 0)
                .then(|| Duration::from_millis(cfg.cache.serve_stale_after_ms)),
            refreshes: TaskTracker::new(),
            max_refreshes: cfg.server.max_inflight,
        }
    }

    /// The `[[forward]]` zone `name` falls in, if any.
    fn zone_for(&self, name: &str) -> Option<&Arc<Upstreams>> {
        self.zones
            .iter()
            .find(|(z, _)| wire::within(name, z))
            .map(|(_, u)| u)
    }

    /// Everything that can be answered without the network: errors, blocked names, cache hits.
    pub fn decide(&self, raw: &[u8], client: &Client) -> Decision {
        let started = self.started();
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        let count = |outcome| self.telemetry.query(client.protocol, outcome);
        let Ok(header) = wire::Header::read(raw) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            count(Outcome::Malformed);
            return Decision::Drop;
        };
        if header.is_response() {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            count(Outcome::Malformed);
            return Decision::Drop;
        }
        if header.opcode() != 0 {
            count(Outcome::Refused);
            return Decision::Reply(protocol::error_reply(raw, protocol::RCODE_NOTIMP));
        }
        let query = match wire::parse_query(raw) {
            Ok(q) => q,
            Err(_) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                count(Outcome::Malformed);
                return Decision::Reply(protocol::error_reply(raw, protocol::RCODE_FORMERR));
            }
        };
        let policy = self.policy.load();
        if let Some(why) = protocol::Unserved::of(&query) {
            // An error is the answer, but a listed name is still evidence of a beacon: log it, with the
            // answer it got.
            if let Some(v) = policy.lists.check_query(&query) {
                let logged = Why::matched(&v, why.action(), None);
                let d = self.sinkholed(&policy, &query, raw, client, logged, Some(why.reply(raw)));
                self.done(client, &query, Outcome::Blocked, started);
                return d;
            } else if why == protocol::Unserved::Refused {
                count(Outcome::Refused);
            } else {
                // In the totals line at exit as in the metric: BADVERS, a meta type asked.
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                count(Outcome::Malformed);
            }
            return Decision::Reply(why.reply(raw));
        }
        if query.name == crate::health::NAME {
            count(Outcome::Local);
            return Decision::Reply(crate::health::answer(&query));
        }
        if let Some(reply) = protocol::chaos_answer(&query, raw) {
            self.done(client, &query, Outcome::Local, started);
            return Decision::Reply(reply);
        }
        // Whichever of the lists and the cache decided this thread's recent queries goes first. Either order
        // gives the same answer: a cache hit under the policy it last passed (`cleared`) was checked against
        // these very lists. Lists first, a blocked name (a beacon, over and over) never probes the cache,
        // whose table is the larger and colder of the two; cache first, a cached name skips the lists, whose
        // lookup costs most in a long list (a million rules: more suffixes to hash, a filter and table far
        // larger than the CPU's caches; docs/performance.md).
        let mut probed = None;
        if Lean::cache_first() {
            match self.cache.as_ref().and_then(|c| c.get(&query, raw)) {
                Some(h) if h.cleared == policy.generation => {
                    Lean::toward_cache();
                    return self.cached(&query, raw, client, (h.wire, &h.inspect), started);
                }
                other => probed = Some(other),
            }
        }
        if let Some(v) = policy.lists.check_query(&query) {
            Lean::toward_lists();
            let d = self.block(&policy, &query, raw, client, v, None);
            self.done(client, &query, Outcome::Blocked, started);
            return d;
        }
        // Only answers that passed the lists are cached, and each remembers the policy it last passed: a hit
        // under that policy needs no check of its targets. Under a new policy they are checked again, so a
        // list change applies to cached answers at once.
        let hit = match probed {
            Some(hit) => hit,
            None => match self.cache.as_ref().and_then(|c| c.get(&query, raw)) {
                Some(h) if h.cleared == policy.generation => {
                    Lean::toward_cache();
                    return self.cached(&query, raw, client, (h.wire, &h.inspect), started);
                }
                other => other,
            },
        };
        // A zone the admin forwards (a reverse zone to the LAN's DHCP server, even a documentation range in a
        // lab) goes there; only `localhost`, `.onion` and `.invalid` are answered here whatever the config.
        let special = match self.zone_for(&query.name) {
            Some(_) => crate::special::always_zone(&query.name),
            None => crate::special::zone_of(&query.name, self.private_names),
        };
        if let Some((zone, local)) = special {
            self.done(client, &query, Outcome::Local, started);
            return Decision::Reply(policy.sinkhole.special(local, &query, zone));
        }
        if query.qtype == wire::TYPE_ANY {
            // RFC 8482: a subset of the name's data will do. The cached answer for A says what is known
            // (its addresses, a CNAME, or that the name does not exist); only without one is the HINFO
            // made up, which would otherwise claim that a name exists, or hide its CNAME.
            let as_a = Query {
                qtype: wire::TYPE_A,
                ..query.clone()
            };
            if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&as_a, raw)) {
                let inspect = hit.inspect.as_deref();
                if let Some(blocked) =
                    self.block_by_answer(&policy, &query, raw, client, inspect, &hit.wire)
                {
                    self.done_pointing(client, &query, Outcome::Blocked, started, &hit.inspect);
                    return blocked;
                }
                return self.cached(&query, raw, client, (hit.wire, &hit.inspect), started);
            }
            self.done(client, &query, Outcome::Local, started);
            return Decision::Reply(protocol::any_answer(&query));
        }
        if let Some(hit) = hit {
            let inspect = hit.inspect.as_deref();
            if let Some(blocked) =
                self.block_by_answer(&policy, &query, raw, client, inspect, &hit.wire)
            {
                self.done_pointing(client, &query, Outcome::Blocked, started, &hit.inspect);
                return blocked;
            }
            hit.clear(policy.generation);
            return self.cached(&query, raw, client, (hit.wire, &hit.inspect), started);
        }
        // A cache miss is counted when the query goes upstream (`forward`): not when it is shed, nor when
        // an expired answer is given at once.
        Decision::Forward
    }

    /// Answers from the cache (an answer already known not to be blocked), given with what it points at.
    fn cached(
        &self,
        query: &Query<'_>,
        raw: &[u8],
        client: &Client,
        (wire, chain): (Vec<u8>, &Option<Arc<Inspect>>),
        started: Option<Instant>,
    ) -> Decision {
        self.stats.cached.fetch_add(1, Ordering::Relaxed);
        self.done_pointing(client, query, Outcome::Cached, started, chain);
        Decision::Reply(self.fit(wire, query, raw, client))
    }

    /// Forwards a query that `decide` could not answer; `None` means send nothing.
    pub async fn forward(self: &Arc<Self>, raw: &[u8], client: &Client) -> Option<Vec<u8>> {
        let started = self.started();
        let query = wire::parse_query(raw).ok()?;
        let key = crate::cache::key(&query, self.hints_in_key);
        // RFC 8767: an expired answer in the cache decides how long this client waits for the upstream.
        let expired = self.cache.as_ref().and_then(|c| c.expired(&key));
        if expired == Some(Expired::Failing)
            && let Some(d) = self.stale(&query, raw, client, started)
        {
            // Its refresh failed moments ago: the expired answer at once, and no upstream query.
            return reply_of(d);
        }
        if self.cache.is_some() {
            self.telemetry.cache_miss();
        }
        let fetched = match self.stale_after {
            Some(after)
                if expired == Some(Expired::Refresh)
                    && self.refreshes.len() < self.max_refreshes =>
            {
                match self
                    .fetch_or_stale(raw, &query, key, client, after, started)
                    .await
                {
                    Ok(fetched) => fetched?,
                    Err(stale) => return stale,
                }
            }
            _ => self.inflight.run(key, || self.fetch(raw, &query)).await,
        };
        if expired.is_some() && failed(&fetched) {
            if let Some(c) = &self.cache {
                c.refresh_failed(&crate::cache::key(&query, self.hints_in_key));
            }
            if let Some(d) = self.stale(&query, raw, client, started) {
                tracing::debug!(qname = %query.name, "no upstream answer: serving stale");
                return reply_of(d);
            }
        }
        match fetched {
            Ok(answer) => {
                let policy = self.policy.load();
                let inspect = answer.shape.inspect.as_deref();
                // Blocked by a name in the answer: counted and logged whether it is answered or dropped.
                if let Some(d) =
                    self.block_by_answer(&policy, &query, raw, client, inspect, &answer.wire)
                {
                    let chain = &answer.shape.inspect;
                    self.done_pointing(client, &query, Outcome::Blocked, started, chain);
                    return reply_of(d);
                }
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                let chain = &answer.shape.inspect;
                self.done_pointing(client, &query, Outcome::Forwarded, started, chain);
                if answer.shape.header.qdcount == 0 {
                    // An upstream error without the question: the same error, with this client's question.
                    let rcode = u16::from(answer.shape.header.rcode());
                    return Some(protocol::error_reply(raw, rcode));
                }
                // The answer's bytes: taken when no other client shares them (the usual case), else copied.
                let mut out = Arc::try_unwrap(answer).map_or_else(|a| a.wire.clone(), |a| a.wire);
                wire::answer_as_asked(&mut out, &query, raw);
                Some(self.fit(out, &query, raw, client))
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.done(client, &query, Outcome::Failed, started);
                if matches!(e.last_error, crate::upstream::TryError::AllDown) {
                    // Logged once when the last upstream went down; one line per query would flood the log.
                    tracing::debug!(qname = %query.name, "every upstream is down: answering SERVFAIL");
                } else {
                    tracing::warn!(qname = %query.name, error = %e, "answering SERVFAIL");
                }
                Some(self.servfail(raw, &query))
            }
        }
    }

    /// RFC 8767's client response timer: the upstream's answer if it comes within `after`, else
    /// (`Err`) the cached answer served stale, while the fetch goes on without this client and refreshes the
    /// cache for the next (or starts the failure recheck period). `Ok(None)`: the fetch was lost (a panic,
    /// or shutdown); send nothing.
    async fn fetch_or_stale(
        self: &Arc<Self>,
        raw: &[u8],
        query: &Query<'_>,
        key: Box<[u8]>,
        client: &Client,
        after: Duration,
        started: Option<Instant>,
    ) -> Result<Option<Fetched>, Option<Vec<u8>>> {
        // On a task of its own, so that it outlives this query; a fetch of the same question already under
        // way is joined there, not repeated.
        let (me, owned) = (Arc::clone(self), raw.to_vec());
        let mut task = self.refreshes.spawn(async move {
            let query = wire::parse_query(&owned).ok()?;
            let fetched = me.inflight.run(key, || me.fetch(&owned, &query)).await;
            if failed(&fetched)
                && let Some(c) = &me.cache
            {
                c.refresh_failed(&crate::cache::key(&query, me.hints_in_key));
            }
            Some(fetched)
        });
        tokio::select! {
            f = &mut task => return Ok(f.ok().flatten()),
            () = tokio::time::sleep(after) => {}
        }
        if let Some(d) = self.stale(query, raw, client, started) {
            tracing::debug!(qname = %query.name, "upstream slow: serving stale");
            return Err(reply_of(d));
        }
        // The expired answer went meanwhile (evicted): wait for the fetch after all.
        Ok(task.await.ok().flatten())
    }

    /// Asks the upstreams (the `[[forward]]` zone's, if the name is in one) and makes the answer c2sink's
    /// own before it is cached and shared: RA set, AA cleared, its OPT record c2sink's (the upstream's
    /// cookie, NSID and padding are not for this client, nor for the next one served from the cache), its
    /// TTLs within the cache's limits.
    async fn fetch(&self, raw: &[u8], query: &Query<'_>) -> Fetched {
        let upstreams = self.zone_for(&query.name).unwrap_or(&self.upstreams);
        let mut answer = upstreams.forward(raw, query).await.map_err(Arc::new)?;
        wire::as_recursive(&mut answer.wire);
        // Bytes after the last record are no part of the answer (and an OPT may be added after it below).
        answer.wire.truncate(answer.shape.len);
        let reshape = |a: &mut crate::upstream::Answer| {
            wire::answer_shape(&a.wire)
                .map(|shape| a.shape = shape)
                .is_ok()
        };
        let shaped = match (answer.shape.opt, query.edns) {
            (Some(rr), Some(e)) => {
                wire::set_dnssec_ok(&mut answer.wire, rr, e.dnssec_ok);
                !wire::own_opt_at(&mut answer.wire, rr, OUR_PAYLOAD, |c| c == wire::OPT_EDE)
                    || reshape(&mut answer)
            }
            // An OPT the client did not ask for (a non-compliant upstream) must not reach it (RFC 6891
            // section 7).
            (Some(rr), None) => {
                if wire::remove_last_opt(&mut answer.wire, rr) {
                    reshape(&mut answer)
                } else {
                    // A record follows it, whose names may point past it: the OPT stays, but without the
                    // upstream's options (cookie, NSID), which are not this client's nor the next one's.
                    !wire::own_opt_at(&mut answer.wire, rr, OUR_PAYLOAD, |_| false)
                        || reshape(&mut answer)
                }
            }
            // The client spoke EDNS and the upstream (an old router, a LAN server) answered without: the
            // answer still carries c2sink's OPT (RFC 6891 section 7), with the client's DO bit.
            (None, Some(e)) => {
                wire::push_opt(&mut answer.wire, OUR_PAYLOAD, e.dnssec_ok);
                wire::bump_count(&mut answer.wire, 3);
                reshape(&mut answer)
            }
            (None, None) => true,
        };
        if shaped {
            match &self.cache {
                // The first client sees the TTLs the next ones will (within the cache's limits), not the
                // upstream's: a month-long TTL would outlive the name's listing in that client's own cache.
                Some(cache) => {
                    cache.show_fresh(&mut answer.wire, &answer.shape);
                    cache.put(query, &answer.wire, &answer.shape);
                }
                None => wire::set_ttls(&mut answer.wire, &answer.shape.ttl_offsets, |t| t),
            }
        }
        Ok(Arc::new(answer))
    }

    /// The cached answer, expired or not, to a query no upstream answered (RFC 8767), checked against the
    /// lists as any cached answer is; `None` when the cache has none to give.
    fn stale(
        &self,
        query: &Query<'_>,
        raw: &[u8],
        client: &Client,
        started: Option<Instant>,
    ) -> Option<Decision> {
        let hit = self.cache.as_ref()?.stale(query, raw)?;
        let policy = self.policy.load();
        let inspect = hit.inspect.as_deref();
        if let Some(blocked) = self.block_by_answer(&policy, query, raw, client, inspect, &hit.wire)
        {
            self.done_pointing(client, query, Outcome::Blocked, started, &hit.inspect);
            return Some(blocked);
        }
        self.telemetry.stale_answer();
        Some(self.cached(query, raw, client, (hit.wire, &hit.inspect), started))
    }

    /// Sinkholes a query blocked by `verdict` and records the event; `via` names the answer's matching target.
    fn block(
        &self,
        policy: &Policy,
        query: &Query<'_>,
        raw: &[u8],
        client: &Client,
        verdict: Verdict<'_>,
        via: Option<(&str, &Inspect)>,
    ) -> Decision {
        let (answer, action) = policy.sinkhole.respond(&verdict, query);
        let why = Why::matched(&verdict, action, via);
        self.sinkholed(policy, query, raw, client, why, answer)
    }

    /// Counts, logs and answers one sinkholed query.
    fn sinkholed(
        &self,
        policy: &Policy,
        query: &Query<'_>,
        raw: &[u8],
        client: &Client,
        why: Why<'_>,
        answer: Option<Vec<u8>>,
    ) -> Decision {
        self.stats.blocked.fetch_add(1, Ordering::Relaxed);
        policy.count_block(why.list);
        let who = self.clients.attribute(client.addr.ip(), query.edns_options);
        self.events.record_block(BlockView {
            time: SystemTime::now(),
            client: client.addr,
            protocol: client.protocol,
            qname: &query.name,
            qtype: query.qtype,
            list: &why.list.name,
            rule: why.rule,
            action: why.action,
            who: &who,
            via: why.via,
            chain: why.chain,
        });
        match answer {
            Some(a) => Decision::Reply(self.fit(a, query, raw, client)),
            None => Decision::Drop,
        }
    }

    /// Sinkholes a query whose answer points at a listed name (CNAME cloaking, HTTPS/SVCB targets) or holds
    /// an address on an address list. An allow rule for the question name wins over both.
    fn block_by_answer(
        &self,
        policy: &Policy,
        query: &Query<'_>,
        raw: &[u8],
        client: &Client,
        inspect: Option<&Inspect>,
        answer: &[u8],
    ) -> Option<Decision> {
        // The common answer (no targets, no address lists) costs nothing here.
        if inspect.is_none() && !policy.lists.has_addresses() {
            return None;
        }
        if policy.lists.allowed(&query.name).is_some() {
            return None;
        }
        if let Some(inspect) = inspect
            && let Some(d) = inspect.targets.iter().find_map(|t| {
                let v = policy.lists.check(t)?;
                Some(self.block(policy, query, raw, client, v, Some((t, inspect))))
            })
        {
            return Some(d);
        }
        if !policy.lists.has_addresses() {
            return None;
        }
        let (addr, list, hit) = wire::answer_addresses(answer)
            .into_iter()
            .find_map(|a| policy.lists.check_addr(a).map(|(l, h)| (a, l, h)))?;
        let (answer, action) = policy.sinkhole.respond_to_answer(&list.config, query);
        let (net, addr) = (hit.net.to_string(), addr.to_string());
        let why = Why {
            list,
            rule: RuleText {
                wildcard: false,
                name: &net,
            },
            action,
            via: Some(&addr),
            chain: inspect.map_or(&[], |i| i.targets.as_slice()),
        };
        Some(self.sinkholed(policy, query, raw, client, why, Some(answer)))
    }

    /// SERVFAIL for a query, used when forwarding fails or is shed.
    pub fn servfail(&self, raw: &[u8], _query: &Query<'_>) -> Vec<u8> {
        protocol::error_reply(raw, protocol::RCODE_SERVFAIL)
    }

    /// SERVFAIL for raw bytes already known to parse, when work is shed before forwarding.
    pub fn shed(&self, raw: &[u8]) -> Vec<u8> {
        self.stats.shed.fetch_add(1, Ordering::Relaxed);
        self.telemetry.shed();
        protocol::error_reply(raw, protocol::RCODE_SERVFAIL)
    }

    /// When a query began, read only if the query log will need its latency (a clock read per query saved).
    fn started(&self) -> Option<Instant> {
        self.events.logs_queries().then(Instant::now)
    }

    /// Records what became of a query: the metric, and the query-log line when that log is on.
    fn done(&self, client: &Client, query: &Query<'_>, outcome: Outcome, started: Option<Instant>) {
        self.telemetry.query(client.protocol, outcome);
        if let Some(started) = started {
            self.log_query(client, query, outcome, started, None);
        }
    }

    /// [`done`](Self::done) for an answer that points at other names (CNAME, DNAME, HTTPS/SVCB targets):
    /// the query log keeps them, so a `hunt` for a C2 name published later finds the machines that reached
    /// it behind an innocent name, or were blocked by its answer (a hunt of the query log alone finds those).
    fn done_pointing(
        &self,
        client: &Client,
        query: &Query<'_>,
        outcome: Outcome,
        started: Option<Instant>,
        chain: &Option<Arc<Inspect>>,
    ) {
        self.telemetry.query(client.protocol, outcome);
        if let Some(started) = started {
            self.log_query(client, query, outcome, started, chain.clone());
        }
    }

    /// The query-log line: out of line, so that a server without that log pays only the check for it.
    #[inline(never)]
    fn log_query(
        &self,
        client: &Client,
        query: &Query<'_>,
        outcome: Outcome,
        started: Instant,
        chain: Option<Arc<Inspect>>,
    ) {
        self.events.record_query(QueryRecord {
            time: SystemTime::now(),
            client: client.addr,
            protocol: client.protocol,
            qname: query.name.clone(),
            qtype: query.qtype,
            outcome,
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            // As block events name it: a router's EDNS hints name the machine behind it.
            who: self.clients.attribute(client.addr.ip(), query.edns_options),
            chain,
        });
    }

    /// Makes an answer fit the client's UDP buffer, or a stream's 65,535-octet frame (an upstream's largest
    /// answer plus the OPT c2sink adds): without its optional sections if that does, else header and
    /// question with TC set.
    fn fit(&self, answer: Vec<u8>, query: &Query<'_>, raw: &[u8], client: &Client) -> Vec<u8> {
        let limit = match client.protocol {
            Protocol::Udp => query.udp_limit(),
            _ => usize::from(u16::MAX),
        };
        if answer.len() > limit {
            // Without the optional sections it may fit, as Unbound and nsd answer (RFC 2181 section 9):
            // TC only when the records asked for themselves do not, which costs the client a TCP round trip.
            let dnssec = query.edns.is_some_and(|e| e.dnssec_ok);
            if let Some(fits) = wire::without_extras(&answer, limit, dnssec) {
                return fits;
            }
            let mut r = wire::short_reply(raw, query.question.len(), 0, true);
            // Keep the upstream's rcode and flags other than TC.
            if answer.len() >= 4 {
                r[2] = answer[2] | 0x02;
                r[3] = answer[3];
            }
            if let Some(e) = query.edns {
                wire::push_opt(&mut r, crate::sinkhole::OUR_PAYLOAD, e.dnssec_ok);
                wire::bump_count(&mut r, 3);
            }
            r
        } else {
            answer
        }
    }
}

/// The `[[forward]]` zones of `cfg`, most specific first, each with its own servers (and health), sharing
/// `[upstream]`'s timeout, CA file and options; a zone that does not read (validation reports it) is left out.
fn forward_zones(cfg: &Config) -> Vec<(String, Arc<Upstreams>)> {
    let mut zones: Vec<(String, Arc<Upstreams>)> = cfg
        .forward
        .iter()
        .filter_map(|f| {
            let zone = crate::blocklist::normalize_domain(&f.zone).ok()?;
            let ups = crate::config::UpstreamConfig {
                servers: f.servers.clone(),
                ..cfg.upstream.clone()
            };
            Some((zone, Arc::new(Upstreams::new(&ups))))
        })
        .collect();
    zones.sort_by_key(|(z, _)| std::cmp::Reverse(z.split('.').count()));
    zones
}
