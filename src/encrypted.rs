//! Encrypted upstreams: DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484), so queries leaving the edge
//! can be neither read nor changed on the way, and an answer comes only from a server whose certificate is
//! valid for the configured name (webpki roots, plus the CAs of `[upstream] ca_file`).
//!
//! Connections are kept and reused, and each carries many queries at once, so a burst of lookups (a page
//! load) costs no burst of TLS handshakes. DoT pipelines (RFC 7858 3.3, RFC 7766 6.2.1.1) over at most
//! [`DOT_CONNS_MAX`] connections per upstream: a query goes on the least-loaded one, under an ID unique
//! among that connection's queries in flight, and the connection's reader hands each answer to the query
//! with its ID, in whatever order answers come. Another connection is opened only when every open one
//! already has [`DOT_SPREAD_AT`] queries in flight. DoH keeps one HTTP/2 connection per upstream and sends
//! every query on it as its own stream. A kept connection that turns out closed is replaced, and the
//! queries it failed are asked once more, transparently.

use crate::upstream::TryError;
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Most DoT connections per upstream. RFC 7766 6.2.2 asks for as few as possible (ideally one); a few more
/// keep one lost segment (TCP head-of-line blocking) or a server that answers a connection's queries one at
/// a time from holding up every query, and stay far below any provider's per-client connection limit.
const DOT_CONNS_MAX: usize = 4;
/// Queries in flight on every open DoT connection before another is opened: light traffic rides one
/// connection, and only a burst of tens of names pays for more handshakes (in parallel, up to the cap).
const DOT_SPREAD_AT: usize = 16;
/// Most queries in flight on one DoT connection. With [`DOT_CONNS_MAX`] it makes 4096 per upstream, the
/// default `[server] max_inflight`, so this never queues what c2sink's own limits let through (a lower cap
/// would let one client, allowed a quarter of `max_inflight`, take every slot); it bounds a connection's
/// table, and keeps its IDs sparse (1024 of 65536) so a caller's random ID is nearly always free.
const DOT_INFLIGHT_MAX: usize = 1024;
/// A DoT connection with no query for this long is closed (servers close idle ones after some seconds).
const DOT_IDLE_FOR: Duration = Duration::from_secs(10);
/// Queued queries written to a DoT connection in one go, at most (bytes).
const DOT_WRITE_BATCH: usize = 16 * 1024;
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

/// Locks `m`, whatever a panicked holder left: the data stays consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A DNS-over-TLS upstream with its few kept connections, each carrying many queries at once.
pub struct Dot {
    addr: SocketAddr,
    name: Result<ServerName<'static>, String>,
    connector: Result<TlsConnector, String>,
    /// Connections that take new queries (at most [`DOT_CONNS_MAX`]); ended and retired ones are dropped
    /// from here on the next query.
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Queries in flight over all connections, [`DOT_CONNS_MAX`] × [`DOT_INFLIGHT_MAX`]: a query past
    /// that waits (within its timeout) for one to end.
    slots: Semaphore,
    home: Option<Handle>,
}

impl Dot {
    /// A DoT upstream at `addr` whose certificate must be valid for `name`.
    pub fn new(addr: SocketAddr, name: &str, connector: Result<TlsConnector, String>) -> Dot {
        Dot {
            addr,
            name: server_name(name).map_err(|e| e.to_string()),
            connector,
            conns: Mutex::new(Vec::new()),
            slots: Semaphore::new(DOT_CONNS_MAX * DOT_INFLIGHT_MAX),
            home: Handle::try_current().ok(),
        }
    }

    /// Sends one query (ID already set) and returns the raw answer, under the query's own ID.
    pub async fn exchange(&self, msg: &[u8]) -> Result<Vec<u8>, TryError> {
        let connector = self
            .connector
            .as_ref()
            .map_err(|e| TryError::Tls(e.clone()))?;
        let name = self.name.as_ref().map_err(|e| TryError::Tls(e.clone()))?;
        let len = u16::try_from(msg.len()).map_err(|_| TryError::Mismatch)?;
        let [a, b, ..] = *msg else {
            return Err(TryError::Mismatch);
        };
        let id = u16::from_be_bytes([a, b]);
        let mut frame = Vec::with_capacity(msg.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(msg);
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| TryError::Io(std::io::Error::other(e)))?;
        match self.ask(&frame, id, connector, name).await {
            // A kept connection the server closed (idle, or it had its fill of queries) while this query
            // was on it: asked once more, on a live or fresh connection, so no client sees that.
            Err(ended) if ended.after_handshake => self
                .ask(&frame, id, connector, name)
                .await
                .map_err(Ended::into_try),
            r => r.map_err(Ended::into_try),
        }
    }

