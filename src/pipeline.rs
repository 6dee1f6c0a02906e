//! The query path, assembled in one place: read the query, check the lists, sinkhole or answer from cache,
//! else forward upstream; log what was blocked.
//!
//! `decide` does everything that needs no network and returns at once; only `forward` awaits an upstream.
//! Listeners call the first, and spawn the second only when needed.

use crate::blocklist::Lists;
use crate::cache::Cache;
use crate::config::Config;
use crate::events::{BlockEvent, Events, Protocol};
use crate::sinkhole::Sinkhole;
use crate::telemetry::{Outcome, Telemetry};
use crate::upstream::Upstreams;
use crate::wire::{self, Query};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NOTIMP: u8 = 4;

/// Who sent a query and how.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    pub protocol: Protocol,
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

/// What the lists and the sinkhole answer are right now; replaced whole on reload.
pub struct Policy {
    pub lists: Lists,
    pub sinkhole: Sinkhole,
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
}

/// The assembled query path.
pub struct Pipeline {
    pub policy: ArcSwap<Policy>,
    pub cache: Option<Cache>,
    pub upstreams: Upstreams,
    pub events: Events,
    pub stats: Stats,
    /// Metric handles (no-ops unless `[admin]` installed a recorder).
    pub telemetry: Telemetry,
}

impl Pipeline {
    /// Assembles the pipeline from a validated config and loaded lists.
    pub fn new(cfg: &Config, lists: Lists, events: Events) -> Pipeline {
        Pipeline {
            policy: ArcSwap::from_pointee(Policy {
                lists,
                sinkhole: Sinkhole::from_config(&cfg.sinkhole),
            }),
            cache: Cache::new(&cfg.cache),
            upstreams: Upstreams::new(&cfg.upstream),
            events,
            stats: Stats::default(),
            telemetry: Telemetry::new(),
        }
    }

    /// Everything that can be answered without the network: errors, blocked names, cache hits.
    pub fn decide(&self, raw: &[u8], client: &Client) -> Decision {
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
            return Decision::Reply(wire::short_reply(raw, 0, RCODE_NOTIMP, false));
        }
        let query = match wire::parse_query(raw) {
            Ok(q) => q,
            Err(_) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                count(Outcome::Malformed);
                return Decision::Reply(wire::short_reply(raw, 0, RCODE_FORMERR, false));
            }
        };
        if query.name == crate::health::NAME {
            count(Outcome::Local);
            return Decision::Reply(crate::health::answer(&query));
        }
        let policy = self.policy.load();
        if let Some(v) = policy.lists.check(&query.name) {
            let mode = v.list.action.unwrap_or(policy.sinkhole.mode);
            let answer = policy.sinkhole.answer(mode, &query, v.rule.rule);
            self.stats.blocked.fetch_add(1, Ordering::Relaxed);
            count(Outcome::Blocked);
            self.telemetry.blocked(&v.list.name);
            self.events.record(BlockEvent {
                time: SystemTime::now(),
                client: client.addr,
                protocol: client.protocol,
                qname: query.name.clone(),
                qtype: query.qtype,
                list: Arc::from(v.list.name.as_str()),
                rule: v.rule.rule.into(),
                action: mode.as_str(),
            });
            return Decision::Reply(self.fit(answer, &query, raw, client));
        }
        if let Some(cache) = &self.cache {
            if let Some(answer) = cache.get(&query, raw) {
                self.stats.cached.fetch_add(1, Ordering::Relaxed);
                count(Outcome::Cached);
                return Decision::Reply(self.fit(answer, &query, raw, client));
            }
            self.telemetry.cache_miss();
        }
        Decision::Forward
    }

    /// Forwards a query that `decide` could not answer; `None` means send nothing.
    pub async fn forward(&self, raw: &[u8], client: &Client) -> Option<Vec<u8>> {
        let query = wire::parse_query(raw).ok()?;
        match self.upstreams.forward(raw, &query).await {
            Ok(answer) => {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                self.telemetry.query(client.protocol, Outcome::Forwarded);
                if let Some(cache) = &self.cache {
                    cache.put(&query, &answer.wire, &answer.shape);
                }
                let mut out = answer.wire;
                wire::set_id(&mut out, query.header.id);
                Some(self.fit(out, &query, raw, client))
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.telemetry.query(client.protocol, Outcome::Failed);
                tracing::warn!(qname = %query.name, error = %e, "answering SERVFAIL");
                Some(self.servfail(raw, &query))
            }
        }
    }

    /// SERVFAIL for a query, used when forwarding fails or is shed.
    pub fn servfail(&self, raw: &[u8], query: &Query<'_>) -> Vec<u8> {
        wire::short_reply(raw, query.question.len(), RCODE_SERVFAIL, false)
    }

    /// SERVFAIL for raw bytes already known to parse, when work is shed before forwarding.
    pub fn shed(&self, raw: &[u8]) -> Vec<u8> {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.telemetry.shed();
        let qlen = wire::parse_query(raw)
            .map(|q| q.question.len())
            .unwrap_or(0);
        wire::short_reply(raw, qlen, RCODE_SERVFAIL, false)
    }

    /// Cuts an answer that is too big for the client's UDP buffer down to header + question with TC set.
    fn fit(&self, answer: Vec<u8>, query: &Query<'_>, raw: &[u8], client: &Client) -> Vec<u8> {
        if client.protocol == Protocol::Udp && answer.len() > query.udp_limit() {
            let mut r = wire::short_reply(raw, query.question.len(), 0, true);
            // Keep the upstream's rcode and flags other than TC.
            if answer.len() >= 4 {
                r[2] = answer[2] | 0x02;
                r[3] = answer[3];
            }
            r
        } else {
            answer
        }
    }
}
