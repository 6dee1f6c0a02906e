//! Encrypted upstreams: DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484), so queries leaving the edge can
//! be neither read nor changed on the way, and an answer comes only from a server whose certificate is valid
//! for the configured name (webpki roots, plus the CAs of `[upstream] ca_file`).
//!
//! Connections are kept and reused: DoT uses at most 64 connections per upstream at once, one query at a
//! time on each (a client at most a quarter of them), and keeps as many idle; DoH keeps one HTTP/2 connection per upstream and sends every query
//! on it as its own stream. A reused connection that turns out closed is replaced once, transparently.

use crate::admission::Asker;
use crate::upstream::TryError;
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// DoT connections carrying a query at once, per upstream (one query at a time on each): past it a query
/// waits, within its timeout, for one to be free. Without a cap, a burst of N distinct names opened N TLS
/// connections at once (774 for 800 names), a burst of handshakes a provider may well limit. Unbound keeps
/// at most 10 outgoing TCP connections per thread.
const DOT_BUSY_MAX: usize = 64;
/// Idle DoT connections kept per upstream: as many as may be busy, so that a second burst reuses the first's.
const DOT_IDLE_MAX: usize = DOT_BUSY_MAX;
tokio::task_local! {
    /// The client a forward is for, and its part of an upstream's busy connections (the part
    /// `max_inflight_per_client` is of `max_inflight`, a quarter by default: 16): one machine asking
    /// random names under a zone whose servers are dead holds each connection for a whole timeout, and
    /// without a share it held all of them, so every other client's uncached lookup waited or failed. Set
    /// around the forward by the listener; `None` (or unset: a cache refresh, a probe) for sources that
    /// speak for many clients.
    static ASKER: Option<Asker>;
}

/// Runs `forward` on behalf of `client` (see [`ASKER`]), so that DoT upstreams hold it to its share.
///
/// Not an `async fn`: one would hold `forward` twice (its argument and the scope around it), and every
/// spawned forward copies its whole future when it starts and again when it ends (docs/performance.md).
pub fn on_behalf_of<F: std::future::Future>(
    client: Option<Asker>,
    forward: F,
) -> impl std::future::Future<Output = F::Output> {
    ASKER.scope(client, forward)
}

/// How many of [`DOT_BUSY_MAX`] connections `asker` may hold at once (at least one).
fn share_of(asker: Asker) -> usize {
    (DOT_BUSY_MAX.saturating_mul(asker.part) / asker.whole.max(1)).clamp(1, DOT_BUSY_MAX)
}
/// The least time worth asking a DoT upstream in, after waiting for a place (in the client's share, then for
/// a connection): a tenth of the timeout, at most 100 ms (answers come in tens of milliseconds).
fn least_left(timeout: Duration) -> Duration {
    (timeout / 10).min(Duration::from_millis(100))
}
/// A DoT connection idle longer than this is not reused (servers close idle ones after some seconds).
const DOT_IDLE_FOR: Duration = Duration::from_secs(10);
/// Largest DNS message (TCP framing and DoH bodies alike).
const MAX_MESSAGE: usize = 65_535;

/// TLS client settings for one ALPN protocol, trusting the webpki roots plus `extra_cas`.
pub fn tls_connector(
    extra_cas: &[CertificateDer<'static>],
    alpn: &[u8],
) -> Result<TlsConnector, rustls::Error> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for ca in extra_cas {
        roots.add(ca.clone())?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// Connects TCP then TLS, verifying the certificate against `name`.
async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &ServerName<'static>,
) -> Result<TlsStream<TcpStream>, TryError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| TryError::Tls(e.to_string()))
}

/// [`connect`] on `home`, the runtime the upstream was made on (the main one). A kept connection serves
/// queries from every thread, and its socket belongs to the reactor it was opened on: opened by a UDP
/// thread's runtime, which waits inside the kernel while it has nothing to do, it would stall other threads'
/// queries meanwhile.
async fn connect_on(
    home: Option<&Handle>,
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &ServerName<'static>,
) -> Result<TlsStream<TcpStream>, TryError> {
    let Some(home) = home else {
        return connect(connector, addr, name).await;
    };
    let (connector, name) = (connector.clone(), name.clone());
    let mut task = AbortOnDrop(home.spawn(async move { connect(&connector, addr, &name).await }));
    (&mut task.0)
        .await
        .map_err(|e| TryError::Io(std::io::Error::other(e)))?
}

