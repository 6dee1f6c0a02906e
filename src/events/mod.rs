//! Block events (the admin's evidence of an infected machine, one JSON line per blocked query) and the optional
//! full query log (one JSON line per query, for retro-hunts).
//!
//! The query path formats its record's line into a bounded buffer (no I/O, no waiting beyond a short lock);
//! one writer thread per log swaps the buffer out and writes it in one go, so lines are never interleaved or
//! cut and a slow or failing disk never slows answering. When the buffer is full or the disk fails, records
//! are counted as dropped and the problem is logged once (and its end once). File logs rotate and reopen ([`logfile`]); events can go to syslog too.

pub mod line;
pub mod logfile;
pub mod repeats;
pub mod syslog;

pub use line::LineFormat;
pub use logfile::{LogFile, Rotation};
pub use repeats::Repeated;
use repeats::{Admit, Repeats};
pub use syslog::{Syslog, SyslogTarget};

use crate::clients::{Attribution, Identity};
use crate::config::{Config, EventSink, parse_size};
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

/// Pause after each written batch, so that a burst of records is written in one go.
const BURST_PAUSE: Duration = Duration::from_millis(10);
/// Most bytes of lines that may wait for the writer before new records are dropped (about 65,000 block lines).
const QUEUE_BYTES: usize = 16 << 20;
/// Most bytes written by one `write()` (a batch that grew larger while the writer was behind is split).
const WRITE_BYTES: usize = 1 << 20;
/// How often an idle writer wakes to sync, rotate by age and honour `reopen`.
const TICK: Duration = Duration::from_secs(1);

/// How a client reached c2sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
    /// DNS over TLS (port 853).
    Dot,
    /// DNS over HTTPS.
    Doh,
}

impl Protocol {
    /// The name written in logs (the same as its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Dot => "dot",
            Protocol::Doh => "doh",
        }
    }
}

/// One blocked query, as captured on the query path.
#[derive(Debug, Clone)]
pub struct BlockEvent {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub protocol: Protocol,
    pub qname: String,
    pub qtype: u16,
    pub list: Arc<str>,
    pub rule: Box<str>,
    pub action: &'static str,
    /// The machine behind `client` when the query arrived.
    pub who: Attribution,
    /// When the answer, not the question, was blocked: the CNAME/HTTPS target that matched.
    pub via: Option<Box<str>>,
    /// The names the answer pointed at, in order (only with `via`).
    pub chain: Vec<String>,
}

/// A line of the event log: a blocked query, its repeats folded into one line, or a connection to the
/// sinkhole host.
pub enum Event {
    Block(BlockEvent),
    Repeated(Box<Repeated>),
    Connection(ConnectionEvent),
}

/// A machine connected to the sinkhole host: it did not just look up a C2 name, it tried to talk to it.
#[derive(Debug, Clone)]
pub struct ConnectionEvent {
    pub conn: crate::trap::Connection,
    pub who: Identity,
    /// On a line that folds a client's identical connections (`[log] coalesce`): how many, and the first's time.
    pub folded: Option<Folded>,
}

impl ConnectionEvent {
    /// One connection, as the trap saw it.
    pub fn new(conn: crate::trap::Connection, who: Identity) -> ConnectionEvent {
        ConnectionEvent {
            conn,
            who,
            folded: None,
        }
    }
}

/// How many events one line stands for, and when the first of them came (the line's `ts` is the last one's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    pub count: u64,
    pub first: SystemTime,
}

/// The JSON line written for a connection event.
#[derive(Serialize)]
struct ConnectionLine<'a> {
    ts: String,
    kind: &'static str,
    client_ip: String,
    client_port: u16,
    client_mac: Option<String>,
    client_hostname: Option<&'a str>,
    protocol: &'static str,
    #[serde(flatten)]
    conn: &'a crate::trap::Connection,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_ts: Option<String>,
}

impl Record for Event {
    fn write_json(&self, f: &mut LineFormat, out: &mut Vec<u8>) {
        match self {
            Event::Block(b) => b.write_json(f, out),
            Event::Repeated(r) => r.write_json(f, out),
            Event::Connection(c) => {
                // Rare (one per connection to the sinkhole host): serde is fine here.
                let line = ConnectionLine {
                    ts: humantime::format_rfc3339_millis(c.conn.time).to_string(),
                    kind: "connection",
                    client_ip: c.conn.client.ip().to_canonical().to_string(),
                    client_port: c.conn.client.port(),
                    client_mac: c.who.mac.map(|m| m.to_string()),
                    client_hostname: c.who.hostname.as_deref(),
                    protocol: "tcp",
                    conn: &c.conn,
                    count: c.folded.map(|f| f.count),
                    first_ts: c
                        .folded
                        .map(|f| humantime::format_rfc3339_millis(f.first).to_string()),
                };
                match serde_json::to_vec(&line) {
                    Ok(v) => out.extend_from_slice(&v),
                    Err(e) => {
                        out.extend_from_slice(b"{\"error\":");
                        line::display(out, e);
                        out.push(b'}');
                    }
                }
            }
        }
    }
}

