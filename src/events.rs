//! Block events: the admin's evidence of an infected machine, one JSON line per blocked query.
//!
//! The query path only hands an event to a bounded queue; one writer thread formats and writes whole lines,
//! so lines are never interleaved or cut and a slow disk never slows answering. When the queue is full the
//! event is counted as dropped and the problem is logged once.

use crate::config::EventSink;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

impl Protocol {
    /// The name written in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

impl BlockEvent {
    /// The event as one JSON line (no newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        LineFormat::default().write(self, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Writes event lines by hand: field names and order are part of c2sink's interface; a generic serializer
/// and `Display` for the time and address cost several times more than the rest of a blocked query.
#[derive(Default)]
struct LineFormat {
    /// The second whose "YYYY-MM-DDTHH:MM:SS" is in `prefix`; it changes at most once a second.
    second: Option<u64>,
    prefix: String,
}

impl LineFormat {
    /// Appends `ev` as one JSON line (no newline) to `out`.
    fn write(&mut self, ev: &BlockEvent, out: &mut Vec<u8>) {
        let since = ev
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if self.second != Some(since.as_secs()) {
            let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs());
            self.prefix = humantime::format_rfc3339_seconds(whole).to_string();
            self.prefix.truncate(19);
            self.second = Some(since.as_secs());
        }
        let millis = since.subsec_millis();
        out.extend_from_slice(b"{\"ts\":\"");
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
        ]);
        out.extend_from_slice(b"Z\",\"kind\":\"block\",\"client_ip\":\"");
        match ev.client.ip().to_canonical() {
            std::net::IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    push_decimal(out, u32::from(o));
                }
            }
            v6 => {
                let _ = write!(out, "{v6}");
            }
        }
        out.extend_from_slice(b"\",\"client_port\":");
        push_decimal(out, u32::from(ev.client.port()));
        out.extend_from_slice(b",\"protocol\":\"");
        out.extend_from_slice(ev.protocol.as_str().as_bytes());
        out.extend_from_slice(b"\",\"qname\":");
        push_json_str(out, &ev.qname);
        out.extend_from_slice(b",\"qtype\":");
        push_json_str(out, &crate::wire::type_name(ev.qtype));
        out.extend_from_slice(b",\"list\":");
        push_json_str(out, &ev.list);
        out.extend_from_slice(b",\"rule\":");
        push_json_str(out, &ev.rule);
        out.extend_from_slice(b",\"action\":");
        push_json_str(out, ev.action);
        out.push(b'}');
    }
}

fn push_decimal(out: &mut Vec<u8>, mut v: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Whether any byte of `s` is a control character, `"` or `\`; eight bytes at a time (names are ASCII and short,
/// so this runs for every field of every event).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit of a byte set when that byte of `x` is zero (exact as an "any" test).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let any = |w: [u8; 8]| {
        let x = u64::from_le_bytes(w);
        // bytes < 0x20: (x - 0x20..) & !x & 0x80.. is non-zero exactly when one exists
        x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
    };
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if any(w) {
            return true;
        }
    }
    // The tail, padded with a byte that never needs escaping.
    let tail = chunks.remainder();
    let mut w = [b'a'; 8];
    w[..tail.len()].copy_from_slice(tail);
    any(w)
}

/// Appends `s` as a JSON string, escaped as RFC 8259 requires (the same escapes serde_json uses).
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        // The usual case: nothing to escape.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain_from = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
        } else {
            out.extend_from_slice(short);
        }
        plain_from = i + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
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
    let mut format = LineFormat::default();
    // Block only when the queue ran dry: the first event after a quiet spell wakes the writer at once, and
    // the rest of a burst collects while it sleeps, so under load no query pays for waking it.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        loop {
            // Drain what is queued, then flush once: whole lines only, few syscalls under load.
            while let Some(ev) = next {
                line.clear();
                format.write(&ev, &mut line);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The line as serde_json writes it (the format before it was written by hand): the reference the
    /// hand-written format must match byte for byte.
    fn reference(ev: &BlockEvent) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            ts: String,
            kind: &'static str,
            client_ip: String,
            client_port: u16,
            protocol: &'static str,
            qname: &'a str,
            qtype: std::borrow::Cow<'static, str>,
            list: &'a str,
            rule: &'a str,
            action: &'static str,
        }
        serde_json::to_string(&Line {
            ts: humantime::format_rfc3339_millis(ev.time).to_string(),
            kind: "block",
            client_ip: ev.client.ip().to_canonical().to_string(),
            client_port: ev.client.port(),
            protocol: ev.protocol.as_str(),
            qname: &ev.qname,
            qtype: crate::wire::type_name(ev.qtype),
            list: &ev.list,
            rule: &ev.rule,
            action: ev.action,
        })
        .expect("serializes")
    }

    fn event(client: &str, qname: &str, list: &str, ms: u64) -> BlockEvent {
        BlockEvent {
            time: UNIX_EPOCH + Duration::from_millis(ms),
            client: client.parse().expect("address"),
            protocol: Protocol::Udp,
            qname: qname.into(),
            qtype: 28,
            list: list.into(),
            rule: "evil.com".into(),
            action: "null",
        }
    }

    #[test]
    fn escape_check_finds_every_byte_that_needs_it_at_every_position() {
        for b in 0..=255u8 {
            for pos in 0..19 {
                let mut s = vec![b'a'; 19];
                s[pos] = b;
                let want = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(needs_escape(&s), want, "byte {b} at {pos}");
            }
        }
        // Bytes above 0x7f (UTF-8) never need escaping, next to ones that do or not.
        assert!(!needs_escape("é€ a.b-c_d".as_bytes()));
        assert!(needs_escape("ééééé\u{1f}".as_bytes()));
    }

    #[test]
    fn event_line_matches_serde_json_byte_for_byte() {
        let cases = [
            event("192.0.2.10:53124", "cdn.evil.com", "3cx", 1_774_000_000_007),
            event(
                "[::ffff:10.1.2.3]:9",
                "a\\.b\\009\"q.evil.com",
                "3cx",
                1_774_000_000_999,
            ),
            event(
                "[2001:db8::1]:65535",
                "x.evil.com",
                "l\u{e9}st \"\\\n\u{1}",
                5,
            ),
            event("0.0.0.0:0", "", "", 0),
        ];
        let mut f = LineFormat::default();
        for ev in &cases {
            let mut out = Vec::new();
            f.write(ev, &mut out);
            assert_eq!(String::from_utf8(out).expect("utf-8"), reference(ev));
            // The cached date prefix is reused within a second and replaced after it.
            let later = BlockEvent {
                time: ev.time + Duration::from_millis(1500),
                ..ev.clone()
            };
            assert_eq!(later.to_json(), reference(&later));
            let mut out = Vec::new();
            f.write(&later, &mut out);
            assert_eq!(String::from_utf8(out).expect("utf-8"), reference(&later));
        }
    }
}