/// Ends a spawned task when its waiter is dropped: a connection attempt to an upstream that accepts TCP and
/// then says nothing must end with the query that timed out, not hold a socket for as long as the peer does.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A kept DoH connection and what says whether it still lives.
#[derive(Clone)]
struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    life: Arc<Life>,
}

/// Of one DoH connection: responses it brought, and whether it is to be replaced.
#[derive(Default)]
struct Life {
    responses: AtomicU64,
    stale: AtomicBool,
}

/// Marks a DoH connection for replacement when dropped uncleared (a query whose upstream timeout ran out
/// while it waited) and no response at all came on that connection meanwhile: it may have died without a
/// reset, and kept it would fail every later query until the kernel gave up on it (minutes). One slow name
/// among answered ones leaves a live connection alone. Unbound closes a stream upstream on a timeout too.
struct Suspect {
    life: Option<Arc<Life>>,
    responses: u64,
}

impl Suspect {
    fn of(conn: &H2Conn) -> Suspect {
        Suspect {
            life: Some(conn.life.clone()),
            responses: conn.life.responses.load(Ordering::Relaxed),
        }
    }

    /// The query ended on its own (answered or failed): whatever it says of the connection is known.
    fn clear(mut self) {
        self.life = None;
    }
}

impl Drop for Suspect {
    fn drop(&mut self) {
        if let Some(life) = &self.life
            && life.responses.load(Ordering::Relaxed) == self.responses
        {
            life.stale.store(true, Ordering::Relaxed);
        }
    }
}

fn server_name(name: &str) -> Result<ServerName<'static>, TryError> {
    ServerName::try_from(name.to_string())
        .map_err(|_| TryError::Tls(format!("\"{name}\" is not a valid server name")))
}

/// A DNS-over-TLS upstream with its idle connections.
pub struct Dot {
    addr: SocketAddr,
    name: Result<ServerName<'static>, String>,
    connector: Result<TlsConnector, String>,
    idle: Mutex<Vec<(TlsStream<TcpStream>, Instant)>>,
    /// [`DOT_BUSY_MAX`] permits, one held by each query on a connection.
    busy: tokio::sync::Semaphore,
    /// Per client with a query here: how many hold a place in its share, how many wait for one.
    shares: Mutex<std::collections::HashMap<u128, ShareState>>,
    home: Option<Handle>,
}

/// One client's use of its share of a DoT upstream's connections.
#[derive(Default)]
struct ShareState {
    /// Places in the share (see [`share_of`]).
    cap: usize,
    held: usize,
    waiting: usize,
    /// Wakes one waiter when a place is given back (a wake-up given while none waits is kept for the next).
    freed: Arc<tokio::sync::Notify>,
}

/// A place in a client's share (or, `holds` false, a wait for one), given back on drop; a client's entry is
/// forgotten when it neither holds nor waits.
struct Share<'a> {
    dot: &'a Dot,
    key: u128,
    holds: bool,
    waits: bool,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut shares = self.dot.shares.lock().unwrap_or_else(|p| p.into_inner());
        let Some(st) = shares.get_mut(&self.key) else {
            return;
        };
        if self.holds {
            st.held -= 1;
        }
        if self.waits {
            st.waiting -= 1;
        }
        if st.held == 0 && st.waiting == 0 {
            shares.remove(&self.key);
        } else if st.waiting > 0 && st.held < st.cap {
            // A place is free (given back, or a waiter that may have taken the last wake-up gave up).
            st.freed.notify_one();
        }
    }
}

impl Dot {
    /// A DoT upstream at `addr` whose certificate must be valid for `name`.
    pub fn new(addr: SocketAddr, name: &str, connector: Result<TlsConnector, String>) -> Dot {
        Dot {
            addr,
            name: server_name(name).map_err(|e| e.to_string()),
            connector,
            idle: Mutex::new(Vec::new()),
            busy: tokio::sync::Semaphore::new(DOT_BUSY_MAX),
            shares: Mutex::new(std::collections::HashMap::new()),
            home: Handle::try_current().ok(),
        }
    }