/// Something a log writer turns into one JSON line.
pub trait Record: Send + 'static {
    /// Appends the record as one JSON line (no newline) to `out`.
    fn write_json(&self, f: &mut LineFormat, out: &mut Vec<u8>);
}

/// The fields every line starts with: time, kind, and who sent it (through `client_hostname`). Fixed text
/// is written in whole runs: one copy per run, not one per key.
fn write_head(
    f: &mut LineFormat,
    out: &mut Vec<u8>,
    (time, digits): (SystemTime, u32),
    kind: &'static [u8],
    client: SocketAddr,
    mac: Option<crate::clients::Mac>,
    hostname: Option<&str>,
) {
    out.extend_from_slice(b"{\"ts\":\"");
    f.time(out, time, digits);
    out.extend_from_slice(kind);
    line::client_ip_and_port(out, client);
    out.extend_from_slice(b",\"client_mac\":");
    match mac {
        Some(m) => line::display(out, m),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"client_hostname\":");
    line::opt_str(out, hostname);
}

/// `client_subnet`, only when the query carried EDNS Client Subnet.
fn write_subnet(out: &mut Vec<u8>, subnet: Option<(std::net::IpAddr, u8)>) {
    if let Some((a, p)) = subnet {
        out.extend_from_slice(b",\"client_subnet\":");
        line::display(out, format_args!("{a}/{p}"));
    }
}

/// `protocol`, `qname` and `qtype`, up to the closing quote of the type name.
fn write_question(out: &mut Vec<u8>, protocol: Protocol, qname: &str, qtype: u16) {
    out.extend_from_slice(b",\"protocol\":\"");
    out.extend_from_slice(protocol.as_str().as_bytes());
    out.extend_from_slice(b"\",\"qname\":");
    line::string(out, qname);
    out.extend_from_slice(b",\"qtype\":\"");
    // Type names are plain ASCII: nothing to escape.
    out.extend_from_slice(crate::wire::type_name(qtype).as_bytes());
}

/// The rule that matched, as a list writes it: `*.name` for a wildcard. Kept as parts so that a blocked query
/// never builds the text.
#[derive(Debug, Clone, Copy)]
pub struct RuleText<'a> {
    pub wildcard: bool,
    pub name: &'a str,
}

impl RuleText<'_> {
    fn prefix(self) -> &'static str {
        if self.wildcard { "*." } else { "" }
    }
}

/// A blocked query as the query path sees it, borrowing its names: formatting it needs no allocation, and the
/// owned [`BlockEvent`] is built only when a tap (alerts) wants the record itself.
pub struct BlockView<'a> {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub protocol: Protocol,
    pub qname: &'a str,
    pub qtype: u16,
    pub list: &'a Arc<str>,
    pub rule: RuleText<'a>,
    pub action: &'static str,
    pub who: &'a Attribution,
    pub via: Option<&'a str>,
    pub chain: &'a [String],
}

impl BlockView<'_> {
    fn to_event(&self) -> BlockEvent {
        BlockEvent {
            time: self.time,
            client: self.client,
            protocol: self.protocol,
            qname: self.qname.to_owned(),
            qtype: self.qtype,
            list: Arc::clone(self.list),
            rule: format!("{}{}", self.rule.prefix(), self.rule.name).into(),
            action: self.action,
            who: self.who.clone(),
            via: self.via.map(Into::into),
            chain: self.chain.to_vec(),
        }
    }

    fn write_json(&self, f: &mut LineFormat, out: &mut Vec<u8>) {
        out.reserve(320 + self.qname.len() + self.rule.name.len() + self.list.len());
        write_head(
            f,
            out,
            (self.time, 3),
            b"\",\"kind\":\"block\",\"client_ip\":",
            self.client,
            self.who.mac,
            self.who.hostname.as_deref(),
        );
        write_subnet(out, self.who.subnet);
        write_question(out, self.protocol, self.qname, self.qtype);
        out.extend_from_slice(b"\",\"list\":");
        line::string(out, self.list);
        out.extend_from_slice(b",\"rule\":");
        line::prefixed_string(out, self.rule.prefix(), self.rule.name);
        // Actions are c2sink's own fixed words: nothing to escape.
        debug_assert!(!self.action.contains(['"', '\\']));
        out.extend_from_slice(b",\"action\":\"");
        out.extend_from_slice(self.action.as_bytes());
        out.push(b'"');
        if let Some(via) = self.via {
            out.extend_from_slice(b",\"via\":");
            line::string(out, via);
        }
        if !self.chain.is_empty() {
            out.extend_from_slice(b",\"chain\":[");
            for (i, c) in self.chain.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                line::string(out, c);
            }
            out.push(b']');
        }
        out.push(b'}');
    }
}

