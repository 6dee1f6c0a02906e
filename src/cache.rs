//! The answer cache: upstream answers kept in wire format and replayed with ID, question case and TTLs patched.
//!
//! Keyed by (name, type, class, EDNS, DO, CD, AD) so a DNSSEC-aware client never gets an answer fetched
//! for a client that was not, and the reverse. When full, the S3-FIFO policy of `quick_cache` picks what
//! goes, one entry per insert (names asked once leave first; popular ones stay): no scan of the whole
//! cache, so a full cache answers as fast as an empty one.
//!
//! An expired answer stays (until evicted or `serve_stale` seconds past its TTL) for one use: when no
//! upstream answers in time, or one answers SERVFAIL, it is given with a short TTL instead (RFC 8767), so a
//! WAN outage does not take every name the network uses with it.

use crate::config::CacheConfig;
use crate::wire::{self, AnswerShape, Inspect, Query};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// TTL shown on an answer served stale (RFC 8767 section 4 recommends 30 seconds): clients ask again soon,
/// when the upstream may be back.
pub const STALE_TTL: u32 = 30;

const RCODE_NOERROR: u8 = 0;
use crate::wire::RCODE_NXDOMAIN;

/// The TTL a record of a positive answer is shown with, before the time it has spent in the cache is taken
/// off: `orig` within `(floor, ceiling)` (a floor above the ceiling wins).
fn shown_ttl(orig: u32, (floor, ceiling): (u32, u32)) -> u32 {
    orig.clamp(floor, ceiling.max(floor))
}

/// Whether an answer is negative, which `min_ttl` does not raise and its SOA times: anything but NOERROR,
/// NOERROR without records, and NODATA behind a CNAME (RFC 2308 section 2.2: no record of the asked type,
/// an SOA in authority). A CNAME chain with neither (an upstream that did not follow it) stays positive.
fn negative(shape: &AnswerShape) -> bool {
    shape.header.rcode() != RCODE_NOERROR
        || shape.answers == 0
        || (!shape.has_asked_type && shape.negative_ttl.is_some())
}

struct Entry {
    /// The answer with each TTL as [`Cache::show_fresh`] shows it at once: a hit only counts them down.
    wire: Box<[u8]>,
    ttl_offsets: Box<[u32]>,
    stored: Instant,
    /// Seconds the entry lives, after floor and ceiling: no longer than any record in it is shown with.
    ttl: u32,
    /// What the answer points at, re-checked against the lists on a hit under a new policy.
    inspect: Option<Arc<Inspect>>,
    /// The policy generation under which what this answer points at (targets, addresses) was last found not
    /// blocked; 0 before the first check. A hit under that same policy needs no target check.
    cleared: AtomicU64,
    /// When a refresh of this answer last failed, in milliseconds after `stored`, plus one; 0 if none has.
    refresh_failed: AtomicU64,
}

/// How long after a failed refresh an expired answer is given at once, without asking the upstream again
/// (RFC 8767 section 5's failure recheck timer, 30 s as it suggests): clients of a name its upstream cannot
/// resolve do not each wait for the client timer.
pub const FAILURE_RECHECK: Duration = Duration::from_secs(30);

/// What the cache has for a question whose answer has expired but may still be served stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Worth a refresh; served stale if the upstream is slow or fails.
    Refresh,
    /// A refresh failed less than [`FAILURE_RECHECK`] ago: served stale at once.
    Failing,
}

/// A cached answer ready to send, and what it points at.
pub struct Hit {
    pub wire: Vec<u8>,
    pub inspect: Option<Arc<Inspect>>,
    /// The policy generation this answer was last cleared under (see [`Hit::clear`]); 0 if never.
    pub cleared: u64,
    entry: Arc<Entry>,
}

impl Hit {
    /// Records that the lists of policy `generation` block nothing this answer points at, so later hits
    /// under the same policy skip checking its targets and addresses again.
    pub fn clear(&self, generation: u64) {
        self.entry.cleared.store(generation, Ordering::Relaxed);
    }
}