    /// Waits for a place in `key`'s share of this upstream's connections (dropped while waiting, when the
    /// try times out, it leaves the count as it found it).
    async fn share(&self, asker: Asker) -> Share<'_> {
        let key = asker.key;
        let mut share = Share {
            dot: self,
            key,
            holds: false,
            waits: false,
        };
        loop {
            let freed = {
                let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
                let st = shares.entry(key).or_insert_with(|| ShareState {
                    cap: share_of(asker),
                    ..ShareState::default()
                });
                if st.held < st.cap {
                    st.held += 1;
                    share.holds = true;
                    if std::mem::take(&mut share.waits) {
                        st.waiting -= 1;
                    }
                    // Places freed faster than waiters woke left a single wake-up stored: pass it on.
                    if st.waiting > 0 && st.held < st.cap {
                        st.freed.notify_one();
                    }
                    return share;
                }
                if !share.waits {
                    st.waiting += 1;
                    share.waits = true;
                }
                st.freed.clone()
            };
            freed.notified().await;
        }
    }

    fn take_idle(&self) -> Option<TlsStream<TcpStream>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < DOT_IDLE_FOR {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: TlsStream<TcpStream>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < DOT_IDLE_MAX {
            idle.push((conn, Instant::now()));
        }
    }

    /// Sends one query (ID already set) and returns the raw answer, within `timeout`.
    ///
    /// A try that spends its timeout (all but [`least_left`]) waiting, for a place in its client's own share
    /// or for one of the upstream's connections, ends with [`TryError::OwnShare`] or [`TryError::PoolFull`]:
    /// the server was never asked, so it must not count against the server.
    pub async fn exchange(&self, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, TryError> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        // A place freed just before the end (the same timer tick often ends the try that held it and this
        // wait) leaves no time for an answer: asking would only load the server.
        let time_left = || {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            (left >= least_left(timeout)).then_some(left)
        };
        let _share = match ASKER.try_with(|k| *k).ok().flatten() {
            Some(asker) => {
                let share = tokio::time::timeout_at(deadline, self.share(asker)).await;
                match (share, time_left()) {
                    (Ok(share), Some(_)) => Some(share),
                    _ => return Err(TryError::OwnShare(started.elapsed())),
                }
            }
            None => None,
        };
        let busy = tokio::time::timeout_at(deadline, self.busy.acquire()).await;
        let (_busy, left) = match (busy, time_left()) {
            (Ok(Ok(permit)), Some(left)) => (permit, left),
            (Ok(Err(closed)), _) => return Err(TryError::Io(std::io::Error::other(closed))),
            _ => return Err(TryError::PoolFull(started.elapsed())),
        };
        tokio::time::timeout(left, self.exchange_held(msg))
            .await
            .map_err(|_| TryError::Timeout(left))?
    }

    /// [`exchange`](Self::exchange) once it holds one of the connections' places (`busy`).
    async fn exchange_held(&self, msg: &[u8]) -> Result<Vec<u8>, TryError> {
        // A connection goes back to the pool only after an answer with this query's ID: one that read a
        // stray message (an answer that came after its query gave up) is out of step, and kept it would
        // hand every later query the answer before.
        let same_id = |answer: &[u8]| answer.get(..2) == msg.get(..2);
        if let Some(mut conn) = self.take_idle() {
            // A kept connection may have been closed by the server meanwhile, or be out of step: then try
            // a fresh one.
            if let Ok(answer) = framed_exchange(&mut conn, msg).await
                && same_id(&answer)
            {
                self.put_idle(conn);
                return Ok(answer);
            }
        }
        let connector = self
            .connector
            .as_ref()
            .map_err(|e| TryError::Tls(e.clone()))?;
        let name = self.name.as_ref().map_err(|e| TryError::Tls(e.clone()))?;
        let mut conn = connect_on(self.home.as_ref(), connector, self.addr, name).await?;
        let answer = framed_exchange(&mut conn, msg).await?;
        if same_id(&answer) {
            self.put_idle(conn);
        }
        Ok(answer)
    }
}

/// One length-prefixed query and answer on a stream (the DNS over TCP framing that DoT keeps).
async fn framed_exchange(conn: &mut TlsStream<TcpStream>, msg: &[u8]) -> Result<Vec<u8>, TryError> {
    let len = u16::try_from(msg.len()).map_err(|_| TryError::Mismatch)?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    conn.write_all(&framed).await?;
    conn.flush().await?;
    let mut lenb = [0u8; 2];
    conn.read_exact(&mut lenb).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(lenb))];
    conn.read_exact(&mut buf).await?;
    Ok(buf)
}

