//! Metrics handles, registered once at start so that the query path only bumps an atomic counter and never
//! looks a metric up by name. Without an `[admin]` section no recorder is installed and every handle is a
//! no-op.

use crate::blocklist::Lists;
use crate::events::Protocol;
use metrics::{Counter, counter, gauge};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

/// What became of a query, as counted in `c2sink_queries_total{outcome}` and written in the query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Answered by an upstream.
    Forwarded,
    /// Answered by the sinkhole because a list has the name.
    Blocked,
    /// Answered from the cache.
    Cached,
    /// Not served: unsupported opcode, a zone transfer, or turned away by admission rules.
    Refused,
    /// SERVFAIL because every upstream failed.
    Failed,
    /// Answered by c2sink itself (the health-check name).
    Local,
    /// Not a query c2sink can serve as read: dropped, FORMERR (also a meta type asked) or BADVERS.
    Malformed,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Forwarded,
        Outcome::Blocked,
        Outcome::Cached,
        Outcome::Refused,
        Outcome::Failed,
        Outcome::Local,
        Outcome::Malformed,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Blocked => "blocked",
            Outcome::Cached => "cached",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Local => "local",
            Outcome::Malformed => "malformed",
        }
    }
}

/// Gives every metric its HELP text; call once after installing a recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("c2sink_queries_total", "Queries by protocol and outcome.");
    describe_counter!(
        "c2sink_blocked_total",
        "Queries blocked, by the list that had the name."
    );
    describe_counter!(
        "c2sink_cache_hits_total",
        "Queries answered from the cache."
    );
    describe_counter!(
        "c2sink_cache_misses_total",
        "Queries the cache could not answer that went upstream."
    );
    describe_gauge!("c2sink_cache_entries", "Answers held in the cache.");
    describe_counter!(
        "c2sink_stale_answers_total",
        "Expired cached answers given because no upstream answered (RFC 8767); also counted as cache hits."
    );
    describe_counter!(
        "c2sink_queries_shed_total",
        "Queries given SERVFAIL at once because server.max_inflight were already waiting on upstreams."
    );
    describe_counter!(
        "c2sink_queries_rejected_total",
        "Queries turned away before the lists: reason denied (allow/deny) or rate_limited."
    );
    describe_histogram!(
        "c2sink_upstream_latency_seconds",
        metrics::Unit::Seconds,
        "Time from sending a query to an upstream to its good answer."
    );
    describe_counter!(
        "c2sink_upstream_failures_total",
        "Tries against an upstream that gave no good answer (timeout, network error, malformed); not a query that waited out its timeout for a DoT connection and was never sent."
    );
    describe_counter!(
        "c2sink_upstream_mismatched_total",
        "Upstream messages ignored because their ID, question or opcode did not match."
    );
    describe_gauge!(
        "c2sink_list_entries",
        "Rules held by each list (block, allow or address rules)."
    );
    describe_gauge!(
        "c2sink_list_loaded_timestamp_seconds",
        "Unix time each list's file was last read (a reload reuses an unchanged file)."
    );
    describe_gauge!(
        "c2sink_feed_checked_timestamp_seconds",
        "Unix time each feed was last fetched or found unchanged; feed age = time() - this."
    );
    describe_counter!("c2sink_reloads_total", "Successful list reloads.");
    describe_counter!(
        "c2sink_reload_failures_total",
        "Failed list reloads (the previous lists stayed in force)."
    );
    describe_counter!(
        "c2sink_events_written_total",
        "Lines written to the event log (a line with `count` N stands for N blocked queries)."
    );
    describe_counter!(
        "c2sink_events_coalesced_total",
        "Blocked queries and trap connections folded into another's line ([log] coalesce): written + coalesced = blocked + connections."
    );
    describe_counter!(
        "c2sink_events_dropped_total",
        "Block events lost because the writer fell behind or the log could not be written."
    );
}