    /// One framed query on one connection; its answer, or why that connection ended first.
    async fn ask(
        &self,
        frame: &[u8],
        id: u16,
        connector: &TlsConnector,
        name: &ServerName<'static>,
    ) -> Result<Vec<u8>, Ended> {
        let (mut ticket, answer) = self.place(id, connector, name);
        let mut frame = frame.to_vec();
        if let Some(wire_id) = frame.get_mut(2..4) {
            wire_id.copy_from_slice(&ticket.id.to_be_bytes());
        }
        let queued = Queued {
            id: ticket.id,
            serial: ticket.serial,
            frame,
        };
        let outcome = if ticket.conn.queue.send(queued).is_err() {
            Err(Ended::gone())
        } else {
            answer.await.unwrap_or_else(|_| Err(Ended::gone()))
        };
        ticket.done = true;
        outcome
    }

    /// Registers a query on the least-loaded connection, or on a new one while every open connection has
    /// [`DOT_SPREAD_AT`] in flight and there are fewer than [`DOT_CONNS_MAX`].
    fn place(
        &self,
        id: u16,
        connector: &TlsConnector,
        name: &ServerName<'static>,
    ) -> (Ticket, oneshot::Receiver<Outcome>) {
        let mut conns = lock(&self.conns);
        loop {
            conns.retain(|c| c.takes_queries());
            let least = conns
                .iter()
                .map(|c| (c.load(), c))
                .min_by_key(|(load, _)| *load)
                .map(|(load, c)| (load, c.clone()));
            match least {
                Some((load, conn)) if load < DOT_SPREAD_AT || conns.len() >= DOT_CONNS_MAX => {
                    // None: it ended since `retain`; look again.
                    if let Some(placed) = conn.register(id) {
                        return placed;
                    }
                }
                _ => {
                    let (conn, placed) = self.open(id, connector, name);
                    conns.push(conn);
                    return placed;
                }
            }
        }
    }

    /// A new connection with the query `id` already on it, connecting on the home runtime (see
    /// [`connect_on`]: its socket, reader and writer live there).
    fn open(
        &self,
        id: u16,
        connector: &TlsConnector,
        name: &ServerName<'static>,
    ) -> (Arc<Conn>, (Ticket, oneshot::Receiver<Outcome>)) {
        let (conn, queued) = Conn::new(self.addr);
        // Registered before the task starts, so a connection that fails at once fails this query too.
        let placed = conn.enter(&mut lock(&conn.state), id);
        let task = {
            let (conn, connector, name, addr) =
                (conn.clone(), connector.clone(), name.clone(), self.addr);
            async move {
                let (error, after_handshake) = match connect(&connector, addr, &name).await {
                    Ok(tls) => (conn.run(tls, queued).await, true),
                    Err(e) => (e, false),
                };
                conn.end(error, after_handshake);
            }
        };
        let handle = match &self.home {
            Some(home) => home.spawn(task),
            None => tokio::spawn(task),
        };
        let mut st = lock(&conn.state);
        if !st.ended {
            st.task = Some(handle.abort_handle());
        }
        drop(st);
        (conn, placed)
    }
}

impl Drop for Dot {
    /// Closes the kept connections with the upstream (a reload that drops this one, or the end).
    fn drop(&mut self) {
        for conn in lock(&self.conns).iter() {
            let task = lock(&conn.state).task.take();
            if let Some(task) = task {
                task.abort();
            }
        }
    }
}

/// What a query waiting on a connection gets: its answer, or why the connection ended first.
type Outcome = Result<Vec<u8>, Ended>;

/// Why a DoT connection ended, as each query still waiting on it hears.
#[derive(Clone)]
struct Ended {
    error: Arc<TryError>,
    /// The TLS handshake had succeeded: the server closed or broke a working connection, and the query
    /// may well be answered on another one.
    after_handshake: bool,
}

