//! Block events: the admin's evidence of an infected machine, one JSON line per blocked query.
//!
//! The query path only hands an event to a bounded queue; one writer thread formats and writes whole lines,
//! so lines are never interleaved or cut and a slow disk never slows answering. When the queue is full the
//! event is counted as dropped and the problem is logged once.

use crate::config::EventSink;
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

/// Events that may wait for the writer before new ones are dropped.
const QUEUE: usize = 65_536;
/// How long the busy writer lets events collect between writes. While it sleeps, senders do not wake it:
/// waking a thread per event (a futex call and two context switches) cost more than everything else
/// c2sink does for a blocked query.
const BATCH: std::time::Duration = std::time::Duration::from_millis(10);

/// How a client reached c2sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
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
}

/// The JSON line written for a block event (field names are part of c2sink's interface).
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    kind: &'static str,
    client_ip: String,
    client_port: u16,
    protocol: Protocol,
    qname: &'a str,
    qtype: std::borrow::Cow<'static, str>,
    list: &'a str,
    rule: &'a str,
    action: &'static str,
}

impl BlockEvent {
    /// The event as one JSON line (no newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the event as one JSON line (no newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let line = Line {
            ts: humantime::format_rfc3339_millis(self.time).to_string(),
            kind: "block",
            client_ip: self.client.ip().to_canonical().to_string(),
            client_port: self.client.port(),
            protocol: self.protocol,
            qname: &self.qname,
            qtype: crate::wire::type_name(self.qtype),
            list: &self.list,
            rule: &self.rule,
            action: self.action,
        };
        let start = out.len();
        if let Err(e) = serde_json::to_writer(&mut *out, &line) {
            out.truncate(start);
            out.extend_from_slice(format!("{{\"error\":\"{e}\"}}").as_bytes());
        }
    }
}

/// The handle the query path uses to record events.
pub struct Events {
    tx: Option<SyncSender<BlockEvent>>,
    writer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<EventStats>,
}

/// Counters of the event log, for metrics and logs.
#[derive(Default)]
pub struct EventStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    full_logged: AtomicBool,
    write_failed_logged: AtomicBool,
}

impl Events {
    /// Opens the sink and starts the writer thread.
    pub fn start(sink: &EventSink) -> std::io::Result<Events> {
        let out: Box<dyn Write + Send> = match sink {
            EventSink::Stdout => Box::new(std::io::stdout()),
            EventSink::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(EventStats::default());
        let st = stats.clone();
        let writer = std::thread::Builder::new()
            .name("c2sink-events".into())
            .spawn(move || write_loop(rx, out, &st))?;
        Ok(Events {
            tx: Some(tx),
            writer: Some(writer),
            stats,
        })
    }

    /// Queues an event without waiting; counts it as dropped when the writer is behind.
    pub fn record(&self, ev: BlockEvent) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.stats.full_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "event queue full or writer gone: block events are being dropped (counted)"
                    );
                }
            }
        }
    }

    /// Counters, shared with metrics.
    pub fn stats(&self) -> Arc<EventStats> {
        self.stats.clone()
    }

    /// Writes every queued event and waits for the writer to finish.
    pub fn close(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(rx: Receiver<BlockEvent>, out: Box<dyn Write + Send>, stats: &EventStats) {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut line = Vec::with_capacity(512);
    // Block only when the queue ran dry: the first event after a quiet spell wakes the writer at once, and
    // the rest of a burst collects while it sleeps, so under load no query pays for waking it.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        loop {
            // Drain what is queued, then flush once: whole lines only, few syscalls under load.
            while let Some(ev) = next {
                line.clear();
                ev.write_json(&mut line);
                line.push(b'\n');
                match out.write_all(&line) {
                    Ok(()) => {
                        stats.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        if !stats.write_failed_logged.swap(true, Ordering::Relaxed) {
                            tracing::error!(error = %e, "cannot write block events (counting dropped events)");
                        }
                    }
                }
                next = rx.try_recv().ok();
            }
            if let Err(e) = out.flush()
                && !stats.write_failed_logged.swap(true, Ordering::Relaxed)
            {
                tracing::error!(error = %e, "cannot flush block events");
            }
            std::thread::sleep(BATCH);
            match rx.try_recv() {
                Ok(ev) => next = Some(ev),
                // Empty: wait for the next event; closed: `recv` returns the error and the loop ends.
                Err(_) => break,
            }
        }
    }
    let _ = out.flush();
}