/// A DNS-over-HTTPS upstream with its HTTP/2 connection.
pub struct Doh {
    addr: SocketAddr,
    name: Result<ServerName<'static>, String>,
    uri: String,
    connector: Result<TlsConnector, String>,
    conn: tokio::sync::Mutex<Option<H2Conn>>,
    home: Option<Handle>,
}

impl Doh {
    /// A DoH upstream at `addr`, certificate valid for `name`, queries POSTed to `path`.
    pub fn new(
        addr: SocketAddr,
        name: &str,
        path: &str,
        connector: Result<TlsConnector, String>,
    ) -> Doh {
        let host = match name.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => name.to_string(),
        };
        let authority = if addr.port() == 443 {
            host
        } else {
            format!("{host}:{}", addr.port())
        };
        Doh {
            addr,
            name: server_name(name).map_err(|e| e.to_string()),
            uri: format!("https://{authority}{path}"),
            connector,
            conn: tokio::sync::Mutex::new(None),
            home: Handle::try_current().ok(),
        }
    }

    /// The HTTP/2 connection, opened (once, for all waiting queries) if there is none.
    async fn sender(&self) -> Result<H2Conn, TryError> {
        let mut guard = self.conn.lock().await;
        if guard
            .as_ref()
            .is_some_and(|c| c.life.stale.load(Ordering::Relaxed))
        {
            // Streams still open on the old connection finish; it closes when they have.
            guard.take();
        }
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let connector = self
            .connector
            .as_ref()
            .map_err(|e| TryError::Tls(e.clone()))?;
        let name = self.name.as_ref().map_err(|e| TryError::Tls(e.clone()))?;
        let tls = connect_on(self.home.as_ref(), connector, self.addr, name).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(TryError::Http(
                "server did not agree to HTTP/2 (ALPN h2)".into(),
            ));
        }
        let (send, connection) = h2::client::handshake(tls)
            .await
            .map_err(|e| TryError::Http(e.to_string()))?;
        let addr = self.addr;
        let driver = async move {
            if let Err(e) = connection.await {
                tracing::debug!(upstream = %addr, error = %e, "DoH connection closed");
            }
        };
        // The connection lives on the home runtime, with its socket (`connect_on`).
        match &self.home {
            Some(home) => home.spawn(driver),
            None => tokio::spawn(driver),
        };
        let conn = H2Conn {
            send,
            life: Arc::default(),
        };
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// One POST on `conn`, counting a response of any kind as a sign that the connection lives.
    async fn post_on(&self, conn: &H2Conn, msg: &[u8]) -> Result<Vec<u8>, PostError> {
        let suspect = Suspect::of(conn);
        let result = self.post(conn.send.clone(), msg).await;
        if !matches!(result, Err(PostError::Connection(_))) {
            conn.life.responses.fetch_add(1, Ordering::Relaxed);
        }
        suspect.clear();
        result
    }

    /// Sends one query (ID already set) as an HTTP/2 POST and returns the raw answer.
    pub async fn exchange(&self, msg: &[u8]) -> Result<Vec<u8>, TryError> {
        let conn = self.sender().await?;
        match self.post_on(&conn, msg).await {
            Ok(a) => Ok(a),
            Err(PostError::Connection(_)) => {
                // The kept connection is gone (GOAWAY, reset, idle close): open a new one, once (unless
                // another query has already).
                {
                    let mut kept = self.conn.lock().await;
                    if kept
                        .as_ref()
                        .is_some_and(|k| Arc::ptr_eq(&k.life, &conn.life))
                    {
                        kept.take();
                    }
                }
                let conn = self.sender().await?;
                self.post_on(&conn, msg).await.map_err(PostError::into_try)
            }
            Err(e) => Err(e.into_try()),
        }
    }

    async fn post(
        &self,
        send: h2::client::SendRequest<Bytes>,
        msg: &[u8],
    ) -> Result<Vec<u8>, PostError> {
        let mut send = send.ready().await.map_err(PostError::Connection)?;
        let req = http::Request::post(self.uri.as_str())
            .header(http::header::CONTENT_TYPE, "application/dns-message")
            .header(http::header::ACCEPT, "application/dns-message")
            .body(())
            .map_err(|e| PostError::Other(TryError::Http(e.to_string())))?;
        let (response, mut body_out) = send
            .send_request(req, false)
            .map_err(PostError::Connection)?;
        body_out
            .send_data(Bytes::copy_from_slice(msg), true)
            .map_err(PostError::Connection)?;
        let response = response.await.map_err(PostError::classify)?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(PostError::Other(TryError::Http(format!("status {status}"))));
        }
        let ctype = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ctype.starts_with("application/dns-message") {
            return Err(PostError::Other(TryError::Http(format!(
                "content type \"{ctype}\", not application/dns-message"
            ))));
        }
        let mut body = response.into_body();
        let mut out = Vec::with_capacity(512);
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(PostError::classify)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if out.len() + chunk.len() > MAX_MESSAGE {
                return Err(PostError::Other(TryError::Http("answer too large".into())));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// Whether a DoH failure is the connection's (retry on a new one) or this request's.
enum PostError {
    Connection(h2::Error),
    Stream(h2::Error),
    Other(TryError),
}

impl PostError {
    /// A closed or going-away connection is the connection's failure, anything else the stream's.
    fn classify(e: h2::Error) -> PostError {
        if e.is_io() || e.is_go_away() {
            PostError::Connection(e)
        } else {
            PostError::Stream(e)
        }
    }

    fn into_try(self) -> TryError {
        match self {
            PostError::Connection(e) | PostError::Stream(e) => TryError::Http(e.to_string()),
            PostError::Other(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot() -> Dot {
        let addr: SocketAddr = "127.0.0.1:853".parse().unwrap();
        Dot::new(addr, "dns.test", Err("no TLS in this test".into()))
    }

    /// A client held to a quarter (the default `max_inflight_per_client` of `max_inflight`).
    fn asker(key: u128) -> Asker {
        Asker {
            key,
            part: 1024,
            whole: 4096,
        }
    }

    /// The scope holds the forward once: an `async fn` around it held it twice, and a spawned forward's whole
    /// future is copied when its task starts and ends.
    #[test]
    fn on_behalf_of_adds_little_to_the_forward() {
        let forward = async {
            let buf = [7u8; 4096];
            tokio::task::yield_now().await;
            buf.iter().map(|&b| usize::from(b)).sum::<usize>()
        };
        let alone = std::mem::size_of_val(&forward);
        let scoped = std::mem::size_of_val(&on_behalf_of(Some(asker(1)), forward));
        assert!(
            alone >= 4096 && scoped < alone + 256,
            "forward {alone} B, in its scope {scoped} B"
        );
    }

    #[test]
    fn a_share_is_the_part_of_the_connections_the_forward_limit_is_of_the_forwards() {
        assert_eq!(share_of(asker(1)), 16);
        // An admin who let one (unlisted) router have every forward let it have every connection.
        let router = Asker {
            part: 4096,
            ..asker(1)
        };
        assert_eq!(share_of(router), DOT_BUSY_MAX);
        let one = Asker {
            part: 1,
            ..asker(1)
        };
        assert_eq!(share_of(one), 1);
    }

    #[tokio::test]
    async fn a_clients_share_waits_in_its_own_line_and_is_forgotten_when_unused() {
        let dot = dot();
        let share = share_of(asker(1));
        let mut held = Vec::new();
        for _ in 0..share {
            held.push(dot.share(asker(1)).await);
        }
        // Another client is not held up by the first one's full share.
        let other = dot.share(asker(2)).await;
        // The first client's next query waits ...
        let wait = tokio::time::timeout(Duration::from_millis(50), dot.share(asker(1))).await;
        assert!(wait.is_err(), "past its share, a client waits");
        // ... and a waiter that gave up (its try timed out) leaves no trace.
        assert_eq!(dot.shares.lock().unwrap()[&1].waiting, 0);
        // A place given back goes to the next waiter.
        let next = dot.share(asker(1));
        tokio::pin!(next);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut next)
                .await
                .is_err()
        );
        assert_eq!(dot.shares.lock().unwrap()[&1].waiting, 1);
        held.pop();
        let got = tokio::time::timeout(Duration::from_secs(5), &mut next)
            .await
            .expect("the waiter got the freed place");
        assert!(got.holds);
        assert_eq!(dot.shares.lock().unwrap()[&1].held, share);
        drop((got, held, other));
        assert!(
            dot.shares.lock().unwrap().is_empty(),
            "nothing held, nothing kept"
        );
    }
}