impl Record for BlockEvent {
    fn write_json(&self, f: &mut LineFormat, out: &mut Vec<u8>) {
        BlockView {
            time: self.time,
            client: self.client,
            protocol: self.protocol,
            qname: &self.qname,
            qtype: self.qtype,
            list: &self.list,
            rule: RuleText {
                wildcard: false,
                name: &self.rule,
            },
            action: self.action,
            who: &self.who,
            via: self.via.as_deref(),
            chain: &self.chain,
        }
        .write_json(f, out);
    }
}

impl BlockEvent {
    /// The event as one JSON line (no newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut LineFormat::default(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// What happened to a query, for the query log (the same outcomes the metrics count).
pub use crate::telemetry::Outcome;

/// One query of the full query log.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub protocol: Protocol,
    pub qname: String,
    pub qtype: u16,
    pub outcome: Outcome,
    pub latency_us: u64,
    /// As block events name it, client subnet included: `hunt` pairs a query's two lines and tells machines
    /// behind one router apart by it.
    pub who: Attribution,
    /// What the answer pointed at (CNAME, DNAME, HTTPS/SVCB targets), written as `chain` when there is any.
    pub chain: Option<std::sync::Arc<crate::wire::Inspect>>,
}

impl Record for QueryRecord {
    fn write_json(&self, f: &mut LineFormat, out: &mut Vec<u8>) {
        out.reserve(256 + self.qname.len());
        write_head(
            f,
            out,
            (self.time, 6),
            b"\",\"kind\":\"query\",\"client_ip\":",
            self.client,
            self.who.mac,
            self.who.hostname.as_deref(),
        );
        write_subnet(out, self.who.subnet);
        write_question(out, self.protocol, &self.qname, self.qtype);
        out.extend_from_slice(b"\",\"outcome\":\"");
        out.extend_from_slice(self.outcome.as_str().as_bytes());
        out.extend_from_slice(b"\",\"latency_us\":");
        line::decimal(out, self.latency_us);
        if let Some(chain) = self.chain.as_ref().filter(|c| !c.targets.is_empty()) {
            out.extend_from_slice(b",\"chain\":[");
            for (i, t) in chain.targets.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                line::string(out, t);
            }
            out.push(b']');
        }
        out.push(b'}');
    }
}

/// The `ts` value a line starts with (the first field of every line), for the syslog header.
fn line_ts(line: &[u8]) -> &str {
    line.strip_prefix(b"{\"ts\":\"")
        .and_then(|r| r.iter().position(|&b| b == b'"').map(|n| &r[..n]))
        .and_then(|t| std::str::from_utf8(t).ok())
        .unwrap_or("-")
}

/// The `kind` value of a line (`block`, `connection`, `query`), the syslog MSGID a collector filters on.
fn line_kind(line: &[u8]) -> &str {
    const KEY: &[u8] = b"\"kind\":\"";
    line.windows(KEY.len())
        .position(|w| w == KEY)
        .map(|at| &line[at + KEY.len()..])
        .and_then(|r| r.iter().position(|&b| b == b'"').map(|n| &r[..n]))
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| !k.is_empty() && k.len() <= 32 && k.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("event")
}

/// A callback that sees each record on the writer thread (alerts watch block events this way).
pub type Tap<T> = Box<dyn FnMut(&T) + Send>;

/// Called by a writer on each round with the time and whether the log is closing: records that are due
/// although nobody recorded them just now (folded repeats whose window ended).
type Sweep<T> = Box<dyn FnMut(SystemTime, bool) -> Vec<T> + Send>;

/// Counters of one log, for metrics and logs.
#[derive(Default)]
pub struct EventStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    /// Blocked queries and trap connections that have no line of their own: a line with `count` N stands for
    /// N-1 of them too.
    pub coalesced: AtomicU64,
    /// Syslog messages that could not be sent.
    pub syslog_failed: AtomicU64,
    full_logged: AtomicBool,
}

/// Where a writer puts lines.
enum Output {
    Stdout,
    /// Boxed: the file's state is several times the size of the other variant.
    File(Box<LogFile>),
}