/// `protocol` label values, indexed by [`protocol_index`].
const PROTOCOLS: [&str; 4] = ["udp", "tcp", "dot", "doh"];

fn protocol_index(p: Protocol) -> usize {
    match p {
        Protocol::Udp => 0,
        Protocol::Tcp => 1,
        Protocol::Dot => 2,
        Protocol::Doh => 3,
    }
}

/// The pipeline's metric handles.
pub struct Telemetry {
    queries: [[Counter; Outcome::ALL.len()]; PROTOCOLS.len()],
    cache_hits: Counter,
    cache_misses: Counter,
    stale_answers: Counter,
    shed: Counter,
    /// Successful list reloads; the reload code increments it.
    pub reloads: Counter,
    /// Failed list reloads (the old lists stay in force); the reload code increments it.
    pub reload_failures: Counter,
    lists_ready: AtomicBool,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Registers every fixed handle with the installed recorder (or none).
    pub fn new() -> Telemetry {
        Telemetry {
            queries: std::array::from_fn(|p| {
                std::array::from_fn(
                    |o| counter!("c2sink_queries_total", "protocol" => PROTOCOLS[p], "outcome" => Outcome::ALL[o].as_str()),
                )
            }),
            cache_hits: counter!("c2sink_cache_hits_total"),
            cache_misses: counter!("c2sink_cache_misses_total"),
            stale_answers: counter!("c2sink_stale_answers_total"),
            shed: counter!("c2sink_queries_shed_total"),
            reloads: counter!("c2sink_reloads_total"),
            reload_failures: counter!("c2sink_reload_failures_total"),
            lists_ready: AtomicBool::new(false),
        }
    }

    /// Counts one query by how it reached c2sink and what became of it.
    #[inline]
    pub fn query(&self, protocol: Protocol, outcome: Outcome) {
        self.queries[protocol_index(protocol)][outcome as usize].increment(1);
        if outcome == Outcome::Cached {
            self.cache_hits.increment(1);
        }
    }

    /// Counts a lookup that the cache could not answer.
    #[inline]
    pub fn cache_miss(&self) {
        self.cache_misses.increment(1);
    }

    /// Counts an expired answer given because no upstream answered.
    #[inline]
    pub fn stale_answer(&self) {
        self.stale_answers.increment(1);
    }

    /// Counts a query given SERVFAIL at once because too many were waiting on upstreams.
    #[inline]
    pub fn shed(&self) {
        self.shed.increment(1);
    }

    /// Records a (re)loaded set of lists: entry counts, load time; marks lists ready.
    pub fn lists_loaded(&self, lists: &Lists) {
        for l in &lists.lists {
            let name = l.name.to_string();
            gauge!("c2sink_list_entries", "list" => name.clone()).set(l.rules() as f64);
            gauge!("c2sink_list_loaded_timestamp_seconds", "list" => name).set(unix(l.loaded_at));
        }
        self.lists_ready.store(true, Ordering::Release);
    }

    /// True once lists have been loaded (what `/readyz` needs besides a live upstream).
    pub fn lists_ready(&self) -> bool {
        self.lists_ready.load(Ordering::Acquire)
    }
}

/// Seconds since the Unix epoch (0 for a time before it).
fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Notes a feed fetched or found unchanged just now: its age is counted from here, not from the last
/// reload (which logrotate's SIGHUP makes daily) nor the last change (a static feed answers 304 for weeks).
pub fn feed_checked(list: &str) {
    gauge!("c2sink_feed_checked_timestamp_seconds", "list" => list.to_string())
        .set(unix(SystemTime::now()));
}

/// One `c2sink_blocked_total` handle per list, in the lists' order: looked up once when a policy is built,
/// so that counting a block is one increment, not a registry lookup.
pub fn blocked_counters(lists: &Lists) -> Vec<Counter> {
    lists
        .lists
        .iter()
        .map(|l| counter!("c2sink_blocked_total", "list" => l.name.to_string()))
        .collect()
}