/// Bytes of key and answer that count as one of `[cache] size`'s entries; a bigger answer counts as several.
const UNIT_BYTES: usize = 512;

/// Weighs an entry in units of [`UNIT_BYTES`], so that `size` bounds memory as well as answers: a client
/// asking for unique names with 64 KB answers fills the cache with 128 units each, not 1.
#[derive(Clone, Copy)]
struct Units;

impl quick_cache::Weighter<Box<[u8]>, Arc<Entry>> for Units {
    fn weight(&self, key: &Box<[u8]>, e: &Arc<Entry>) -> u64 {
        let bytes = key.len() + e.wire.len() + 4 * e.ttl_offsets.len();
        bytes.div_ceil(UNIT_BYTES).max(1) as u64
    }
}

/// A bounded answer cache.
pub struct Cache {
    entries: quick_cache::sync::Cache<Box<[u8]>, Arc<Entry>, Units>,
    min_ttl: u32,
    max_ttl: u32,
    negative_max_ttl: u32,
    serve_stale: u32,
    /// The client hints a query carries are part of its key ([`Cache::keyed_by_client_hints`]).
    hints_in_key: bool,
}

/// How old a cached answer is.
#[derive(Clone, Copy)]
enum Age {
    /// Within its TTL: this many seconds since it was stored.
    Fresh(u32),
    /// Past its TTL, within `serve_stale`.
    Stale,
}

/// Room for any key: flags, type, class and the longest name text (255 wire octets, each at most `\DDD`).
const KEY_MAX: usize = 5 + 255 * 4;
/// Keys up to this length (nearly all) are built in a small stack buffer: every query not blocked looks in
/// the cache, and zeroing a kilobyte each time showed in its instruction count.
const KEY_SHORT: usize = 256;

/// Writes the cache key into `buf` (at least `5 + name length` long): flags, type, class, then the
/// lower-case name. Returns its length.
fn key_of(q: &Query<'_>, buf: &mut [u8]) -> usize {
    let e = q.edns;
    let flags = u8::from(e.is_some())
        | (u8::from(e.is_some_and(|e| e.dnssec_ok)) << 1)
        | (u8::from(q.checking_disabled()) << 2)
        // A validating upstream sets AD only for queries with AD or DO (RFC 6840 5.7): an answer to a query
        // with AD must not reach a client that asked without it, nor the other way round.
        | (u8::from(q.header.flags & 0x0020 != 0) << 3);
    buf[0] = flags;
    buf[1..3].copy_from_slice(&q.qtype.to_be_bytes());
    buf[3..5].copy_from_slice(&q.qclass.to_be_bytes());
    let n = q.name.len().min(buf.len() - 5);
    buf[5..5 + n].copy_from_slice(&q.name.as_bytes()[..n]);
    5 + n
}

/// The key of `q`'s answers: two questions with the same key get the same answer but for ID, letter case
/// and RD (what the in-flight merging of identical questions needs too). `hints`: as
/// [`Cache::keyed_by_client_hints`].
pub fn key(q: &Query<'_>, hints: bool) -> Box<[u8]> {
    with_key(q, hints, |k| k.into())
}

/// Calls `f` with the cache key of `q`; with `hints`, a query's MAC and client-subnet options are part of it.
fn with_key<R>(q: &Query<'_>, hints: bool, f: impl FnOnce(&[u8]) -> R) -> R {
    if hints && !q.edns_options.is_empty() {
        let extra = crate::clients::edns::hint_options(q.edns_options);
        if !extra.is_empty() {
            // A name's text never holds a zero byte (it is escaped), so the hints cannot pass for a name.
            let mut k = vec![0u8; 5 + q.name.len()];
            let n = key_of(q, &mut k);
            k.truncate(n);
            k.push(0);
            k.extend_from_slice(&extra);
            return f(&k);
        }
    }
    if 5 + q.name.len() <= KEY_SHORT {
        let mut kb = [0u8; KEY_SHORT];
        let n = key_of(q, &mut kb);
        f(&kb[..n])
    } else {
        let mut kb = [0u8; KEY_MAX];
        let n = key_of(q, &mut kb);
        f(&kb[..n])
    }
}