/// One log: lines formatted by whoever records them, and the thread that writes them.
///
/// A record becomes its line at once, on the recording thread, into a buffer the writer swaps out whole: no
/// record crosses threads (so none is freed on another thread's heap), and the writer only writes. Measured
/// against a queue of records formatted by the writer: docs/performance.md.
struct Journal<T: Record> {
    queue: Arc<Queue<T>>,
    writer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<EventStats>,
    reopen: Arc<AtomicBool>,
    what: &'static str,
}

/// Lines waiting for the writer.
struct Queue<T> {
    pending: Mutex<Pending<T>>,
    ready: Condvar,
    /// Whether the records themselves are kept for the writer (only a tap needs them).
    keep_records: bool,
}

/// The buffer recorders append to and the writer swaps out.
struct Pending<T> {
    bytes: Vec<u8>,
    lines: u64,
    records: Vec<T>,
    format: LineFormat,
    /// The writer waits for a first line (a notify is needed only then).
    waiting: bool,
    closed: bool,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, Pending<T>> {
        // Formatting a line cannot leave the buffer half-changed in a way the writer could not write.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Record> Journal<T> {
    fn start(
        what: &'static str,
        out: Output,
        syslog: Option<Syslog>,
        tap: Option<Tap<T>>,
        sweep: Option<Sweep<T>>,
    ) -> std::io::Result<Journal<T>> {
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                lines: 0,
                records: Vec::new(),
                format: LineFormat::default(),
                waiting: false,
                closed: false,
            }),
            ready: Condvar::new(),
            keep_records: tap.is_some(),
        });
        let stats = Arc::new(EventStats::default());
        let reopen = Arc::new(AtomicBool::new(false));
        let mut w = Writer {
            out,
            syslog,
            tap,
            sweep,
            format: LineFormat::default(),
            stats: stats.clone(),
            reopen: reopen.clone(),
            what,
            failing: false,
            dropped_at_failure: 0,
        };
        let q = queue.clone();
        let writer = std::thread::Builder::new()
            .name(format!("c2sink-{what}"))
            .spawn(move || {
                // On a busy core a waking query thread preempts a batch being written.
                crate::sched::background_thread();
                w.run(&q)
            })?;
        Ok(Journal {
            queue,
            writer: Some(writer),
            stats,
            reopen,
            what,
        })
    }

    fn record(&self, r: T) {
        self.push(|f, out, keep| {
            r.write_json(f, out);
            keep.then_some(r)
        });
    }

    /// Appends one line written by `write`, which returns the record itself when asked to keep it (`true`
    /// only when a tap wants records); counts it as dropped when the writer is behind.
    fn push(&self, write: impl FnOnce(&mut LineFormat, &mut Vec<u8>, bool) -> Option<T>) {
        let mut p = self.queue.lock();
        if p.closed || p.bytes.len() >= QUEUE_BYTES {
            drop(p);
            self.dropped();
            return;
        }
        let p = &mut *p;
        let kept = write(&mut p.format, &mut p.bytes, self.queue.keep_records);
        p.bytes.push(b'\n');
        p.lines += 1;
        if let Some(r) = kept {
            p.records.push(r);
        }
        if std::mem::take(&mut p.waiting) {
            self.queue.ready.notify_one();
        }
    }

    /// Counts a record the writer had no room for (and says so once); out of line, off the hot path.
    #[cold]
    #[inline(never)]
    fn dropped(&self) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.stats.full_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                log = self.what,
                "writer behind or gone: records are being dropped (counted)"
            );
        }
    }

    fn close(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer thread's state.
struct Writer<T> {
    out: Output,
    syslog: Option<Syslog>,
    tap: Option<Tap<T>>,
    sweep: Option<Sweep<T>>,
    /// For the records the sweep brings (the recorders' own format sits under the queue's lock).
    format: LineFormat,
    stats: Arc<EventStats>,
    reopen: Arc<AtomicBool>,
    what: &'static str,
    failing: bool,
    dropped_at_failure: u64,
}

impl<T: Record> Writer<T> {
    fn run(&mut self, q: &Queue<T>) {
        let mut batch = Vec::with_capacity(1 << 16);
        let mut records = Vec::new();
        loop {
            let (mut lines, closed) = {
                let mut p = q.lock();
                if p.lines == 0 && !p.closed {
                    p.waiting = true;
                    p = match q.ready.wait_timeout(p, TICK) {
                        Ok((p, _)) => p,
                        Err(e) => e.into_inner().0,
                    };
                    p.waiting = false;
                }
                // Swap buffers: recording goes on into the (emptied) one written last time.
                std::mem::swap(&mut p.bytes, &mut batch);
                std::mem::swap(&mut p.records, &mut records);
                (std::mem::take(&mut p.lines), p.closed)
            };
            self.maintain();
            if let Some(sweep) = self.sweep.as_mut() {
                for r in sweep(SystemTime::now(), closed) {
                    r.write_json(&mut self.format, &mut batch);
                    batch.push(b'\n');
                    lines += 1;
                    if q.keep_records {
                        records.push(r);
                    }
                }
            }
            if lines > 0 {
                if let Some(tap) = self.tap.as_mut() {
                    records.iter().for_each(tap);
                }
                records.clear();
                if let Some(s) = self.syslog.as_mut() {
                    for line in batch.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        if let Err(e) = s.send(line_ts(line), line_kind(line), line)
                            && self.stats.syslog_failed.fetch_add(1, Ordering::Relaxed) == 0
                        {
                            // Once: the admin needs to know where and why, not every event.
                            tracing::error!(syslog = %s.target(), error = %e, "cannot send events to syslog (counting failures)");
                        }
                    }
                }
                self.write_chunks(&batch, lines);
                batch.clear();
            }
            if closed {
                break;
            }
            if lines > 0 {
                // Let a burst collect while the writer sleeps: the first record after a quiet spell is
                // written at once, and under load no query pays for waking this thread.
                std::thread::sleep(BURST_PAUSE);
            }
        }
        if let Output::File(f) = &mut self.out {
            f.sync();
        }
    }
    /// Reopen on request, sync, rotate by age.
    fn maintain(&mut self) {
        if let Output::File(f) = &mut self.out {
            if self.reopen.swap(false, Ordering::Relaxed) {
                tracing::info!(path = %f.path().display(), "reopening log");
                f.reopen();
            }
            f.tick();
        }
    }

    /// Writes a batch in pieces of whole lines of at most [`WRITE_BYTES`] (one piece unless the writer fell
    /// behind), so that rotation by size overshoots by one piece at most.
    fn write_chunks(&mut self, batch: &[u8], lines: u64) {
        if batch.len() <= WRITE_BYTES {
            return self.write(batch, lines);
        }
        let mut rest = batch;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(logfile::lines_within(rest, WRITE_BYTES));
            let n = piece.iter().filter(|&&b| b == b'\n').count() as u64;
            self.write(piece, n);
            rest = tail;
        }
    }

    fn write(&mut self, batch: &[u8], lines: u64) {
        let r = match &mut self.out {
            Output::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(batch).and_then(|()| o.flush())
            }
            Output::File(f) => f.write_lines(batch),
        };
        match r {
            Ok(()) => {
                self.stats.written.fetch_add(lines, Ordering::Relaxed);
                if std::mem::take(&mut self.failing) {
                    let lost = self.stats.dropped.load(Ordering::Relaxed) - self.dropped_at_failure;
                    tracing::warn!(log = self.what, dropped = lost, "log writable again");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    self.dropped_at_failure = self.stats.dropped.load(Ordering::Relaxed);
                    tracing::error!(log = self.what, error = %e, "cannot write log; dropping records (counted) until it works again");
                }
                self.stats.dropped.fetch_add(lines, Ordering::Relaxed);
            }
        }
    }
}

