//! The sinkhole host: in `address` mode blocked names point at an address admins watch, and c2sink can be
//! that host. It accepts TCP connections on chosen ports, records who connected, to which port, and the TLS
//! SNI (read from the ClientHello, no handshake is completed) or the HTTP Host and path, then closes.
//!
//! This turns "machine X looked up a C2 name" into "machine X tried to talk to it". Everything is bounded:
//! connections at once, bytes read, and time to read them.

use crate::admission::PerClient;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Most bytes read from one connection (a ClientHello or HTTP request head fits easily).
pub const MAX_READ: usize = 16 * 1024;

/// What a connection to the sinkhole host revealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    #[serde(skip)]
    pub time: SystemTime,
    #[serde(skip)]
    pub client: SocketAddr,
    /// Local port the client connected to.
    pub port: u16,
    /// `tls`, `http` or `unknown` (nothing or something else was sent).
    pub seen: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Connection {
    /// A connection from `client` to `port` recorded now with nothing read (`seen` is `unknown`).
    fn unread(client: SocketAddr, port: u16) -> Connection {
        Connection {
            time: SystemTime::now(),
            client,
            port,
            seen: "unknown",
            sni: None,
            host: None,
            method: None,
            path: None,
        }
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Need more bytes to decide.
    More,
    Tls {
        sni: Option<String>,
    },
    Http {
        method: String,
        path: String,
        host: Option<String>,
    },
    Unknown,
}

/// Reads the first bytes of a connection: a TLS ClientHello (for SNI) or an HTTP request head.
pub fn peek(buf: &[u8]) -> Peek {
    peek_from(buf, 0)
}

/// [`peek`] for a buffer whose first `seen` bytes an earlier call already looked at and found incomplete:
/// an HTTP head's end is searched for only in what is new, so a client sending one byte at a time costs
/// linear work, not a rescan of the whole buffer per byte.
fn peek_from(buf: &[u8], seen: usize) -> Peek {
    match buf.first() {
        None => Peek::More,
        Some(0x16) => tls_sni(buf),
        Some(b) if b.is_ascii_uppercase() => http_head(buf, seen),
        Some(_) => Peek::Unknown,
    }
}

/// Big-endian reader over a byte slice that fails softly on short input.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// Finds the server_name in a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3). Only the first record is read.
fn tls_sni(buf: &[u8]) -> Peek {
    let mut r = Reader { buf, pos: 0 };
    // Record header: type, version, length.
    let (Some(_), Some(_), Some(rec_len)) = (r.u8(), r.u16(), r.u16()) else {
        return Peek::More;
    };
    let Some(record) = r.take(rec_len) else {
        return if buf.len() >= MAX_READ {
            Peek::Tls { sni: None }
        } else {
            Peek::More
        };
    };
    let mut h = Reader {
        buf: record,
        pos: 0,
    };
    let parsed = (|| {
        if h.u8()? != 1 {
            return Some(None); // not a ClientHello
        }
        let _len = h.u24()?;
        h.take(2 + 32)?; // legacy_version, random
        let sid = h.u8()?;
        h.take(sid)?;
        let suites = h.u16()?;
        h.take(suites)?;
        let comp = h.u8()?;
        h.take(comp)?;
        let ext_len = h.u16()?;
        let exts = h.take(ext_len)?;
        let mut e = Reader { buf: exts, pos: 0 };
        while let (Some(kind), Some(len)) = (e.u16(), e.u16()) {
            let body = e.take(len)?;
            if kind != 0 {
                continue;
            }
            let mut s = Reader { buf: body, pos: 0 };
            let list_len = s.u16()?;
            let list = s.take(list_len)?;
            let mut l = Reader { buf: list, pos: 0 };
            while let Some(name_type) = l.u8() {
                let n = l.u16()?;
                let name = l.take(n)?;
                if name_type == 0 {
                    return Some(Some(clean(name)));
                }
            }
        }
        Some(None)
    })();
    Peek::Tls {
        sni: parsed.flatten(),
    }
}

/// Reads the request line and Host header of an HTTP/1 request head.
fn http_head(buf: &[u8], seen: usize) -> Peek {
    // A terminator can straddle the old end: start a terminator's length minus one back.
    let find = |pat: &[u8]| {
        let from = seen.saturating_sub(pat.len() - 1).min(buf.len());
        buf[from..]
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|i| from + i)
    };
    // Tolerate bare LF clients.
    let Some(end) = find(b"\r\n\r\n").or_else(|| find(b"\n\n")) else {
        return if buf.len() >= MAX_READ {
            Peek::Unknown
        } else {
            Peek::More
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(path)) = (first.next(), first.next()) else {
        return Peek::Unknown;
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Peek::Unknown;
    }
    let host = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("host")
            .then(|| clean(v.trim().as_bytes()))
    });
    Peek::Http {
        method: clean(method.as_bytes()),
        path: clean(path.as_bytes()),
        host,
    }
}

/// Keeps what a client sent printable and short, for logs.
fn clean(b: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(b)
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect();
    s
}