impl Ended {
    /// The connection's task is gone without a word (its runtime shut down).
    fn gone() -> Ended {
        Ended {
            error: Arc::new(TryError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "DoT connection closed",
            ))),
            after_handshake: false,
        }
    }

    fn into_try(self) -> TryError {
        let e = match Arc::try_unwrap(self.error) {
            Ok(e) => return e,
            Err(shared) => shared,
        };
        match &*e {
            TryError::Timeout(d) => TryError::Timeout(*d),
            TryError::Io(io) => TryError::Io(std::io::Error::new(io.kind(), io.to_string())),
            TryError::Malformed(w) => TryError::Malformed(*w),
            TryError::Mismatch => TryError::Mismatch,
            TryError::Tls(s) => TryError::Tls(s.clone()),
            TryError::Http(s) => TryError::Http(s.clone()),
            TryError::AllDown => TryError::AllDown,
            TryError::Refused => TryError::Refused,
        }
    }
}

/// A query written to a connection: its framed bytes, under the ID it has on that connection.
struct Queued {
    id: u16,
    serial: u64,
    frame: Vec<u8>,
}

/// A query waiting for its answer on a connection.
struct Waiter {
    /// The ID the caller gave the query, put back into the answer.
    caller_id: u16,
    serial: u64,
    answer: oneshot::Sender<Outcome>,
}

/// One kept DoT connection: a writer that sends queued queries (coalesced), a reader that hands each answer
/// to the query with its ID, and the table of queries in flight.
struct Conn {
    addr: SocketAddr,
    state: Mutex<ConnState>,
    /// Messages read on this connection, of any ID: that it still carries answers.
    messages: AtomicU64,
    queue: mpsc::UnboundedSender<Queued>,
    /// Rung when the last query in flight ends, so the idle timer starts then.
    idle: Notify,
}

struct ConnState {
    /// Queries written or to be written, by their ID on this connection.
    pending: HashMap<u16, Waiter>,
    /// Queries placed here that have not ended yet (answered, failed or given up), for placing and caps.
    load: usize,
    /// The connection has ended or is ending: it takes no query.
    ended: bool,
    /// It takes no new query, and is closed when its last one ends (see [`Ticket`]'s drop).
    retired: bool,
    /// When a query was last placed here or last ended.
    last_used: Instant,
    /// The connection's task (connect, then read and write), ended when the connection is given up.
    task: Option<AbortHandle>,
    /// Of the last query placed, so a query that gave up never removes the ID's next holder.
    serial: u64,
}