/// The handle the query path uses to record events and queries.
pub struct Events {
    blocks: Journal<Event>,
    queries: Option<Journal<QueryRecord>>,
    /// Open windows of repeated block events (`[log] coalesce`); `None` writes every blocked query's line.
    repeats: Option<Arc<Mutex<Repeats>>>,
}

impl Events {
    /// Opens a plain sink for block events (no rotation, no syslog, no query log).
    pub fn start(sink: &EventSink) -> std::io::Result<Events> {
        let out = match sink {
            EventSink::Stdout => Output::Stdout,
            EventSink::File(p) => Output::File(Box::new(LogFile::open(p, Rotation::default())?)),
        };
        Ok(Events {
            blocks: Journal::start("events", out, None, None, None)?,
            queries: None,
            repeats: None,
        })
    }

    /// Opens every log the config asks for; `tap` sees each block event on the writer thread (alerts).
    pub fn from_config(cfg: &Config, tap: Option<Tap<BlockEvent>>) -> anyhow::Result<Events> {
        use anyhow::Context;
        let rotation = Rotation {
            max_size: cfg
                .log
                .rotate_size
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(anyhow::Error::msg)?,
            max_age: cfg
                .log
                .rotate_every
                .as_deref()
                .map(humantime::parse_duration)
                .transpose()?,
            keep: cfg.log.keep,
            gzip: cfg.log.gzip,
        };
        let open = |p: &Path| {
            LogFile::open(p, rotation.clone())
                .with_context(|| format!("opening log {}", p.display()))
        };
        let out = match cfg.event_sink() {
            EventSink::Stdout => Output::Stdout,
            EventSink::File(p) => Output::File(Box::new(open(&p)?)),
        };
        let syslog = match &cfg.log.syslog {
            Some(s) => Some(Syslog::new(
                SyslogTarget::parse(s).map_err(anyhow::Error::msg)?,
            )),
            None => None,
        };
        // Alerts see block events only.
        let tap = tap.map(|mut f| -> Tap<Event> {
            Box::new(move |e: &Event| match e {
                Event::Block(b) => f(b),
                Event::Repeated(r) => f(&r.event),
                Event::Connection(_) => {}
            })
        });
        let repeats = cfg
            .log
            .coalesce_window()
            .map_err(anyhow::Error::msg)?
            .map(|w| Arc::new(Mutex::new(Repeats::new(w, cfg.log.names_cap()))));
        let sweep = repeats
            .clone()
            .map(|r| -> Sweep<Event> { Box::new(move |now, all| lock_repeats(&r).due(now, all)) });
        let blocks = Journal::start("events", out, syslog, tap, sweep)?;
        let queries = match cfg.query_log() {
            Some(p) => Some(Journal::start(
                "queries",
                Output::File(Box::new(open(&p)?)),
                None,
                None,
                None,
            )?),
            None => None,
        };
        Ok(Events {
            blocks,
            queries,
            repeats,
        })
    }