impl Cache {
    /// A cache per `[cache]`; `None` when the size is 0.
    pub fn new(cfg: &CacheConfig) -> Option<Cache> {
        if cfg.size == 0 {
            return None;
        }
        Some(Cache {
            entries: quick_cache::sync::Cache::with_weighter(cfg.size, cfg.size as u64, Units),
            min_ttl: cfg.min_ttl,
            max_ttl: cfg.max_ttl,
            negative_max_ttl: cfg.negative_max_ttl,
            serve_stale: cfg.serve_stale,
            hints_in_key: false,
        })
    }

    /// Keeps answers apart by the client hints (MAC, client subnet) of their queries: for when the hints go
    /// upstream (`send_client_hints`), where a filtering resolver may answer each device its own way, and one
    /// device's answer must not be served to another.
    pub fn keyed_by_client_hints(mut self, on: bool) -> Cache {
        self.hints_in_key = on;
        self
    }

    /// A cached answer to `query` (raw bytes `raw`) within its TTL, ready to send, or `None`.
    pub fn get(&self, query: &Query<'_>, raw: &[u8]) -> Option<Hit> {
        self.lookup(query, raw, false, Instant::now)
    }

    /// For when no upstream answered: the cached answer to `query`, fresh if another query has refreshed
    /// it meanwhile, else expired at most `serve_stale` seconds ago with every TTL shown as [`STALE_TTL`].
    pub fn stale(&self, query: &Query<'_>, raw: &[u8]) -> Option<Hit> {
        self.lookup(query, raw, true, Instant::now)
    }

    /// Whether the answer under `key` (from [`key`]) is past its TTL but still within `serve_stale`, and
    /// whether its last refresh failed lately: what a query for it gets if the upstream is slow or failing.
    pub fn expired(&self, key: &[u8]) -> Option<Expired> {
        let entry = self.entries.peek(key)?;
        let age = entry.stored.elapsed();
        let elapsed = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        if elapsed < entry.ttl || elapsed - entry.ttl >= self.serve_stale {
            return None;
        }
        let failed = entry.refresh_failed.load(Ordering::Relaxed);
        let recheck = u128::from(failed) + FAILURE_RECHECK.as_millis();
        Some(if failed != 0 && age.as_millis() < recheck {
            Expired::Failing
        } else {
            Expired::Refresh
        })
    }

