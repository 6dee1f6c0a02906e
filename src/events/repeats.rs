//! Repeats of one block event folded into one line, so that one noisy machine can neither flood the disk nor
//! rotate older evidence out of the kept files.
//!
//! The first blocked query of a kind (same client address and EDNS identity, protocol, name, type, list, rule
//! and action) is written at once and opens a window (`[log] coalesce`). Identical queries inside the window are
//! counted, not written; when it ends, one line stands for them: the last one's fields plus `count` and
//! `first_ts` (a single repeat is written as its own plain line). Queries further apart than the window are
//! each written as before, so a beacon's timer stays readable; intrusion detectors threshold alerts the same
//! way (Suricata's `threshold`, rsyslog's "message repeated N times").
//!
//! Repeats alone do not bound a flood of different names (random labels under a C2 domain: a DNS tunnel, or a
//! water-torture attack): each is a kind of its own. So a client's names under one rule are a family with a
//! window of its own, and past `[log] coalesce_names` names in it the rest get no line (nor window) of their own:
//! they are counted into one line for the family, with `"fold":"names"`, written when its window ends.

use super::{BlockEvent, BlockView, ConnectionEvent, Event, Folded, LineFormat, Record, line};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, SystemTime};

/// Most kinds of event tracked at once; past it, new kinds are written line by line (never lost, never held).
const MAX_SLOTS: usize = 16_384;
/// Most families (a sender's names under one rule) tracked at once; past it, a sender's new names are capped
/// together whatever their rule, and past as many senders, not capped.
const MAX_FAMILIES: usize = 16_384;
/// Most kinds of connection tracked at once (each holds up to a few KiB of request text).
const MAX_CONN_SLOTS: usize = 4_096;
/// Most time between two looks for windows that have ended.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Identical blocked queries that one line stands for: the last one's fields, how many, and when the first came.
#[derive(Debug, Clone)]
pub struct Repeated {
    pub event: BlockEvent,
    pub count: u64,
    pub first: SystemTime,
    /// The queries were of different names under one rule (a family past `coalesce_names`), not repeats.
    pub names: bool,
}

impl Record for Repeated {
    fn write_json(&self, f: &mut LineFormat, out: &mut Vec<u8>) {
        self.event.write_json(f, out);
        if self.count > 1 && out.last() == Some(&b'}') {
            out.pop();
            out.extend_from_slice(b",\"count\":");
            line::decimal(out, self.count);
            out.extend_from_slice(b",\"first_ts\":\"");
            f.time(out, self.first, 3);
            out.extend_from_slice(if self.names {
                b"\",\"fold\":\"names\"}".as_slice()
            } else {
                b"\"}"
            });
        }
    }
}

/// What to do with a blocked query's event.
pub enum Admit {
    /// Write its line now, after the line of the repeats its window held, if any.
    Write(Option<Box<Repeated>>),
    /// Held in its window; nothing to write now. `folded`: the query held before it lost its own line (it is
    /// now counted in the line this one will give), which is what `c2sink_events_coalesced_total` counts.
    Hold { folded: bool },
}

/// One kind of event whose window is open. A repeat touches only this (times as nanoseconds since the epoch,
/// so that a slot and its key share one cache line); the kind's fields, boxed, are read when the line is
/// written.
struct Slot<E> {
    opened: u64,
    until: u64,
    /// Queries held since the window opened, the first and last one's time, and the last one's port.
    count: u64,
    first: u64,
    last: u64,
    last_port: u16,
    /// The kind's fields, from its first held query.
    event: Option<Box<E>>,
}

impl<E> Slot<E> {
    fn open(t: u64, window: u64) -> Slot<E> {
        Slot {
            opened: t,
            until: t.saturating_add(window),
            count: 0,
            first: 0,
            last: 0,
            last_port: 0,
            event: None,
        }
    }

    /// Counts one event (stamped `t`, from `port`) into the window, its fields made by `make` if it is the
    /// first. Returns the count, and the fields when this event is the latest so far.
    fn count_in(&mut self, t: u64, port: u16, make: impl FnOnce() -> E) -> (u64, Option<&mut E>) {
        if self.count == 0 {
            self.event = Some(Box::new(make()));
            (self.first, self.last) = (t, t);
        }
        self.count += 1;
        self.first = self.first.min(t);
        // The line tells the last event's time and port, and the first one's time.
        if t < self.last {
            return (self.count, None);
        }
        self.last = t;
        self.last_port = port;
        (self.count, self.event.as_deref_mut())
    }

