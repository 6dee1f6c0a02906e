//! The listeners: UDP sockets (several per address with SO_REUSEPORT, one per core) and a TCP acceptor,
//! both feeding the one pipeline.
//!
//! Every packet passes [`admission`](crate::admission) first. Work is bounded: queries waiting for an upstream
//! are capped (past the cap they get SERVFAIL at once), TCP connections are capped in total and per client, and
//! a TCP client that does not send a whole query (or read its answers) within the idle time is cut off.
//! Pipelined TCP queries are answered as each is ready, not one after another.

use crate::admission::{Admission, Admit, ClientSlot, ForwardSlot, ForwardSlots, PerClient};
use crate::events::Protocol;
use crate::pipeline::{Client, Decision, Pipeline};
use crate::udp_batch;
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest a UDP thread waits in the kernel before it looks for shutdown.
const UDP_WAIT: Duration = Duration::from_millis(200);
/// Largest UDP query read (anything longer is not a sane query).
const UDP_BUF: usize = 4096;
/// Queries from one TCP connection being forwarded at once.
const TCP_PIPELINE: usize = 64;
/// Read buffer of a TCP/DoT connection: pipelined queries that arrived together are taken in one read.
const STREAM_READ_BUF: usize = 4096;
/// Most bytes of answers gathered into one write on a TCP/DoT connection.
const STREAM_WRITE_MAX: usize = 16 * 1024;

/// Limits the listeners enforce.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub udp_sockets: usize,
    pub tcp_max_connections: usize,
    pub tcp_max_connections_per_client: usize,
    pub tcp_idle: Duration,
}