    /// Notes that no upstream gave a usable answer for `key` just now, which starts its failure recheck
    /// period; nothing happens if the cache has no answer for it.
    pub fn refresh_failed(&self, key: &[u8]) {
        if let Some(entry) = self.entries.peek(key) {
            let at = u64::try_from(entry.stored.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            entry.refresh_failed.store(at + 1, Ordering::Relaxed);
        }
    }

    /// The lookup behind [`get`](Self::get) and [`stale`](Self::stale); the clock is read only on a hit (a
    /// blocked name or a miss does not pay for it).
    fn lookup(
        &self,
        query: &Query<'_>,
        raw: &[u8],
        stale_ok: bool,
        now: impl FnOnce() -> Instant,
    ) -> Option<Hit> {
        let (entry, age) = with_key(query, self.hints_in_key, |key| {
            let entry = self.entries.get(key)?;
            let age = now().saturating_duration_since(entry.stored).as_secs();
            let elapsed = u32::try_from(age).unwrap_or(u32::MAX);
            if elapsed < entry.ttl {
                return Some((entry, Age::Fresh(elapsed)));
            }
            if elapsed - entry.ttl >= self.serve_stale {
                self.entries.remove(key);
                return None;
            }
            stale_ok.then_some((entry, Age::Stale))
        })?;
        let mut out = entry.wire.to_vec();
        let inspect = entry.inspect.clone();
        let cleared = entry.cleared.load(Ordering::Relaxed);
        wire::set_ttls(&mut out, &entry.ttl_offsets, |shown| match age {
            Age::Fresh(elapsed) => shown.saturating_sub(elapsed),
            Age::Stale => STALE_TTL,
        });
        wire::answer_as_asked(&mut out, query, raw);
        Some(Hit {
            wire: out,
            inspect,
            cleared,
            entry,
        })
    }

    /// Gives a fresh upstream answer the TTLs a cache hit on it would show at once, so that its first client
    /// too sees `min_ttl`..`max_ttl` (at most `negative_max_ttl` for a negative answer) and RFC 2181's
    /// reading. A negative answer's authority records (its SOA, the SOA's signature, NSEC proofs) show its
    /// negative TTL at most, min(SOA TTL, MINIMUM) (RFC 2308 section 5, RFC 9077): what c2sink keeps it for.
    pub fn show_fresh(&self, answer: &mut [u8], shape: &AnswerShape) {
        let offsets = &shape.ttl_offsets;
        if !negative(shape) {
            let bounds = (self.min_ttl, self.max_ttl);
            wire::set_ttls(answer, offsets, |t| shown_ttl(t, bounds));
            return;
        }
        // `min_ttl` does not raise a negative answer: no client is told to keep one longer than c2sink does.
        let cap = self.negative_max_ttl;
        let neg = shape.negative_ttl.map_or(cap, |t| t.min(cap));
        let start = shape.authority_ttls.start.min(offsets.len());
        let end = shape.authority_ttls.end.clamp(start, offsets.len());
        wire::set_ttls(answer, &offsets[..start], |t| t.min(cap));
        wire::set_ttls(answer, &offsets[start..end], |t| t.min(neg));
        wire::set_ttls(answer, &offsets[end..], |t| t.min(cap));
    }

    /// Stores an upstream answer if it is cacheable; returns whether it was stored.
    pub fn put(&self, query: &Query<'_>, answer: &[u8], shape: &AnswerShape) -> bool {
        let Some(ttl) = self.ttl_for(shape) else {
            return false;
        };
        if ttl == 0 {
            return false;
        }
        let mut wire: Box<[u8]> = answer.into();
        // Once here, not on every hit (a no-op when the caller showed it fresh already).
        self.show_fresh(&mut wire, shape);
        let entry = Entry {
            wire,
            ttl_offsets: shape.ttl_offsets.clone().into_boxed_slice(),
            stored: Instant::now(),
            ttl,
            inspect: shape.inspect.clone(),
            cleared: AtomicU64::new(0),
            refresh_failed: AtomicU64::new(0),
        };
        with_key(query, self.hints_in_key, |key| {
            self.entries.insert(key.into(), Arc::new(entry))
        });
        true
    }

    /// How long an answer may be kept: positive answers by their smallest TTL; negative ones by their SOA
    /// (min(TTL, MINIMUM), RFC 2308 section 5) and no longer than any other record in them (a CNAME before
    /// the NXDOMAIN or NODATA), as Unbound keeps them, so that no record is served past its TTL.
    fn ttl_for(&self, shape: &AnswerShape) -> Option<u32> {
        // Only an answer that echoes one question can be replayed with a client's question patched in.
        if shape.header.truncated() || shape.header.qdcount != 1 {
            return None;
        }
        if !negative(shape) {
            return shape
                .min_ttl
                .map(|t| t.clamp(self.min_ttl, self.max_ttl.max(self.min_ttl)));
        }
        match shape.header.rcode() {
            // The SOA's own TTL is never below the negative TTL, so `min_ttl` (the smallest TTL of the
            // answer and authority records) only counts where another record's is lower.
            RCODE_NOERROR | RCODE_NXDOMAIN => shape
                .negative_ttl
                .map(|t| t.min(shape.min_ttl.unwrap_or(t)).min(self.negative_max_ttl)),
            _ => None,
        }
    }

    /// Answers held now (expired ones count until a lookup or eviction removes them).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_query;

    /// A query whose labels are made of `fill` octets (escaped as `\DDD` in the name text).
    fn query(fill: u8, last: u8) -> Vec<u8> {
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for i in 0..4 {
            m.push(60);
            m.extend(std::iter::repeat_n(fill, 59));
            m.push(if i == 3 { last } else { fill });
        }
        m.push(0);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    }

    /// An answer to `q` with one A record (TTL 300).
    fn answer(q: &[u8]) -> Vec<u8> {
        let mut a = q.to_vec();
        a[2] |= 0x80;
        a[7] = 1; // ANCOUNT
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        a
    }

    fn store(c: &Cache, name: &str) {
        let q = crate::wire::test_message(1, 0x0100, name, 1);
        let a = answer(&q);
        let shape = crate::wire::answer_shape(&a).expect("shape");
        assert!(c.put(&parse_query(&q).expect("query"), &a, &shape));
    }

    fn cached(c: &Cache, name: &str) -> bool {
        let q = crate::wire::test_message(7, 0x0100, name, 1);
        c.get(&parse_query(&q).expect("query"), &q).is_some()
    }

    #[test]
    fn an_expired_answer_is_only_given_stale_and_only_within_serve_stale() {
        let c = Cache::new(&CacheConfig {
            serve_stale: 100,
            ..CacheConfig::default()
        })
        .expect("cache");
        store(&c, "old.example");
        let q = crate::wire::test_message(7, 0x0100, "old.example", 1);
        let query = parse_query(&q).expect("query");
        let at = |secs| Instant::now() + std::time::Duration::from_secs(secs);
        let ttl_of = |h: Hit| {
            let n = h.wire.len();
            u32::from_be_bytes([h.wire[n - 10], h.wire[n - 9], h.wire[n - 8], h.wire[n - 7]])
        };
        // Within its TTL (300 s): the same answer either way, TTL counted down.
        // (289 if the machine stalled this test for a second after the store.)
        let fresh = c.lookup(&query, &q, false, || at(10)).expect("fresh");
        assert!((289..=290).contains(&ttl_of(fresh)));
        let fresh = c.lookup(&query, &q, true, || at(10)).expect("fresh");
        assert!((289..=290).contains(&ttl_of(fresh)));
        // Expired: not a hit, but given stale with TTL 30, and kept for that.
        assert!(c.lookup(&query, &q, false, || at(350)).is_none());
        let stale = c.lookup(&query, &q, true, || at(350)).expect("stale");
        assert_eq!(ttl_of(stale), STALE_TTL);
        assert_eq!(c.len(), 1);
        // More than serve_stale past its TTL: gone.
        assert!(c.lookup(&query, &q, true, || at(401)).is_none());
        assert_eq!(c.len(), 0);
        // serve_stale = 0: an expired answer is dropped at the first look.
        let off = Cache::new(&CacheConfig {
            serve_stale: 0,
            ..CacheConfig::default()
        })
        .expect("cache");
        store(&off, "old.example");
        assert!(off.lookup(&query, &q, true, || at(301)).is_none());
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn a_full_cache_stays_bounded_and_keeps_what_is_asked_for() {
        let cfg = CacheConfig {
            size: 1000,
            ..CacheConfig::default()
        };
        let c = Cache::new(&cfg).expect("cache");
        store(&c, "popular.example");
        assert!(cached(&c, "popular.example"));
        // A scan of 20,000 names asked once each (a client walking a zone, or a random-subdomain flood).
        for i in 0..20_000 {
            store(&c, &format!("n{i}.scan.example"));
            if i % 100 == 0 {
                assert!(cached(&c, "popular.example"), "evicted after {i} inserts");
            }
        }
        assert!(c.len() <= 1100, "{} entries for a size of 1000", c.len());
        assert!(c.len() >= 900, "{} entries for a size of 1000", c.len());
        assert!(
            cached(&c, "n19999.scan.example"),
            "the newest answer is kept"
        );
    }

    /// An answer to `name` with `n` TXT records of 250 bytes each (TTL 300).
    fn big_answer(name: &str, n: u16) -> (Vec<u8>, Vec<u8>) {
        let q = crate::wire::test_message(1, 0x0100, name, 16);
        let mut a = q.clone();
        a[2] |= 0x80;
        a[6..8].copy_from_slice(&n.to_be_bytes());
        for _ in 0..n {
            a.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 1, 44, 0, 251, 250]);
            a.extend(std::iter::repeat_n(b'x', 250));
        }
        (q, a)
    }