    /// What the window held: the fields, how many, the first one's time; the slot is left empty.
    fn take(&mut self) -> Option<(Box<E>, u64, SystemTime)> {
        let count = std::mem::take(&mut self.count);
        let event = self.event.take().filter(|_| count > 0)?;
        Some((event, count, at(self.first)))
    }

    fn ended(&self, t: u64, window: u64) -> bool {
        t >= self.until || t.saturating_add(window) < self.opened
    }
}

impl Slot<BlockEvent> {
    /// Counts `ev` (stamped `t`) into the window; `names`: the line tells the last query's name, not only its
    /// time and port (a family's queries are of different names). Returns the count.
    fn hold(&mut self, ev: &BlockView<'_>, t: u64, names: bool) -> u64 {
        let (count, latest) = self.count_in(t, ev.client.port(), || ev.to_event());
        if let Some(e) = latest.filter(|_| names && count > 1) {
            e.qname.clear();
            e.qname.push_str(ev.qname);
            e.qtype = ev.qtype;
            e.via = ev.via.map(Into::into);
            e.chain = ev.chain.to_vec();
        }
        count
    }

    /// What the window held, as one line's record; the slot is left empty.
    fn take_held(&mut self, names: bool) -> Option<Box<Repeated>> {
        let (last, port) = (at(self.last), self.last_port);
        let (mut event, count, first) = self.take()?;
        event.time = last;
        event.client.set_port(port);
        Some(Box::new(Repeated {
            event: *event,
            count,
            first,
            names,
        }))
    }
}

impl Slot<ConnectionEvent> {
    /// What the window held, as one line's record (with `count` and `first_ts` when more than one); the slot
    /// is left empty.
    fn take_held(&mut self) -> Option<ConnectionEvent> {
        let (last, port) = (at(self.last), self.last_port);
        let (mut event, count, first) = self.take()?;
        event.conn.time = last;
        event.conn.client.set_port(port);
        event.folded = (count > 1).then_some(Folded { count, first });
        Some(*event)
    }
}

/// A sender's names under one rule in one window: how many got a line (or a window) of their own, and the
/// queries of names past `coalesce_names`, held for one line; `varied` once two of those differ (else the
/// line is plain repeats of one name, which it folds when no slot was free for that name).
struct Family {
    names: usize,
    held: Slot<BlockEvent>,
    varied: bool,
}

impl Family {
    fn open(t: u64, window: u64) -> Family {
        Family {
            names: 0,
            held: Slot::open(t, window),
            varied: false,
        }
    }
}