/// Sockets bound for one listen address.
pub struct Bound {
    /// Not yet registered with a runtime: each is served by the runtime that will own it.
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: TcpListener,
    /// The address actually bound (port filled in when the config said 0).
    pub addr: SocketAddr,
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    if addr.ip().is_unspecified() {
        // Before binding, so that no query arrives without its destination (answers leave from it).
        udp_batch::report_destination(&s, addr)?;
    }
    // A larger receive buffer rides out bursts without drops.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A listening TCP socket, IPv6 only on an IPv6 address, so that `0.0.0.0` and `[::]` may share a port.
pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Binds UDP and TCP on one address; with port 0, one free port serves both.
pub fn bind(addr: SocketAddr, udp_sockets: usize) -> std::io::Result<Bound> {
    let n = udp_sockets.max(1);
    let mut last_err = None;
    for _ in 0..20 {
        let first = udp_socket(addr)?;
        let actual = first.local_addr()?;
        let tcp = match tcp_listener(actual) {
            Ok(t) => t,
            Err(e) if addr.port() == 0 => {
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut udp = vec![first];
        for _ in 1..n {
            udp.push(udp_socket(actual)?);
        }
        return Ok(Bound {
            udp,
            tcp: TcpListener::from_std(tcp)?,
            addr: actual,
        });
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free port for UDP and TCP")))
}

/// Serves queries on one UDP socket until shutdown: each burst of waiting datagrams is read in one call,
/// and the answers ready at once (blocked, cached, refused) leave together in another ([`udp_batch`]).
/// Must run on a runtime of its own: while no query of its own waits for an upstream it blocks the thread
/// in the kernel's receive, for up to [`UDP_WAIT`].
async fn serve_udp(sock: udp_batch::Socket, shared: UdpShared, tracker: TaskTracker) {
    let UdpShared {
        admission,
        pipeline,
        forwards,
        shutdown,
        ..
    } = shared;
    let sock = Arc::new(sock);
    let mut rx = udp_batch::Receiver::new(UDP_BUF);
    let mut tx = udp_batch::Sender::default();
    // One shutdown waiter for the life of the loop, not one registered and dropped per datagram; it is
    // polled (which takes a lock) only when no datagram is waiting.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let runtime = tokio::runtime::Handle::current().metrics();
    // Rung by each forward as it ends, so that the loop can go back to waiting in the kernel at once rather
    // than after the next datagram.
    let forward_done = Arc::new(tokio::sync::Notify::new());
    // Checked once per wake-up too: under steady traffic a datagram is always waiting, so neither the
    // receive timeout nor the `cancelled` branch would ever end the loop.
    while !shutdown.is_cancelled() {
        let got = if runtime.num_alive_tasks() == 0 {
            // Nothing else on this thread's runtime (no query waits for an upstream): wait inside the
            // kernel's receive, with no event loop turn per wake-up (docs/performance.md).
            rx.recv_blocking(&sock)
        } else {
            tokio::select! {
                biased;
                r = rx.recv(&sock) => r,
                () = forward_done.notified() => continue,
                _ = &mut cancelled => return,
            }
        };
        if let Err(e) = got {
            if shutdown.is_cancelled() {
                return;
            }
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) {
                // ICMP errors from earlier sends surface here on some systems: keep serving, but do not
                // spin on an error that repeats.
                tracing::debug!(error = %e, "udp receive error");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            continue;
        }
        for (raw, src, local) in rx.iter() {
            let client = Client {
                addr: src,
                protocol: Protocol::Udp,
                from_host: sock.sent_by_host(src, local),
            };
            match admission.check_client(&client, raw) {
                Admit::Pass => {}
                Admit::Reply(r) => {
                    tx.push(src, local, r);
                    continue;
                }
                Admit::Drop => continue,
            }
            match pipeline.decide(raw, &client) {
                Decision::Reply(r) => tx.push(src, local, r),
                Decision::Drop => {}
                Decision::Forward => match forwards.take(&client) {
                    Some(slot) => spawn_forward(
                        &tracker,
                        raw,
                        (client, local),
                        (&sock, &pipeline),
                        slot,
                        &forward_done,
                    ),
                    None => tx.push(src, local, pipeline.shed(raw)),
                },
            }
        }
        tx.flush(&sock).await;
    }
}

/// Starts forwarding one UDP query; its answer is sent on `sock` when the upstream replies. Out of line:
/// the task's setup is large, and keeping it out of the receive loop keeps that loop's hot code compact.
#[inline(never)]
fn spawn_forward(
    tracker: &TaskTracker,
    raw: &[u8],
    (client, local): (Client, Option<udp_batch::Local>),
    (sock, pipeline): (&Arc<udp_batch::Socket>, &Arc<Pipeline>),
    slot: ForwardSlot,
    done: &Arc<tokio::sync::Notify>,
) {
    let raw = raw.to_vec();
    let (sock, pipeline, done) = (sock.clone(), pipeline.clone(), done.clone());
    // Boxed once here, the forward's future (kilobytes) is not copied again into the task and out of it.
    tracker.spawn(Box::pin(async move {
        let forward = pipeline.forward(&raw, &client);
        if let Some(r) = crate::encrypted::on_behalf_of(slot.asker(), forward).await {
            let _ = sock.send_to(&r, client.addr, local).await;
        }
        drop(slot);
        done.notify_one();
    }));
}

/// What a UDP listener shares with the rest of the server.
#[derive(Clone)]
pub struct UdpShared {
    pub admission: Arc<Admission>,
    pub pipeline: Arc<Pipeline>,
    pub forwards: Arc<ForwardSlots>,
    pub shutdown: CancellationToken,
    /// Longest wait, after shutdown, for the thread's queries still waiting on an upstream.
    pub drain: Duration,
}

/// Serves one UDP socket on a thread of its own with a single-threaded runtime (one socket per core, like
/// Unbound's threads): a burst's datagrams, their answers and their upstream queries stay on one thread, with
/// none of the cross-thread wake-ups a work-stealing runtime pays per burst (docs/performance.md). The
/// thread ends after shutdown, once its forwarded queries are answered or `drain` has passed.
pub fn spawn_udp_thread(
    sock: std::net::UdpSocket,
    shared: UdpShared,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("c2sink-udp".into())
        .spawn(move || {
            crate::sched::query_thread();
            rt.block_on(async move {
                let sock = match udp_batch::Socket::new(sock)
                    .and_then(|s| s.set_wait_limit(UDP_WAIT).map(|()| s))
                {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serve a UDP socket");
                        return;
                    }
                };
                let tracker = TaskTracker::new();
                let drain = shared.drain;
                serve_udp(sock, shared, tracker.clone()).await;
                tracker.close();
                if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
                    tracing::warn!(
                        "some UDP queries were still in flight after {drain:?}; stopping anyway"
                    );
                }
            });
        })
}

/// The accept errors of one listener, logged at most once a second. Out of file descriptors, `accept` fails
/// at once every time, and a loop retrying each 10 ms would log a hundred lines a second.
#[derive(Default)]
pub struct AcceptErrors {
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    /// Counts `e` and logs it (with how many came since the last line) unless a line went out less than a
    /// second ago; then waits a moment before the listener accepts again.
    pub async fn pause(&mut self, e: &std::io::Error, listener: &'static str, wait: Duration) {
        self.unlogged += 1;
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(error = %e, listener, errors = self.unlogged, "accept error");
            self.last_logged = Some(std::time::Instant::now());
            self.unlogged = 0;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Accepts TCP connections until shutdown, within `caps` (a per-client count of its own, the total shared).
#[allow(clippy::too_many_arguments)]
pub async fn serve_tcp(
    listener: TcpListener,
    caps: ConnectionCaps,
    admission: Arc<Admission>,
    pipeline: Arc<Pipeline>,
    forwards: Arc<ForwardSlots>,
    limits: Limits,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut errors = AcceptErrors::default();
    loop {
        let (stream, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    errors.pause(&e, "tcp", Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let client = Client {
            addr: src,
            protocol: Protocol::Tcp,
            from_host: connected_from_host(src, stream.local_addr()),
        };
        let Some(admitted) = caps.admit(&admission, &client) else {
            drop(stream);
            continue;
        };
        let (pipeline, forwards, shutdown) = (pipeline.clone(), forwards.clone(), shutdown.clone());
        let admission = admission.clone();
        let t = tracker.clone();
        tracker.spawn(async move {
            let _ = stream.set_nodelay(true);
            let (rd, wr) = stream.into_split();
            serve_stream(
                rd,
                wr,
                client,
                admission,
                pipeline,
                forwards,
                limits.tcp_idle,
                t,
                shutdown,
            )
            .await;
            drop(admitted);
        });
    }
}

/// The connection limits of a stream listener (TCP, DoT, DoH): access control in drop mode, the total cap
/// and the per-client cap, checked in that order at accept. The total is shared by every listener
/// ([`for_listener`](Self::for_listener)), so that `tcp_max_connections` bounds c2sink's sockets however
/// many addresses it listens on; the per-client cap is each listener's own, as documented.
pub struct ConnectionCaps {
    total: Arc<Semaphore>,
    per_client: Arc<PerClient>,
    per_client_max: usize,
}

/// What an admitted connection holds until it closes (dropping it frees its places).
pub(crate) struct Admitted {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _slot: ClientSlot,
}

impl ConnectionCaps {
    /// Empty caps per `limits`.
    pub fn new(limits: &Limits) -> ConnectionCaps {
        ConnectionCaps {
            total: Arc::new(Semaphore::new(limits.tcp_max_connections)),
            per_client: PerClient::new(limits.tcp_max_connections_per_client),
            per_client_max: limits.tcp_max_connections_per_client,
        }
    }

    /// Caps for one more listener: the same total, a per-client count of its own.
    pub fn for_listener(&self) -> ConnectionCaps {
        ConnectionCaps {
            total: self.total.clone(),
            per_client: PerClient::new(self.per_client_max),
            per_client_max: self.per_client_max,
        }
    }

    /// Admits a new connection from `client`, or `None` when it is to be closed at once: refused by access
    /// control in drop mode (nothing is held for it, not even a TLS handshake), or over a cap.
    pub(crate) fn admit(&self, admission: &Admission, client: &Client) -> Option<Admitted> {
        let src = client.addr;
        if !admission.allows_client(client) && admission.drops_denied() {
            admission.count_denied();
            return None;
        }
        let Ok(permit) = self.total.clone().try_acquire_owned() else {
            tracing::debug!(client = %src, "connection limit reached; closing");
            return None;
        };
        let Some(slot) = PerClient::enter(&self.per_client, src.ip()) else {
            tracing::debug!(client = %src, "per-client connection limit reached; closing");
            return None;
        };
        Some(Admitted {
            _permit: permit,
            _slot: slot,
        })
    }
}

/// Whether a TCP connection from `src` to `local` was opened by this host itself: its source is the address
/// it reached, which a handshake from outside could not complete with.
pub fn connected_from_host(src: SocketAddr, local: std::io::Result<SocketAddr>) -> bool {
    local.is_ok_and(|l| l.ip().to_canonical() == src.ip().to_canonical())
}

/// `answer`, padded to a multiple of 468 octets (RFC 8467 section 4.1) when `pad`.
pub fn padded(mut answer: Vec<u8>, pad: bool) -> Vec<u8> {
    if pad {
        crate::wire::pad(&mut answer, crate::wire::ANSWER_PAD_BLOCK);
    }
    answer
}

/// Appends `msg` with its two-octet length (RFC 1035 4.2.2); a message too long to frame is skipped.
fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    if let Ok(len) = u16::try_from(msg.len()) {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(msg);
    }
}

#[allow(clippy::too_many_arguments)]
/// Serves length-prefixed DNS messages on one stream (TCP, or DNS over TLS), given as its read and write
/// halves, until it closes or idles out.
pub async fn serve_stream<R, W>(
    rd: R,
    mut wr: W,
    client: Client,
    admission: Arc<Admission>,
    pipeline: Arc<Pipeline>,
    forwards: Arc<ForwardSlots>,
    idle: Duration,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_PIPELINE);
    let writer = tracker.spawn(async move {
        let mut out = Vec::with_capacity(1024);
        while let Some(msg) = rx.recv().await {
            frame(&mut out, &msg);
            // Answers already waiting go out in the same write: the client is woken once for all of them
            // (one connection with 100 queries in flight: 130k -> 410k qps, docs/performance.md).
            while out.len() < STREAM_WRITE_MAX
                && let Ok(msg) = rx.try_recv()
            {
                frame(&mut out, &msg);
            }
            if out.is_empty() {
                continue;
            }
            // A client that does not read its answers is cut off like one that does not send.
            match tokio::time::timeout(idle, wr.write_all(&out)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            // An idle connection does not keep the room a burst of large answers needed.
            out.clear();
            out.shrink_to(STREAM_WRITE_MAX);
        }
        let _ = wr.shutdown().await;
    });
    let per_conn = Arc::new(Semaphore::new(TCP_PIPELINE));
    let mut rd = tokio::io::BufReader::with_capacity(STREAM_READ_BUF, rd);
    loop {
        // The whole message (length and body) must arrive within the idle time: a slow sender cannot stretch it.
        let read = async {
            let mut lenb = [0u8; 2];
            rd.read_exact(&mut lenb).await?;
            let n = usize::from(u16::from_be_bytes(lenb));
            let mut msg = vec![0u8; n];
            rd.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(msg)
        };
        let msg = tokio::select! {
            r = tokio::time::timeout(idle, read) => match r {
                Ok(Ok(m)) => m,
                _ => break,
            },
            _ = shutdown.cancelled() => break,
        };
        // Shorter than a header (an empty frame, say) is no DNS message but a broken stream, and a response
        // (QR set) is no query: answering nothing while the idle timer starts again would let a client hold
        // the connection for free. Close it, as Unbound does for the first.
        if msg.len() < crate::wire::HEADER_LEN || msg[2] & 0x80 != 0 {
            break;
        }
        // Over TLS, the answer to a padded query is padded too (RFC 7830 section 4).
        let pad = client.protocol == Protocol::Dot && crate::wire::padding_asked(&msg);
        match admission.check_client(&client, &msg) {
            Admit::Pass => {}
            Admit::Reply(r) => {
                if tx.send(padded(r, pad)).await.is_err() {
                    break;
                }
                continue;
            }
            Admit::Drop => continue,
        }
        match pipeline.decide(&msg, &client) {
            Decision::Reply(r) => {
                if tx.send(padded(r, pad)).await.is_err() {
                    break;
                }
            }
            Decision::Drop => {}
            Decision::Forward => {
                let Ok(conn_permit) = per_conn.clone().acquire_owned().await else {
                    break;
                };
                match forwards.take(&client) {
                    Some(slot) => {
                        let (tx, pipeline) = (tx.clone(), pipeline.clone());
                        // Boxed once, as a UDP forward is (`spawn_forward`).
                        tracker.spawn(Box::pin(async move {
                            let forward = pipeline.forward(&msg, &client);
                            let key = slot.asker();
                            if let Some(r) = crate::encrypted::on_behalf_of(key, forward).await {
                                let _ = tx.send(padded(r, pad)).await;
                            }
                            drop((slot, conn_permit));
                        }));
                    }
                    None => {
                        let _ = tx.send(padded(pipeline.shed(&msg), pad)).await;
                    }
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query that arrives between binding and serving (c2sink logs "listening" before its UDP threads
    /// take their sockets) still says which address it was sent to, so its answer leaves from that address.
    #[tokio::test]
    async fn a_wildcard_socket_knows_the_destination_of_a_query_queued_before_serving() {
        let sock = udp_socket("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = sock.local_addr().unwrap().port();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"early", ("127.0.0.2", port)).unwrap();
        let sock = udp_batch::Socket::new(sock).unwrap();
        let mut rx = udp_batch::Receiver::new(64);
        assert_eq!(rx.recv(&sock).await.unwrap(), 1);
        let (d, _, local) = rx.iter().next().unwrap();
        assert_eq!(d, b"early");
        assert_eq!(local, Some(udp_batch::Local::V4([127, 0, 0, 2].into())));
    }
}