impl Conn {
    /// A connection to `addr` not connected yet, and the queue its writer will send.
    fn new(addr: SocketAddr) -> (Arc<Conn>, mpsc::UnboundedReceiver<Queued>) {
        let (queue, queued) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            addr,
            state: Mutex::new(ConnState {
                pending: HashMap::new(),
                load: 0,
                ended: false,
                retired: false,
                last_used: Instant::now(),
                task: None,
                serial: 0,
            }),
            messages: AtomicU64::new(0),
            queue,
            idle: Notify::new(),
        });
        (conn, queued)
    }

    fn takes_queries(&self) -> bool {
        let st = lock(&self.state);
        !st.ended && !st.retired
    }

    fn load(&self) -> usize {
        lock(&self.state).load
    }

    /// Places query `id` here unless the connection ended or was retired meanwhile.
    fn register(self: &Arc<Self>, id: u16) -> Option<(Ticket, oneshot::Receiver<Outcome>)> {
        let mut st = lock(&self.state);
        if st.ended || st.retired {
            return None;
        }
        Some(self.enter(&mut st, id))
    }

    /// Places query `id` here under that ID, or under a random one not in flight here if another query
    /// holds it (at most 4096 of 65536 are, so this ends quickly); the answer gets `id` back.
    fn enter(
        self: &Arc<Self>,
        st: &mut ConnState,
        id: u16,
    ) -> (Ticket, oneshot::Receiver<Outcome>) {
        let mut wire_id = id;
        while st.pending.contains_key(&wire_id) {
            wire_id = rand::random();
        }
        st.serial += 1;
        let (answer, receiver) = oneshot::channel();
        st.pending.insert(
            wire_id,
            Waiter {
                caller_id: id,
                serial: st.serial,
                answer,
            },
        );
        st.load += 1;
        st.last_used = Instant::now();
        let ticket = Ticket {
            conn: self.clone(),
            id: wire_id,
            serial: st.serial,
            messages_at: self.messages.load(Ordering::Relaxed),
            done: false,
        };
        (ticket, receiver)
    }

    /// Reads and writes until the connection fails or is idle for [`DOT_IDLE_FOR`]; why it ended.
    async fn run(
        &self,
        tls: TlsStream<TcpStream>,
        queued: mpsc::UnboundedReceiver<Queued>,
    ) -> TryError {
        let (rd, wr) = tokio::io::split(tls);
        let ended = tokio::select! {
            r = self.read_answers(rd) => r,
            r = self.write_queries(wr, queued) => r,
            () = self.idle_out() => Ok(()),
        };
        ended.err().unwrap_or_else(|| {
            TryError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "DoT connection closed idle",
            ))
        })
    }

    /// Reads messages and [`deliver`](Self::deliver)s each, until the connection fails.
    async fn read_answers(&self, rd: ReadHalf<TlsStream<TcpStream>>) -> Result<(), TryError> {
        let mut rd = BufReader::with_capacity(4096, rd);
        loop {
            let mut len = [0u8; 2];
            rd.read_exact(&mut len).await?;
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            rd.read_exact(&mut msg).await?;
            self.deliver(msg);
        }
    }

    /// Hands a message to the query waiting under its ID, with the caller's ID put back; a message for no
    /// query waiting here (an answer that came after its query gave up, or garbage) is dropped, and the
    /// connection stays in step.
    fn deliver(&self, mut msg: Vec<u8>) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        let [a, b, ..] = *msg.as_slice() else {
            return;
        };
        let id = u16::from_be_bytes([a, b]);
        let waiter = lock(&self.state).pending.remove(&id);
        match waiter {
            Some(w) => {
                if let Some(wire_id) = msg.get_mut(..2) {
                    wire_id.copy_from_slice(&w.caller_id.to_be_bytes());
                }
                let _ = w.answer.send(Ok(msg));
            }
            None => {
                tracing::debug!(upstream = %self.addr, id, "DoT message for no waiting query dropped");
            }
        }
    }

    /// Writes queued queries, all those already waiting (up to [`DOT_WRITE_BATCH`] bytes) in one write;
    /// a query that gave up before its turn is not sent.
    async fn write_queries(
        &self,
        mut wr: WriteHalf<TlsStream<TcpStream>>,
        mut queued: mpsc::UnboundedReceiver<Queued>,
    ) -> Result<(), TryError> {
        let mut buf = Vec::with_capacity(DOT_WRITE_BATCH);
        while let Some(first) = queued.recv().await {
            buf.clear();
            let mut next = Some(first);
            while let Some(q) = next {
                let waits = lock(&self.state)
                    .pending
                    .get(&q.id)
                    .is_some_and(|w| w.serial == q.serial);
                if waits {
                    buf.extend_from_slice(&q.frame);
                }
                next = if buf.len() < DOT_WRITE_BATCH {
                    queued.try_recv().ok()
                } else {
                    None
                };
            }
            if !buf.is_empty() {
                wr.write_all(&buf).await?;
                wr.flush().await?;
            }
        }
        // Never: the connection holds a sender of its own queue.
        Ok(())
    }

    /// Returns once no query has been placed or ended here for [`DOT_IDLE_FOR`] and none is in flight,
    /// the connection marked ended (so none is placed here meanwhile).
    async fn idle_out(&self) {
        loop {
            let due = {
                let mut st = lock(&self.state);
                if st.load > 0 {
                    None
                } else if st.last_used.elapsed() >= DOT_IDLE_FOR {
                    st.ended = true;
                    return;
                } else {
                    Some(st.last_used + DOT_IDLE_FOR)
                }
            };
            match due {
                Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
                None => self.idle.notified().await,
            }
        }
    }

    /// The connection ended: every query still waiting on it hears why.
    fn end(&self, error: TryError, after_handshake: bool) {
        let ended = Ended {
            error: Arc::new(error),
            after_handshake,
        };
        let mut st = lock(&self.state);
        st.ended = true;
        st.task = None;
        for (_, w) in st.pending.drain() {
            let _ = w.answer.send(Err(ended.clone()));
        }
    }
}