/// Who a family belongs to for the names cap: the sender's address, an IPv6 one cut to its /64 (a host picks
/// any address in its subnet), never what the query says of itself (EDNS MAC or client subnet), so that no
/// client can dodge the cap by varying it.
fn sender(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// Nanoseconds since the epoch (0 before it, saturating far after it).
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn at(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// The open windows, shared by every query thread (under a lock held for one map lookup).
pub struct Repeats {
    /// In nanoseconds.
    window: u64,
    hasher: foldhash::fast::RandomState,
    /// By a keyed hash of the event's kind (random per process, so a client cannot aim collisions).
    slots: HashMap<u64, Slot<BlockEvent>, foldhash::fast::RandomState>,
    /// Connections to the sinkhole host, by a keyed hash of who connected, where, and what they sent.
    conns: HashMap<u64, Slot<ConnectionEvent>, foldhash::fast::RandomState>,
    /// Names a family may give lines of their own per window; `usize::MAX`: no cap.
    max_names: usize,
    /// By a keyed hash of the family (sender, protocol, list, rule, action).
    families: HashMap<u64, Family, foldhash::fast::RandomState>,
    /// When `families` is full: by a keyed hash of the sender alone, so a sender that spread its names over
    /// many rules first is still capped.
    senders: HashMap<u64, Family, foldhash::fast::RandomState>,
    /// When [`due`](Self::due) looks next (nanoseconds, as the slots' times).
    next_sweep: u64,
}

impl Repeats {
    /// Windows of `window` (not zero); at most `max_names` names of a client under one rule get lines of their
    /// own per window (0: no cap).
    pub fn new(window: Duration, max_names: usize) -> Repeats {
        Repeats {
            window: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            hasher: foldhash::fast::RandomState::default(),
            slots: HashMap::default(),
            max_names: if max_names == 0 {
                usize::MAX
            } else {
                max_names
            },
            families: HashMap::default(),
            senders: HashMap::default(),
            conns: HashMap::default(),
            next_sweep: 0,
        }
    }

    /// The family of `ev` for the names cap, opened if new; `None` when neither map has room.
    fn family(&mut self, ev: &BlockView<'_>, t: u64) -> Option<&mut Family> {
        let from = sender(ev.client.ip());
        let key = self.hasher.hash_one((
            from,
            ev.protocol.as_str(),
            &**ev.list,
            (ev.rule.wildcard, ev.rule.name),
            ev.action,
        ));
        let window = self.window;
        let (map, key) = if self.families.len() < MAX_FAMILIES || self.families.contains_key(&key) {
            (&mut self.families, key)
        } else {
            let key = self.hasher.hash_one(from);
            if self.senders.len() >= MAX_FAMILIES && !self.senders.contains_key(&key) {
                return None;
            }
            (&mut self.senders, key)
        };
        Some(map.entry(key).or_insert_with(|| Family::open(t, window)))
    }

    fn key(&self, ev: &BlockView<'_>) -> u64 {
        self.hasher.hash_one((
            ev.client.ip(),
            ev.who.mac.map(|m| m.0),
            ev.who.subnet,
            ev.protocol.as_str(),
            ev.qname,
            ev.qtype,
            &**ev.list,
            (ev.rule.wildcard, ev.rule.name),
            ev.action,
            ev.via,
        ))
    }

    /// Decides whether `ev` gets a line now or is counted into its open window (or its family's).
    pub fn admit(&mut self, ev: &BlockView<'_>) -> Admit {
        let key = self.key(ev);
        let t = nanos(ev.time);
        if let Some(s) = self.slots.get_mut(&key) {
            // Query threads read the clock before taking the lock, so a query may be stamped a little before
            // the one that opened the window; only a clock stepped back by more than a window ends it.
            if !s.ended(t, self.window) {
                // The key is a 64-bit hash keyed at random per process: two kinds under one key are not a
                // case to pay a comparison for on every repeat.
                let count = s.hold(ev, t, false);
                return Admit::Hold { folded: count > 1 };
            }
            // The window is over: what it held is written before this query, which opens the next one.
            let held = s.take_held(false);
            *s = Slot::open(t, self.window);
            return Admit::Write(held);
        }
        self.admit_new(ev, key, t)
    }

    /// [`admit`](Self::admit) for a kind with no open window: one more name of its family's. Out of line, so
    /// that a repeat, by far the most common case, runs only the lines above.
    #[inline(never)]
    fn admit_new(&mut self, ev: &BlockView<'_>, key: u64, t: u64) -> Admit {
        let mut ended = None;
        let (window, max_names) = (self.window, self.max_names);
        if max_names != usize::MAX
            && let Some(f) = self.family(ev, t)
        {
            if f.held.ended(t, window) {
                ended = f.held.take_held(f.varied);
                *f = Family::open(t, window);
            }
            f.names += 1;
            // Past the cap (never the first name of a window, so nothing ended is lost here).
            if f.names > max_names {
                f.varied |= f.held.event.as_ref().is_some_and(|e| e.qname != ev.qname);
                let count = f.held.hold(ev, t, true);
                return Admit::Hold { folded: count > 1 };
            }
        }
        if self.slots.len() < MAX_SLOTS {
            self.slots.insert(key, Slot::open(t, window));
        }
        Admit::Write(ended)
    }

    /// Folds a connection to the sinkhole host into its window as a blocked query's repeats are (a client
    /// retrying in a loop): returns the lines to write now, in order (a window that ended first), and whether
    /// a connection lost its own line. Windows go by `now`, when the trap is done with the connection: a
    /// silent one is stamped when accepted but done only after `read_timeout_ms`, longer than a window.
    pub fn admit_connection(
        &mut self,
        ev: ConnectionEvent,
        now: SystemTime,
    ) -> (Vec<ConnectionEvent>, bool) {
        let c = &ev.conn;
        let key = self.hasher.hash_one((
            c.client.ip(),
            ev.who.mac.map(|m| m.0),
            c.port,
            c.seen,
            &c.sni,
            &c.host,
            &c.method,
            &c.path,
        ));
        let (t, done) = (nanos(c.time), nanos(now));
        let window = self.window;
        if let Some(s) = self.conns.get_mut(&key) {
            if !s.ended(done, window) {
                let port = c.client.port();
                let (count, _) = s.count_in(t, port, || ev);
                return (Vec::new(), count > 1);
            }
            let held = s.take_held();
            *s = Slot::open(done, window);
            return (held.into_iter().chain([ev]).collect(), false);
        }
        if self.conns.len() < MAX_CONN_SLOTS {
            self.conns.insert(key, Slot::open(done, window));
        }
        (vec![ev], false)
    }

    /// The held repeats of windows ended by `now` (of every window when `all`, at shutdown), oldest first;
    /// ended windows are forgotten. Looks at most every [`SWEEP_EVERY`] unless `all`.
    pub fn due(&mut self, now: SystemTime, all: bool) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        let t = nanos(now);
        // A clock stepped back by more than the sweep period must not stop the sweeps until it catches up.
        if !all
            && t < self.next_sweep
            && t.saturating_add(SWEEP_EVERY.as_nanos() as u64) >= self.next_sweep
        {
            return out;
        }
        self.next_sweep = t.saturating_add(SWEEP_EVERY.as_nanos() as u64);
        let window = self.window;
        self.slots.retain(|_, s| {
            let ended = all || s.ended(t, window);
            if ended {
                out.extend(s.take_held(false).map(Event::Repeated));
            }
            !ended
        });
        for families in [&mut self.families, &mut self.senders] {
            families.retain(|_, f| {
                let ended = all || f.held.ended(t, window);
                if ended {
                    out.extend(f.held.take_held(f.varied).map(Event::Repeated));
                }
                !ended
            });
        }
        self.conns.retain(|_, s| {
            let ended = all || s.ended(t, window);
            if ended {
                out.extend(s.take_held().map(Event::Connection));
            }
            !ended
        });
        out.sort_by_key(|e| match e {
            Event::Repeated(r) => r.first,
            Event::Connection(c) => c.folded.as_ref().map_or(c.conn.time, |f| f.first),
            Event::Block(b) => b.time,
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{Attribution, Mac};
    use crate::events::{Protocol, RuleText};
    use std::sync::Arc;

    fn view<'a>(
        list: &'a Arc<str>,
        who: &'a Attribution,
        client: &str,
        qname: &'a str,
        at_ms: u64,
    ) -> BlockView<'a> {
        BlockView {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + at_ms),
            client: client.parse().unwrap(),
            protocol: Protocol::Udp,
            qname,
            qtype: 1,
            list,
            rule: RuleText {
                wildcard: false,
                name: "msstorageazure.com",
            },
            action: "nxdomain",
            who,
            via: None,
            chain: &[],
        }
    }

    /// The block lines among `due`'s.
    fn repeated(lines: Vec<Event>) -> Vec<Repeated> {
        lines
            .into_iter()
            .map(|e| match e {
                Event::Repeated(r) => *r,
                _ => panic!("only block lines were expected"),
            })
            .collect()
    }

    fn held(a: Admit) -> Option<Option<Box<Repeated>>> {
        match a {
            Admit::Hold { .. } => None,
            Admit::Write(r) => Some(r),
        }
    }

    #[test]
    fn repeats_inside_the_window_are_counted_and_come_out_as_one_line() {
        let list: Arc<str> = "3cx".into();
        let who = Attribution::default();
        let mut r = Repeats::new(Duration::from_secs(1), 0);
        let q = "cdn.msstorageazure.com";
        // The first is written; the next three (other source ports) are held.
        assert!(matches!(
            held(r.admit(&view(&list, &who, "10.0.0.5:1000", q, 0))),
            Some(None)
        ));
        for (i, at) in [100, 400, 900].into_iter().enumerate() {
            let port = 2000 + i;
            assert!(
                held(r.admit(&view(&list, &who, &format!("10.0.0.5:{port}"), q, at))).is_none()
            );
        }
        // Another client and another name are kinds of their own.
        assert!(held(r.admit(&view(&list, &who, "10.0.0.6:1000", q, 500))).is_some());
        assert!(
            held(r.admit(&view(
                &list,
                &who,
                "10.0.0.5:1000",
                "x.msstorageazure.com",
                500
            )))
            .is_some()
        );
        // Nothing has ended yet.
        let before = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_999);
        assert!(r.due(before, false).is_empty());
        let after = before + SWEEP_EVERY;
        let mut due = repeated(r.due(after, false));
        assert_eq!(due.len(), 1);
        let rep = due.remove(0);
        assert_eq!(rep.count, 3);
        assert_eq!(rep.event.client.port(), 2002, "the last repeat's fields");
        let mut f = LineFormat::default();
        let mut out = Vec::new();
        rep.write_json(&mut f, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["count"], 3);
        assert_eq!(v["first_ts"], "2027-01-15T08:00:00.100Z");
        assert_eq!(v["ts"], "2027-01-15T08:00:00.900Z");
        assert_eq!(v["qname"], q);
        // The ended window was forgotten (the two opened at 0.5 s are still open): the next query is written.
        assert_eq!(r.slots.len(), 2);
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:1000", q, 1500))).is_some());
    }

    #[test]
    fn a_query_after_the_window_brings_out_the_held_line_first() {
        let list: Arc<str> = "3cx".into();
        let who = Attribution::default();
        let mut r = Repeats::new(Duration::from_secs(1), 0);
        let q = "sbmsa.wiki";
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:1", q, 0))).is_some());
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:2", q, 300))).is_none());
        // Before any sweep: the next query's own line comes after the held one, which alone is a plain line.
        let Some(Some(rep)) = held(r.admit(&view(&list, &who, "10.0.0.5:3", q, 1200))) else {
            panic!("the held repeat should come out with the next line");
        };
        assert_eq!(rep.count, 1);
        let mut out = Vec::new();
        rep.write_json(&mut LineFormat::default(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("count").is_none(), "{v}");
        assert_eq!(v["client_port"], 2);
        // The query at 1.2 s opened a new window.
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:4", q, 1300))).is_none());
        // At shutdown every held line comes out, ended or not.
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_001_301);
        assert!(r.due(at, false).is_empty());
        assert_eq!(r.due(at, true).len(), 1);
    }

    #[test]
    fn queries_stamped_out_of_order_by_racing_threads_stay_in_one_window() {
        let list: Arc<str> = "3cx".into();
        let who = Attribution::default();
        let mut r = Repeats::new(Duration::from_secs(1), 0);
        let q = "sbmsa.wiki";
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:1", q, 500))).is_some());
        // Stamped before the query that opened the window (another thread read the clock first).
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:2", q, 499))).is_none());
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:3", q, 700))).is_none());
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:4", q, 650))).is_none());
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_001_500);
        let due = repeated(r.due(at, false));
        assert_eq!(due.len(), 1);
        let rep = &due[0];
        assert_eq!(rep.count, 3);
        let ms = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                - 1_800_000_000_000
        };
        assert_eq!((ms(rep.first), ms(rep.event.time)), (499, 700));
        assert_eq!(rep.event.client.port(), 3, "the last query's port");
    }

    #[test]
    fn machines_behind_one_router_are_not_merged() {
        let list: Arc<str> = "3cx".into();
        let a = Attribution {
            mac: Some(Mac([2, 0, 0, 0, 0, 1])),
            ..Attribution::default()
        };
        let b = Attribution {
            mac: Some(Mac([2, 0, 0, 0, 0, 2])),
            ..Attribution::default()
        };
        let mut r = Repeats::new(Duration::from_secs(10), 0);
        let q = "sbmsa.wiki";
        assert!(held(r.admit(&view(&list, &a, "10.0.0.1:1", q, 0))).is_some());
        assert!(held(r.admit(&view(&list, &b, "10.0.0.1:2", q, 10))).is_some());
        assert!(held(r.admit(&view(&list, &a, "10.0.0.1:3", q, 20))).is_none());
    }

    #[test]
    fn past_the_names_cap_a_clients_names_under_one_rule_become_one_line() {
        let list: Arc<str> = "3cx".into();
        let who = Attribution::default();
        let mut r = Repeats::new(Duration::from_secs(1), 3);
        let names: Vec<String> = (0..10)
            .map(|i| format!("x{i}.msstorageazure.com"))
            .collect();
        let mut folded = 0;
        for (i, n) in names.iter().enumerate() {
            match r.admit(&view(&list, &who, "10.0.0.5:1000", n, i as u64)) {
                Admit::Write(held) => {
                    assert!(held.is_none());
                    assert!(i < 3, "name {i} past the cap got a line");
                }
                Admit::Hold { folded: f } => {
                    assert!(i >= 3, "name {i} within the cap was held");
                    folded += usize::from(f);
                }
            }
        }
        // The first of the seven held stands in the line; six lost their own line.
        assert_eq!(folded, 6);
        // Another client, and the same client under another rule, are families of their own.
        assert!(held(r.admit(&view(&list, &who, "10.0.0.6:1000", &names[9], 10))).is_some());
        let mut other = view(&list, &who, "10.0.0.5:1000", "sbmsa.wiki", 11);
        other.rule.name = "sbmsa.wiki";
        assert!(held(r.admit(&other)).is_some());
        // A repeat of a name that got its line is a repeat, as before.
        assert!(held(r.admit(&view(&list, &who, "10.0.0.5:1001", &names[0], 20))).is_none());

        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_001_100);
        let due = repeated(r.due(at, false));
        assert_eq!(due.len(), 2, "the repeat's line and the family's");
        let fam = due.iter().find(|d| d.names).expect("a line for the family");
        assert_eq!(fam.count, 7);
        let mut out = Vec::new();
        fam.write_json(&mut LineFormat::default(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["fold"], "names");
        assert_eq!(v["count"], 7);
        assert_eq!(v["qname"], "x9.msstorageazure.com", "the last name");
        assert_eq!(v["rule"], "msstorageazure.com");
        assert_eq!(v["first_ts"], "2027-01-15T08:00:00.003Z");
        assert_eq!(v["ts"], "2027-01-15T08:00:00.009Z");
        let rep = due.iter().find(|d| !d.names).unwrap();
        out.clear();
        rep.write_json(&mut LineFormat::default(), &mut out);
        assert!(!String::from_utf8_lossy(&out).contains("fold"));

        // The family's next window gives names their lines again.
        assert!(
            held(r.admit(&view(
                &list,
                &who,
                "10.0.0.5:1000",
                "y.msstorageazure.com",
                1200
            )))
            .is_some()
        );
        assert!(r.families.len() <= 3);
    }

    #[test]
    fn a_family_window_that_ended_comes_out_before_the_next_name() {
        let list: Arc<str> = "3cx".into();
        let who = Attribution::default();
        let mut r = Repeats::new(Duration::from_secs(1), 1);
        assert!(
            held(r.admit(&view(&list, &who, "10.0.0.5:1", "a.msstorageazure.com", 0))).is_some()
        );
        assert!(
            held(r.admit(&view(&list, &who, "10.0.0.5:2", "b.msstorageazure.com", 10))).is_none()
        );
        assert!(
            held(r.admit(&view(&list, &who, "10.0.0.5:3", "c.msstorageazure.com", 20))).is_none()
        );
        // No sweep in between: the next new name, after the window, brings the family's line with it.
        let Some(Some(rep)) = held(r.admit(&view(
            &list,
            &who,
            "10.0.0.5:4",
            "d.msstorageazure.com",
            1500,
        ))) else {
            panic!("the family's held line should come out with the next name");
        };
        assert!(rep.names);
        assert_eq!(rep.count, 2);
        assert_eq!(rep.event.qname, "c.msstorageazure.com");
        assert_eq!(rep.event.client.port(), 3);
    }

    fn conn(client: &str, at_ms: u64, path: &str) -> ConnectionEvent {
        ConnectionEvent::new(
            crate::trap::Connection {
                time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + at_ms),
                client: client.parse().unwrap(),
                port: 80,
                seen: "http",
                sni: None,
                host: Some("sbmsa.wiki".into()),
                method: Some("GET".into()),
                path: Some(path.into()),
            },
            crate::clients::Identity::default(),
        )
    }

    /// Admits `c` as the trap is done with it at once.
    fn admit(r: &mut Repeats, c: ConnectionEvent) -> (Vec<ConnectionEvent>, bool) {
        let now = c.conn.time;
        r.admit_connection(c, now)
    }

    #[test]
    fn a_client_reconnecting_in_a_loop_gets_one_line_for_its_repeats() {
        let mut r = Repeats::new(Duration::from_secs(1), 100);
        let (now, folded) = admit(&mut r, conn("10.0.0.5:1000", 0, "/blog"));
        assert_eq!((now.len(), folded), (1, false));
        let mut lost = 0;
        for i in 1..=4u16 {
            let (now, folded) = admit(
                &mut r,
                conn(
                    &format!("10.0.0.5:{}", 1000 + i),
                    u64::from(i) * 100,
                    "/blog",
                ),
            );
            assert!(now.is_empty());
            lost += usize::from(folded);
        }
        assert_eq!(lost, 3, "the first held stands in the line");
        // Another path, or another client, is a line of its own.
        assert_eq!(
            admit(&mut r, conn("10.0.0.5:2000", 450, "/other")).0.len(),
            1
        );
        assert_eq!(
            admit(&mut r, conn("10.0.0.6:2000", 450, "/blog")).0.len(),
            1
        );
        // After the window: the held line first, then the new connection's.
        let (now, _) = admit(&mut r, conn("10.0.0.5:3000", 1200, "/blog"));
        assert_eq!(now.len(), 2);
        let held = now[0].folded.expect("the held line counts its connections");
        assert_eq!(held.count, 4);
        assert_eq!(
            held.first,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_100)
        );
        assert_eq!(now[0].conn.client.port(), 1004, "the last one's port");
        assert!(now[1].folded.is_none());
        let mut out = Vec::new();
        Event::Connection(now[0].clone()).write_json(&mut LineFormat::default(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["count"], 4);
        assert_eq!(v["first_ts"], "2027-01-15T08:00:00.100Z");
        assert_eq!(v["ts"], "2027-01-15T08:00:00.400Z");
        assert_eq!(v["path"], "/blog");
        // A single held connection comes out at shutdown as a plain line.
        admit(&mut r, conn("10.0.0.5:3001", 1300, "/blog"));
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_001_301);
        let due = r.due(at, true);
        assert_eq!(due.len(), 1);
        assert!(matches!(&due[0], Event::Connection(c) if c.folded.is_none()));
    }

    /// [`view`] under another rule.
    fn view_under<'a>(
        list: &'a Arc<str>,
        who: &'a Attribution,
        client: &str,
        qname: &'a str,
        rule: &'a str,
        at_ms: u64,
    ) -> BlockView<'a> {
        let mut v = view(list, who, client, qname, at_ms);
        v.rule.name = rule;
        v
    }

    /// How many of `names` under `c2.example` get a line of their own, each asked as `vary(i)` makes it.
    fn lines_for_a_flood(r: &mut Repeats, vary: impl Fn(u32) -> (Attribution, String)) -> usize {
        let list: Arc<str> = "3cx".into();
        let mut written = 0;
        for i in 0..1000u32 {
            let (who, client) = vary(i);
            let n = format!("r{i}.c2.example");
            if let Admit::Write(_) =
                r.admit(&view_under(&list, &who, &client, &n, "c2.example", 600))
            {
                written += 1;
            }
        }
        written
    }

    #[test]
    fn a_sender_that_opened_every_family_it_may_is_still_capped() {
        let list: Arc<str> = "big".into();
        let who = Attribution::default();
        let mut r = Repeats::new(Duration::from_secs(1), 5);
        // One name under each of as many rules as families may be tracked (a big list has that many) ...
        let rules: Vec<String> = (0..MAX_FAMILIES)
            .map(|i| format!("rule{i}.example"))
            .collect();
        for (i, rule) in rules.iter().enumerate() {
            let q = format!("a.{rule}");
            let _ = r.admit(&view_under(
                &list,
                &who,
                "10.0.0.5:1000",
                &q,
                rule,
                i as u64 % 500,
            ));
        }
        // ... then a flood under one more rule.
        let written =
            lines_for_a_flood(&mut r, |_| (Attribution::default(), "10.0.0.5:1000".into()));
        assert_eq!(
            written, 5,
            "the sender is capped across rules once the families are full"
        );
    }

    #[test]
    fn what_a_query_says_of_itself_cannot_dodge_the_cap() {
        // A made-up client subnet (believed from any sender while `edns_from` is empty) on every query.
        let mut r = Repeats::new(Duration::from_secs(1), 5);
        let written = lines_for_a_flood(&mut r, |i| {
            let who = Attribution {
                subnet: Some((IpAddr::from([10, (i >> 8) as u8, i as u8, 0]), 24)),
                ..Attribution::default()
            };
            (who, "10.0.0.5:1000".into())
        });
        assert_eq!(written, 5);
        // A new source address for every query, all in one IPv6 /64.
        let mut r = Repeats::new(Duration::from_secs(1), 5);
        let written = lines_for_a_flood(&mut r, |i| {
            (Attribution::default(), format!("[fd00::{:x}]:1000", i + 1))
        });
        assert_eq!(written, 5);
        // Another /64 is another sender.
        let list: Arc<str> = "3cx".into();
        let who = Attribution::default();
        let other = view_under(
            &list,
            &who,
            "[fd00:0:0:1::1]:1000",
            "x.c2.example",
            "c2.example",
            600,
        );
        assert!(held(r.admit(&other)).is_some());
    }

    #[test]
    fn repeats_of_one_name_past_the_cap_are_not_called_many_names() {
        // With every slot taken, each repeat of a name is new to the map: it counts as a name of its family.
        let list: Arc<str> = "3cx".into();
        let who = Attribution::default();
        let mut r = Repeats::new(Duration::from_secs(1), 3);
        let names: Vec<String> = (0..MAX_SLOTS)
            .map(|i| format!("n{i}.fill.example"))
            .collect();
        for (i, n) in names.iter().enumerate() {
            let c = format!("10.1.{}.{}:1", ((i / 3) >> 8) as u8, (i / 3) as u8);
            let _ = r.admit(&view_under(&list, &who, &c, n, "fill.example", 0));
        }
        assert_eq!(r.slots.len(), MAX_SLOTS);
        for i in 0..10 {
            let _ = r.admit(&view_under(
                &list,
                &who,
                "10.0.0.5:1",
                "one.c2.example",
                "c2.example",
                10 + i,
            ));
        }
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_002_000);
        let due: Vec<Repeated> = repeated(r.due(at, false))
            .into_iter()
            .filter(|r| r.event.qname == "one.c2.example")
            .collect();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 7);
        assert!(!due[0].names, "repeats of one name, not many names");
    }

    #[test]
    fn a_clock_stepped_back_does_not_stop_the_sweeps() {
        let list: Arc<str> = "3cx".into();
        let who = Attribution::default();
        let mut r = Repeats::new(Duration::from_secs(1), 100);
        let base = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000);
        assert!(r.due(base + Duration::from_secs(3600), false).is_empty());
        // The clock steps back an hour; a repeat is held ...
        for (port, at) in [(1, 0), (2, 10), (3, 20)] {
            let _ = r.admit(&view(
                &list,
                &who,
                &format!("10.0.0.5:{port}"),
                "a.c2.example",
                at,
            ));
        }
        // ... and written once its window ends, not an hour later.
        assert_eq!(r.due(base + Duration::from_secs(10), false).len(), 1);
    }

    #[test]
    fn silent_connections_done_after_the_read_timeout_still_fold() {
        let mut r = Repeats::new(Duration::from_secs(1), 100);
        let ms = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms);
        let mut lines = 0;
        // A connection every 200 ms that sends nothing: the trap is done with each 5 s after accepting it.
        for k in 0..20u64 {
            let mut c = conn("10.0.0.5:1000", k * 200, "/");
            (c.conn.seen, c.conn.host, c.conn.method, c.conn.path) = ("unknown", None, None, None);
            lines += r.admit_connection(c, ms(k * 200 + 5000)).0.len();
            lines += r.due(ms(k * 200 + 5050), false).len();
            lines += r.due(ms(k * 200 + 5150), false).len();
        }
        lines += r.due(ms(10_000), true).len();
        // 3.8 s of connections: four windows of a second, each a line at once and one for its repeats.
        assert_eq!(lines, 8, "20 identical connections 200 ms apart");
    }
}