    /// Queues a block event without waiting, straight from the query's own data (no allocation unless a
    /// tap wants the record), or folds it into its repeats' line; counts it as dropped when the writer is
    /// behind.
    pub fn record_block(&self, ev: BlockView<'_>) {
        if let Some(r) = &self.repeats {
            let admitted = lock_repeats(r).admit(&ev);
            match admitted {
                Admit::Hold { folded } => {
                    if folded {
                        self.blocks.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Admit::Write(Some(held)) => self.blocks.record(Event::Repeated(held)),
                Admit::Write(None) => {}
            }
        }
        self.blocks.push(|f, out, keep| {
            ev.write_json(f, out);
            keep.then(|| Event::Block(ev.to_event()))
        });
    }

    /// Queues a sinkhole-host connection event into the same log as block events, or folds it into its
    /// repeats' line.
    pub fn record_connection(&self, ev: ConnectionEvent) {
        let Some(r) = &self.repeats else {
            self.blocks.record(Event::Connection(ev));
            return;
        };
        let (now, folded) = lock_repeats(r).admit_connection(ev, SystemTime::now());
        if folded {
            self.blocks.stats.coalesced.fetch_add(1, Ordering::Relaxed);
        }
        for ev in now {
            self.blocks.record(Event::Connection(ev));
        }
    }

    /// True when every query is logged (so the query path builds records only then).
    pub fn logs_queries(&self) -> bool {
        self.queries.is_some()
    }

    /// Queues a query record, if the query log is on.
    pub fn record_query(&self, q: QueryRecord) {
        if let Some(j) = &self.queries {
            j.record(q);
        }
    }

    /// Makes the writers open their files again (after logrotate moved them); takes effect within a second.
    pub fn reopen(&self) {
        self.blocks.reopen.store(true, Ordering::Relaxed);
        if let Some(q) = &self.queries {
            q.reopen.store(true, Ordering::Relaxed);
        }
    }

    /// Counters of the block event log, shared with metrics.
    pub fn stats(&self) -> Arc<EventStats> {
        self.blocks.stats.clone()
    }

    /// Counters of the query log, if it is on.
    pub fn query_stats(&self) -> Option<Arc<EventStats>> {
        self.queries.as_ref().map(|q| q.stats.clone())
    }

    /// Writes every queued record and waits for the writers to finish.
    pub fn close(&mut self) {
        self.blocks.close();
        if let Some(q) = self.queries.as_mut() {
            q.close();
        }
    }
}

/// The repeats' lock: a panic while it was held leaves at worst one miscounted window.
fn lock_repeats(r: &Mutex<Repeats>) -> MutexGuard<'_, Repeats> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Events {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::Mac;
    use serde::Serialize;

    /// The lines as serde_json wrote them before they were written by hand: the interface to keep.
    #[derive(Serialize)]
    struct SerdeBlock<'a> {
        ts: String,
        kind: &'static str,
        client_ip: String,
        client_port: u16,
        client_mac: Option<String>,
        client_hostname: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_subnet: Option<String>,
        protocol: Protocol,
        qname: &'a str,
        qtype: std::borrow::Cow<'static, str>,
        list: &'a str,
        rule: &'a str,
        action: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        via: Option<&'a str>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        chain: &'a [String],
    }