    #[test]
    fn big_answers_count_as_several_entries_so_memory_stays_bounded() {
        let c = Cache::new(&CacheConfig {
            size: 20_000,
            ..CacheConfig::default()
        })
        .expect("cache");
        // 2,000 unique names with 60 KB answers: without weights, 120 MB held for a size of 20,000.
        for i in 0..2000 {
            let (q, a) = big_answer(&format!("b{i}.big.example"), 240);
            let shape = crate::wire::answer_shape(&a).expect("shape");
            c.put(&parse_query(&q).expect("query"), &a, &shape);
        }
        let held: usize = c.entries.iter().map(|(_, e)| e.wire.len()).sum();
        assert!(
            held <= 20_000 * UNIT_BYTES,
            "{held} bytes held for {} answers",
            c.len()
        );
        assert!(c.len() >= 4, "big answers are still cached: {}", c.len());
        // Ordinary answers still count one each.
        for i in 0..900 {
            store(&c, &format!("s{i}.small.example"));
        }
        assert!(c.len() >= 800, "{}", c.len());
    }

    #[test]
    fn long_escaped_names_get_distinct_keys() {
        // 244 octets that each print as four characters: about 980 characters of name text.
        let (a, b) = (query(0x01, 0x02), query(0x01, 0x03));
        let (qa, qb) = (parse_query(&a).expect("a"), parse_query(&b).expect("b"));
        assert!(qa.name.len() > 900);
        let (mut ka, mut kb) = ([0u8; KEY_MAX], [0u8; KEY_MAX]);
        let (la, lb) = (key_of(&qa, &mut ka), key_of(&qb, &mut kb));
        assert_eq!(la, 5 + qa.name.len(), "the whole name is in the key");
        assert_ne!(ka[..la], kb[..lb]);
        assert_eq!(with_key(&qa, false, |k| k.to_vec()), ka[..la].to_vec());
        // Through the cache: the long key's answer is found, its neighbour's is not.
        let c = Cache::new(&CacheConfig::default()).expect("cache");
        let shape = crate::wire::answer_shape(&answer(&a)).expect("shape");
        assert!(c.put(&qa, &answer(&a), &shape));
        assert!(c.get(&qa, &a).is_some());
        assert!(c.get(&qb, &b).is_none());
    }