/// Limits of the sinkhole host.
#[derive(Debug, Clone, Copy)]
pub struct TrapLimits {
    pub max_connections: usize,
    pub max_per_client: usize,
    pub read_timeout: Duration,
}

/// Accepts connections on one listener until shutdown, handing each record to `record`.
pub async fn serve(
    listener: TcpListener,
    limits: TrapLimits,
    record: Arc<dyn Fn(Connection) + Send + Sync>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Each client address's share of the slots, as the TCP listener keeps one (per address, IPv6 too).
    let per_client = PerClient::new(limits.max_per_client);
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (mut stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "sinkhole host accept error");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        // Over the client's share or the cap: closed at once, unread, but still recorded. Dropped
        // unrecorded, it was evidence lost without a trace; and the share keeps a host holding idle
        // connections (`read_timeout_ms` each) from taking every slot, so other machines' connections are
        // still read (TLS SNI, HTTP Host: which C2 they wanted).
        let admitted = PerClient::enter(&per_client, client.ip())
            .and_then(|held| Some((held, slots.clone().try_acquire_owned().ok()?)));
        let Some((held, permit)) = admitted else {
            tracing::debug!(client = %client, "sinkhole host connection limit reached; recorded unread");
            record(Connection::unread(client, port));
            continue;
        };
        let record = record.clone();
        tokio::spawn(async move {
            let time = SystemTime::now();
            let mut buf = Vec::with_capacity(2048);
            let mut chunk = [0u8; 2048];
            let deadline = tokio::time::Instant::now() + limits.read_timeout;
            let mut result = Peek::More;
            while result == Peek::More && buf.len() < MAX_READ {
                match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let take = n.min(MAX_READ - buf.len());
                        let seen = buf.len();
                        buf.extend_from_slice(&chunk[..take]);
                        result = peek_from(&buf, seen);
                    }
                    _ => break,
                }
            }
            let mut c = Connection {
                time,
                ..Connection::unread(client, port)
            };
            match result {
                Peek::Tls { sni } => {
                    c.seen = "tls";
                    c.sni = sni;
                }
                Peek::Http { method, path, host } => {
                    c.seen = "http";
                    (c.method, c.path, c.host) = (Some(method), Some(path), host);
                }
                Peek::More | Peek::Unknown => {}
            }
            record(c);
            drop((permit, held));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal but well-formed TLS 1.2/1.3 ClientHello with an SNI extension.
    fn client_hello(sni: &str) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = sni.as_bytes();
        let mut list = vec![0u8];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
        let mut sni_body = (list.len() as u16).to_be_bytes().to_vec();
        sni_body.extend_from_slice(&list);
        // An unrelated extension first (supported_versions), then server_name.
        ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&(sni_body.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni_body);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn sni_is_read_from_client_hello() {
        let ch = client_hello("cdn.msstorageazure.com");
        assert_eq!(
            peek(&ch),
            Peek::Tls {
                sni: Some("cdn.msstorageazure.com".into())
            }
        );
        // A partial record asks for more bytes; a cut at any point never panics.
        for cut in 0..ch.len() {
            let p = peek(&ch[..cut]);
            assert!(
                p == Peek::More || matches!(p, Peek::Tls { .. }),
                "cut {cut}: {p:?}"
            );
        }
    }

    #[test]
    fn http_host_and_path_are_read() {
        let req = b"GET /blog/_insert HTTP/1.1\r\nHost: sbmsa.wiki\r\nUser-Agent: x\r\n\r\n";
        assert_eq!(
            peek(req),
            Peek::Http {
                method: "GET".into(),
                path: "/blog/_insert".into(),
                host: Some("sbmsa.wiki".into())
            }
        );
        assert_eq!(peek(b"GET / HTTP/1.1\r\nHost: a"), Peek::More);
        assert_eq!(peek(b"\x00\x01garbage"), Peek::Unknown);
    }

    #[test]
    fn a_head_read_a_few_bytes_at_a_time_is_found_as_when_read_whole() {
        for req in [
            &b"GET /blog/_insert HTTP/1.1\r\nHost: sbmsa.wiki\r\nUser-Agent: x\r\n\r\n"[..],
            &b"POST /x HTTP/1.0\nHost: a.example\n\n"[..],
        ] {
            for step in [1, 2, 3, 5] {
                let (mut buf, mut got) = (Vec::new(), Peek::More);
                for piece in req.chunks(step) {
                    assert_eq!(got, Peek::More, "step {step}: complete before the end");
                    let seen = buf.len();
                    buf.extend_from_slice(piece);
                    got = peek_from(&buf, seen);
                }
                assert_eq!(got, peek(req), "step {step}");
                assert!(matches!(got, Peek::Http { .. }), "{got:?}");
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 300) as usize;
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b.push((x >> 16) as u8);
            }
            if !b.is_empty() {
                b[0] = if x.is_multiple_of(2) { 0x16 } else { b'G' };
            }
            let _ = peek(&b);
        }
    }
}