    #[derive(Serialize)]
    struct SerdeQuery<'a> {
        ts: String,
        kind: &'static str,
        client_ip: String,
        client_port: u16,
        client_mac: Option<String>,
        client_hostname: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_subnet: Option<String>,
        protocol: Protocol,
        qname: &'a str,
        qtype: std::borrow::Cow<'static, str>,
        outcome: Outcome,
        latency_us: u64,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        chain: Vec<String>,
    }

    fn block(client: &str, qname: &str, who: Attribution, via: Option<&str>) -> BlockEvent {
        BlockEvent {
            time: std::time::UNIX_EPOCH + Duration::from_nanos(1_764_253_395_695_123_456),
            client: client.parse().unwrap(),
            protocol: Protocol::Dot,
            qname: qname.into(),
            qtype: 65,
            list: "3cx \"c2\"".into(),
            rule: "*.example.com".into(),
            action: "nxdomain",
            who,
            via: via.map(Into::into),
            chain: via
                .map(|v| vec!["a.cdn.net".to_string(), v.to_string()])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn block_lines_are_byte_identical_to_serde_json() {
        let plain = Attribution::default();
        let full = Attribution {
            mac: Some(Mac([0x02, 0, 0x5e, 0x10, 0xab, 0xff])),
            hostname: Some("pc \"7\"\n".into()),
            subnet: Some(("192.0.2.0".parse().unwrap(), 24)),
        };
        let events = [
            block("10.1.2.3:53000", "beacon.example.com", plain.clone(), None),
            block(
                "[::ffff:10.1.2.3]:1",
                "x\\y\u{1}.example.com",
                full.clone(),
                None,
            ),
            block(
                "[2001:db8::7]:65535",
                "bücher.example.com",
                full,
                Some("c2.evil.net"),
            ),
            block("127.0.0.1:0", "", plain, Some("203.0.113.9")),
        ];
        for e in &events {
            let serde = SerdeBlock {
                ts: humantime::format_rfc3339_millis(e.time).to_string(),
                kind: "block",
                client_ip: e.client.ip().to_canonical().to_string(),
                client_port: e.client.port(),
                client_mac: e.who.mac.map(|m| m.to_string()),
                client_hostname: e.who.hostname.as_deref(),
                client_subnet: e.who.subnet.map(|(a, p)| format!("{a}/{p}")),
                protocol: e.protocol,
                qname: &e.qname,
                qtype: crate::wire::type_name(e.qtype),
                list: &e.list,
                rule: &e.rule,
                action: e.action,
                via: e.via.as_deref(),
                chain: &e.chain,
            };
            assert_eq!(e.to_json(), serde_json::to_string(&serde).unwrap());
            // The query path's borrowed form writes the same line and hands a tap the same record.
            let view = BlockView {
                time: e.time,
                client: e.client,
                protocol: e.protocol,
                qname: &e.qname,
                qtype: e.qtype,
                list: &e.list,
                rule: RuleText {
                    wildcard: true,
                    name: e.rule.strip_prefix("*.").unwrap(),
                },
                action: e.action,
                who: &e.who,
                via: e.via.as_deref(),
                chain: &e.chain,
            };
            let mut line = Vec::new();
            view.write_json(&mut LineFormat::default(), &mut line);
            assert_eq!(String::from_utf8(line).unwrap(), e.to_json());
            assert_eq!(view.to_event().to_json(), e.to_json());
        }
    }

    #[test]
    fn lines_are_written_in_order_taps_see_each_record_and_late_records_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let out = Output::File(Box::new(LogFile::open(&path, Rotation::default()).unwrap()));
        let tap: Tap<Event> = Box::new(move |e: &Event| {
            if let Event::Block(b) = e {
                s.lock().unwrap().push(b.qname.clone())
            }
        });
        let mut j = Journal::start("events", out, None, Some(tap), None).unwrap();
        let names: Vec<String> = (0..500).map(|i| format!("n{i}.example.com")).collect();
        for n in &names {
            j.record(Event::Block(block(
                "10.0.0.1:1",
                n,
                Attribution::default(),
                None,
            )));
        }
        j.close();
        j.record(Event::Block(block(
            "10.0.0.1:1",
            "late.example.com",
            Attribution::default(),
            None,
        )));
        let text = std::fs::read_to_string(&path).unwrap();
        let written: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["qname"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(written, names);
        assert_eq!(*seen.lock().unwrap(), names);
        assert_eq!(j.stats.written.load(Ordering::Relaxed), 500);
        assert_eq!(
            j.stats.dropped.load(Ordering::Relaxed),
            1,
            "the record after close"
        );
    }

    #[test]
    fn a_large_batch_is_written_in_whole_line_pieces_with_every_line_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        // Rotation by size: a piece that does not fit starts a new file, so the files show the pieces.
        let max = WRITE_BYTES as u64 + 200;
        let rotation = Rotation {
            max_size: Some(max),
            max_age: None,
            keep: 10,
            gzip: false,
        };
        let mut w: Writer<Event> = Writer {
            out: Output::File(Box::new(LogFile::open(&path, rotation).unwrap())),
            syslog: None,
            tap: None,
            sweep: None,
            format: LineFormat::default(),
            stats: Arc::new(EventStats::default()),
            reopen: Arc::new(AtomicBool::new(false)),
            what: "events",
            failing: false,
            dropped_at_failure: 0,
        };
        // 2.5 pieces' worth of 100-byte lines, and one line longer than a piece.
        let line = format!("{}\n", "x".repeat(99));
        let mut batch = line.repeat(WRITE_BYTES * 5 / 2 / 100).into_bytes();
        batch.extend_from_slice(format!("{}\n", "y".repeat(WRITE_BYTES + 10)).as_bytes());
        batch.extend_from_slice(line.as_bytes());
        let lines = batch.iter().filter(|&&b| b == b'\n').count() as u64;
        w.write_chunks(&batch, lines);
        assert_eq!(w.stats.written.load(Ordering::Relaxed), lines);
        // Rotated files (named by time, then _001...) in order, the live file last.
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p != &path)
            .collect();
        files.sort();
        files.push(path);
        let mut all = Vec::new();
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(bytes.ends_with(b"\n"), "{f:?} ends with a whole line");
            let long = bytes.contains(&b'y');
            assert!(
                long || bytes.len() as u64 <= max,
                "{f:?}: {} bytes",
                bytes.len()
            );
            all.extend(bytes);
        }
        assert_eq!(
            files.len(),
            4,
            "three pieces of short lines, then the long line with the last one (it still fits)"
        );
        assert_eq!(all, batch);
    }

    #[test]
    fn syslog_timestamp_is_the_line_ts() {
        let e = block("10.0.0.1:1", "a.example.com", Attribution::default(), None);
        let line = e.to_json();
        assert_eq!(line_ts(line.as_bytes()), "2025-11-27T14:23:15.695Z");
        assert_eq!(line_ts(b"not json"), "-");
    }

    /// A collector filters on the MSGID: a trap connection is not a block.
    #[test]
    fn syslog_msgid_is_the_lines_kind() {
        let e = block("10.0.0.1:1", "a.example.com", Attribution::default(), None);
        assert_eq!(line_kind(e.to_json().as_bytes()), "block");
        let conn =
            br#"{"ts":"2026-01-01T00:00:00.000Z","kind":"connection","client_ip":"10.0.0.1"}"#;
        assert_eq!(line_kind(conn), "connection");
        for odd in [&b"not json"[..], br#"{"kind":""}"#, br#"{"kind":"a b"}"#] {
            assert_eq!(line_kind(odd), "event");
        }
    }

    #[test]
    fn query_lines_are_byte_identical_to_serde_json() {
        let chain = |t: &[&str]| crate::wire::Inspect {
            targets: t.iter().map(|s| s.to_string()).collect(),
        };
        for (client, who, chain) in [
            ("10.0.0.1:5353", Attribution::default(), None),
            (
                "[fe80::1]:40000",
                Attribution {
                    mac: Some(Mac([1, 2, 3, 4, 5, 6])),
                    hostname: Some("printer".into()),
                    subnet: None,
                },
                Some(chain(&["cdn.example.net", "edge\"quoted.example"])),
            ),
            (
                "127.0.0.9:53000",
                Attribution {
                    subnet: Some(("10.9.9.9".parse().unwrap(), 32)),
                    ..Attribution::default()
                },
                Some(chain(&[])),
            ),
        ] {
            let q = QueryRecord {
                time: std::time::UNIX_EPOCH + Duration::from_nanos(1_764_253_395_000_001_999),
                client: client.parse().unwrap(),
                protocol: Protocol::Tcp,
                qname: "www.example.org".into(),
                qtype: 28,
                outcome: Outcome::Cached,
                latency_us: 1234,
                who: who.clone(),
                chain: chain.map(std::sync::Arc::new),
            };
            let serde = SerdeQuery {
                ts: humantime::format_rfc3339_micros(q.time).to_string(),
                kind: "query",
                client_ip: q.client.ip().to_canonical().to_string(),
                client_port: q.client.port(),
                client_mac: q.who.mac.map(|m| m.to_string()),
                client_hostname: q.who.hostname.as_deref(),
                client_subnet: q.who.subnet.map(|(a, p)| format!("{a}/{p}")),
                protocol: q.protocol,
                qname: &q.qname,
                qtype: crate::wire::type_name(q.qtype),
                outcome: q.outcome,
                latency_us: q.latency_us,
                chain: q.chain.as_ref().map_or(vec![], |c| c.targets.clone()),
            };
            let mut out = Vec::new();
            q.write_json(&mut LineFormat::default(), &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&serde).unwrap()
            );
        }
    }
}