    #[test]
    fn a_cname_to_a_name_that_does_not_exist_is_shown_within_negative_max_ttl() {
        let c = Cache::new(&CacheConfig {
            negative_max_ttl: 60,
            ..CacheConfig::default()
        })
        .expect("cache");
        // NXDOMAIN for a.example: a CNAME (TTL 300) to gone.example, and the SOA (TTL 300, MINIMUM 300).
        let mut a = crate::wire::test_message(1, 0x8183, "a.example", 1);
        a[6..8].copy_from_slice(&1u16.to_be_bytes());
        a[8..10].copy_from_slice(&1u16.to_be_bytes());
        a.extend_from_slice(&[
            0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, 7, 4, b'g', b'o', b'n', b'e', 0xc0, 14,
        ]);
        a.extend_from_slice(&[0xc0, 14, 0, 6, 0, 1, 0, 0, 1, 44, 0, 22, 0, 0]);
        a.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 44]);
        let shape = crate::wire::answer_shape(&a).expect("shape");
        assert_eq!(shape.ttl_offsets.len(), 2);
        c.show_fresh(&mut a, &shape);
        for &at in &shape.ttl_offsets {
            let at = at as usize;
            let ttl = u32::from_be_bytes([a[at], a[at + 1], a[at + 2], a[at + 3]]);
            assert_eq!(ttl, 60, "at {at}");
        }
    }

    /// `min_ttl` is a floor for positive answers: a negative answer is never shown (or kept) longer than
    /// `negative_max_ttl`, however high the floor.
    #[test]
    fn min_ttl_does_not_raise_a_negative_answer_above_negative_max_ttl() {
        let c = Cache::new(&CacheConfig {
            min_ttl: 10,
            max_ttl: 20,
            negative_max_ttl: 5,
            ..CacheConfig::default()
        })
        .expect("cache");
        // NXDOMAIN for a.example with the zone's SOA (TTL 300, MINIMUM 50).
        let q = crate::wire::test_message(1, 0x0100, "a.example", 1);
        let mut a = crate::wire::test_message(1, 0x8183, "a.example", 1);
        a[8..10].copy_from_slice(&1u16.to_be_bytes());
        a.extend_from_slice(&[0xc0, 14, 0, 6, 0, 1, 0, 0, 1, 44, 0, 22, 0, 0]);
        a.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 50]);
        let shape = crate::wire::answer_shape(&a).expect("shape");
        let ttl_of = |m: &[u8]| {
            let at = shape.ttl_offsets[0] as usize;
            u32::from_be_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]])
        };
        let mut fresh = a.clone();
        c.show_fresh(&mut fresh, &shape);
        assert_eq!(ttl_of(&fresh), 5, "the first client");
        let query = parse_query(&q).expect("query");
        assert!(c.put(&query, &a, &shape));
        let hit = c.get(&query, &q).expect("cached");
        assert!(ttl_of(&hit.wire) <= 5, "a cache hit: {}", ttl_of(&hit.wire));
        // A positive answer still gets the floor.
        let mut pos = crate::wire::test_message(1, 0x8180, "b.example", 1);
        pos[6..8].copy_from_slice(&1u16.to_be_bytes());
        pos.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 3, 0, 4, 192, 0, 2, 1]);
        let pshape = crate::wire::answer_shape(&pos).expect("shape");
        c.show_fresh(&mut pos, &pshape);
        let at = pshape.ttl_offsets[0] as usize;
        assert_eq!(
            u32::from_be_bytes([pos[at], pos[at + 1], pos[at + 2], pos[at + 3]]),
            10
        );
    }

    /// An answer to `a.example` A with `rcode`: a CNAME to `gone.example` with `cname_ttl` (if any), and
    /// in authority the SOA of `example` with TTL `soa_ttl` and MINIMUM `minimum`.
    fn negative_answer(rcode: u8, cname_ttl: Option<u32>, soa_ttl: u32, minimum: u32) -> Vec<u8> {
        let mut a = crate::wire::test_message(1, 0x8180 | u16::from(rcode), "a.example", 1);
        if let Some(ttl) = cname_ttl {
            a[6..8].copy_from_slice(&1u16.to_be_bytes());
            a.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1]);
            a.extend_from_slice(&ttl.to_be_bytes());
            a.extend_from_slice(&[0, 7, 4, b'g', b'o', b'n', b'e', 0xc0, 14]);
        }
        a[8..10].copy_from_slice(&1u16.to_be_bytes());
        a.extend_from_slice(&[0xc0, 14, 0, 6, 0, 1]);
        a.extend_from_slice(&soa_ttl.to_be_bytes());
        a.extend_from_slice(&[0, 22, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        a.extend_from_slice(&minimum.to_be_bytes());
        a
    }

    /// Every TTL of `m` at `shape`'s offsets, in order.
    fn ttls(m: &[u8], shape: &AnswerShape) -> Vec<u32> {
        let ttl = |i: usize| u32::from_be_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
        shape.ttl_offsets.iter().map(|&o| ttl(o as usize)).collect()
    }

    /// Stores `a` (an answer to `a.example` A) in `c`; returns the query, its raw bytes and the answer's
    /// shape.
    fn put_answer(c: &Cache, a: &[u8]) -> (Vec<u8>, AnswerShape) {
        let q = crate::wire::test_message(1, 0x0100, "a.example", 1);
        let shape = crate::wire::answer_shape(a).expect("shape");
        assert!(c.put(&parse_query(&q).expect("query"), a, &shape), "cached");
        (q, shape)
    }

    /// A CNAME then SOA and no record of the asked type is NODATA (RFC 2308 section 2.2), not a positive
    /// answer: kept and shown by its SOA within `negative_max_ttl`, never raised by `min_ttl`.
    #[test]
    fn nodata_behind_a_cname_is_a_negative_answer() {
        let c = Cache::new(&CacheConfig {
            min_ttl: 60,
            max_ttl: 100,
            negative_max_ttl: 30,
            ..CacheConfig::default()
        })
        .expect("cache");
        let mut a = negative_answer(0, Some(3600), 3600, 5);
        let shape = crate::wire::answer_shape(&a).expect("shape");
        assert!(!shape.has_asked_type && shape.answers == 1);
        let (q, shape) = put_answer(&c, &a);
        c.show_fresh(&mut a, &shape);
        assert_eq!(ttls(&a, &shape), [30, 5], "CNAME, SOA: the first client");
        let query = parse_query(&q).expect("query");
        let at = |secs| Instant::now() + Duration::from_secs(secs);
        let hit = c.lookup(&query, &q, false, || at(2)).expect("fresh");
        let [cname, soa] = ttls(&hit.wire, &shape)[..] else {
            panic!("two TTLs");
        };
        assert!(
            (27..=28).contains(&cname) && (2..=3).contains(&soa),
            "{cname} {soa}"
        );
        assert!(
            c.lookup(&query, &q, false, || at(5)).is_none(),
            "kept for the SOA's MINIMUM"
        );
        // The CNAME's own TTL, when lower, bounds how long the NODATA is kept.
        let d = Cache::new(&CacheConfig::default()).expect("cache");
        let (q, _) = put_answer(&d, &negative_answer(0, Some(2), 300, 300));
        let query = parse_query(&q).expect("query");
        assert!(d.lookup(&query, &q, false, || at(1)).is_some());
        assert!(d.lookup(&query, &q, false, || at(2)).is_none());
        // With the asked type it is a positive answer; so is a CNAME alone (no SOA: an upstream that did not
        // follow it), whose record is data: both get `min_ttl`.
        let positive = answer(&crate::wire::test_message(1, 0x0100, "a.example", 1));
        assert!(
            crate::wire::answer_shape(&positive)
                .expect("shape")
                .has_asked_type
        );
        let mut alone = negative_answer(0, Some(3600), 3600, 5);
        alone[8..10].copy_from_slice(&0u16.to_be_bytes());
        let soa_at = alone.len() - 34;
        alone.truncate(soa_at);
        let shape = crate::wire::answer_shape(&alone).expect("shape");
        c.show_fresh(&mut alone, &shape);
        assert_eq!(ttls(&alone, &shape), [100]);
    }

    /// The SOA of a negative answer is shown with the negative TTL, min(TTL, MINIMUM), which is what c2sink
    /// keeps it for; and the entry lives no longer than the CNAME before it.
    #[test]
    fn a_negative_answer_lives_and_shows_its_negative_ttl_and_no_longer_than_its_cname() {
        let c = Cache::new(&CacheConfig::default()).expect("cache");
        let at = |secs| Instant::now() + Duration::from_secs(secs);
        let mut a = negative_answer(RCODE_NXDOMAIN, None, 3600, 10);
        let (q, shape) = put_answer(&c, &a);
        c.show_fresh(&mut a, &shape);
        assert_eq!(ttls(&a, &shape), [10], "the first client");
        let query = parse_query(&q).expect("query");
        let hit = c.lookup(&query, &q, false, || at(3)).expect("fresh");
        assert!((6..=7).contains(&ttls(&hit.wire, &shape)[0]), "counts down");
        assert!(c.lookup(&query, &q, false, || at(10)).is_none());
        // A CNAME (TTL 2) to a name that does not exist (SOA 300/300): gone with the CNAME.
        let mut a = negative_answer(RCODE_NXDOMAIN, Some(2), 300, 300);
        let (q, shape) = put_answer(&c, &a);
        c.show_fresh(&mut a, &shape);
        assert_eq!(ttls(&a, &shape), [2, 300]);
        let query = parse_query(&q).expect("query");
        assert!(c.lookup(&query, &q, false, || at(1)).is_some());
        assert!(
            c.lookup(&query, &q, false, || at(2)).is_none(),
            "the CNAME is not served past its TTL"
        );
    }
}