/// A query's place on a connection, given up when dropped: by the query when it ends, or with the query's
/// future when its caller's timeout ran out, which must free its ID and its share of the connection.
struct Ticket {
    conn: Arc<Conn>,
    /// The query's ID on this connection.
    id: u16,
    serial: u64,
    /// [`Conn::messages`] when the query was placed.
    messages_at: u64,
    /// The query got its answer, or heard that the connection ended.
    done: bool,
}

impl Drop for Ticket {
    /// A query given up with no message at all on its connection since it was placed retires that
    /// connection: it may have died without a reset (or never finished its handshake), and kept it would
    /// take every later query into the same silence until the kernel gave up on it (minutes). One slow name
    /// among answered ones leaves a live connection alone. The last query off a retired connection closes
    /// it, so an attempt that gets no handshake ends with its query.
    fn drop(&mut self) {
        let mut st = lock(&self.conn.state);
        if st
            .pending
            .get(&self.id)
            .is_some_and(|w| w.serial == self.serial)
        {
            st.pending.remove(&self.id);
        }
        st.load = st.load.saturating_sub(1);
        st.last_used = Instant::now();
        if !self.done && self.conn.messages.load(Ordering::Relaxed) == self.messages_at {
            st.retired = true;
        }
        if st.load == 0 {
            self.conn.idle.notify_one();
        }
        let close = if st.retired && st.load == 0 && !st.ended {
            st.ended = true;
            st.task.take()
        } else {
            None
        };
        drop(st);
        if let Some(task) = close {
            task.abort();
        }
    }
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

    fn conn() -> Arc<Conn> {
        Conn::new(SocketAddr::from(([127, 0, 0, 1], 853))).0
    }

    /// An answer under `id` to no question in particular.
    fn answer(id: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]);
        m
    }

    #[tokio::test]
    async fn an_id_in_flight_is_replaced_on_the_wire_and_the_answer_gets_the_callers_back() {
        let c = conn();
        let (mut first, first_rx) = c.register(7).expect("open");
        let (mut second, second_rx) = c.register(7).expect("open");
        assert_eq!(first.id, 7, "a free ID is kept");
        assert_ne!(second.id, 7, "unique among the queries in flight");
        // Answers in the other order: each reaches its own query, under the caller's ID.
        c.deliver(answer(second.id));
        c.deliver(answer(first.id));
        for rx in [second_rx, first_rx] {
            let got = rx.await.expect("sent").ok().expect("an answer");
            assert_eq!(got.get(..2), Some(&[0u8, 7][..]));
        }
        (first.done, second.done) = (true, true);
        drop((first, second));
        let st = lock(&c.state);
        assert_eq!((st.pending.len(), st.load, st.retired), (0, 0, false));
    }

    #[tokio::test]
    async fn a_message_for_no_waiting_query_is_dropped_and_the_connection_stays_in_step() {
        let c = conn();
        let (mut t, rx) = c.register(1).expect("open");
        c.deliver(answer(2));
        c.deliver(vec![0]);
        c.deliver(answer(1));
        assert!(rx.await.expect("sent").is_ok());
        t.done = true;
        drop(t);
        assert!(c.takes_queries());
    }

    #[test]
    fn a_query_given_up_frees_its_place_and_retires_a_silent_connection_only() {
        // Given up while other answers came: the connection lives, and the ID is free again.
        let c = conn();
        let (slow, _rx) = c.register(1).expect("open");
        let (mut other, _rx2) = c.register(2).expect("open");
        c.deliver(answer(2));
        other.done = true;
        drop(other);
        drop(slow);
        {
            let st = lock(&c.state);
            assert_eq!((st.pending.len(), st.load), (0, 0));
        }
        assert!(c.takes_queries(), "one slow name among answered ones");
        assert_eq!(c.register(1).expect("open").0.id, 1, "its ID is free");
        // Given up with no message at all since: retired, and closed with its last query.
        let c = conn();
        let (first, _rx) = c.register(1).expect("open");
        let (second, _rx2) = c.register(2).expect("open");
        drop(first);
        assert!(!c.takes_queries());
        assert!(!lock(&c.state).ended, "its other query still waits");
        drop(second);
        assert!(lock(&c.state).ended);
    }
}
