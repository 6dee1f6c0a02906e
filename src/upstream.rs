//! Forwarding to the upstream resolvers: the client's query bytes go out with a fresh random ID from a fresh
//! random port, and the upstream's answer comes back whole, so nothing the client and upstream say is lost.
//!
//! Failover: upstreams are tried healthiest first; one that fails is moved to the back for a while, so a dead
//! server is not tried first on every query.

use crate::config::{UpstreamConfig, UpstreamSpec};
use crate::encrypted::{Doh, Dot};
use crate::wire::{self, AnswerShape, Query};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why one try against one upstream did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum TryError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed answer: {0}")]
    Malformed(#[from] wire::WireError),
    #[error("answer does not match the question")]
    Mismatch,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
}

/// Every upstream failed; the client gets SERVFAIL.
#[derive(Debug, thiserror::Error)]
#[error("all {tried} upstream(s) failed; last error from {last_server}: {last_error}")]
pub struct ForwardError {
    pub tried: usize,
    /// The upstream as configured.
    pub last_server: String,
    pub last_error: TryError,
}

/// An upstream's answer, checked for shape.
pub struct Answer {
    pub wire: Vec<u8>,
    pub shape: AnswerShape,
    pub server: SocketAddr,
}

struct Server {
    addr: SocketAddr,
    /// How queries reach it.
    transport: Transport,
    /// The upstream as configured, for logs and metric labels.
    label: String,
    /// Seconds from sending a query to a good answer (`c2sink_upstream_latency_seconds`).
    latency: metrics::Histogram,
    /// Tries that gave no good answer (`c2sink_upstream_failures_total`).
    failures: metrics::Counter,
    /// Consecutive failures.
    fails: AtomicU32,
    /// Milliseconds since `epoch` until which this server is tried last.
    benched_until: AtomicU64,
}

/// Plain DNS, or an encrypted transport with its kept connections.
enum Transport {
    Plain,
    Tls(Dot),
    Https(Doh),
}

/// The configured upstreams with their health.
pub struct Upstreams {
    servers: Vec<Server>,
    timeout: Duration,
    epoch: Instant,
    /// Answers dropped because their ID or question did not match (spoofing or confusion).
    pub mismatched: AtomicU64,
    /// Milliseconds since `epoch` of the last good answer, plus one; 0 = never.
    last_answer: AtomicU64,
}

/// Upper bound of an answer over TCP.
const MAX_TCP: usize = 65_535;
/// Receive buffer for UDP answers (the largest UDP payload).
const MAX_UDP: usize = 65_535;

impl Upstreams {
    /// Upstreams in the admin's order of preference, per `[upstream]`.
    pub fn new(cfg: &UpstreamConfig) -> Self {
        let needs = |f: fn(&UpstreamSpec) -> bool| cfg.servers.iter().any(f);
        let connector = |alpn: &[u8]| {
            crate::encrypted::tls_connector(&cfg.ca_certs, alpn).map_err(|e| {
                tracing::error!(error = %e, "cannot set up TLS for encrypted upstreams");
                e.to_string()
            })
        };
        let dot = needs(|s| matches!(s, UpstreamSpec::Tls { .. })).then(|| connector(b"dot"));
        let doh = needs(|s| matches!(s, UpstreamSpec::Https { .. })).then(|| connector(b"h2"));
        let no_tls = || Err("no TLS settings".to_string());
        Upstreams {
            servers: cfg
                .servers
                .iter()
                .map(|spec| {
                    let addr = spec.addr();
                    let label = spec.to_string();
                    let transport = match spec {
                        UpstreamSpec::Plain(_) => Transport::Plain,
                        UpstreamSpec::Tls { name, .. } => {
                            Transport::Tls(Dot::new(addr, name, dot.clone().unwrap_or_else(no_tls)))
                        }
                        UpstreamSpec::Https { name, path, .. } => Transport::Https(Doh::new(
                            addr,
                            name,
                            path,
                            doh.clone().unwrap_or_else(no_tls),
                        )),
                    };
                    Server {
                        addr,
                        transport,
                        latency: metrics::histogram!("c2sink_upstream_latency_seconds", "upstream" => label.clone()),
                        failures: metrics::counter!("c2sink_upstream_failures_total", "upstream" => label.clone()),
                        label,
                        fails: AtomicU32::new(0),
                        benched_until: AtomicU64::new(0),
                    }
                })
                .collect(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            epoch: Instant::now(),
            mismatched: AtomicU64::new(0),
            last_answer: AtomicU64::new(0),
        }
    }

    /// True if some upstream gave a good answer within `window` (for readiness).
    pub fn answered_within(&self, window: Duration) -> bool {
        let last = self.last_answer.load(Ordering::Relaxed);
        last > 0 && self.now_ms().saturating_sub(last - 1) <= window.as_millis() as u64
    }

    /// Asks the upstreams for the root's NS set, so an idle server can learn whether any upstream answers.
    pub async fn probe(&self) -> Result<(), ForwardError> {
        let mut raw = Vec::with_capacity(17);
        raw.extend_from_slice(&rand::random::<u16>().to_be_bytes());
        // RD set, one question: ". IN NS".
        raw.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]);
        let query = wire::parse_query(&raw).map_err(|e| ForwardError {
            tried: 0,
            last_server: "(probe)".to_string(),
            last_error: TryError::Malformed(e),
        })?;
        self.forward(&raw, &query).await.map(|_| ())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Servers in the order to try them: those not benched first, each group in config order.
    fn order(&self) -> Vec<usize> {
        let now = self.now_ms();
        let (mut ok, benched): (Vec<usize>, Vec<usize>) = (0..self.servers.len())
            .partition(|&i| self.servers[i].benched_until.load(Ordering::Relaxed) <= now);
        ok.extend(benched);
        ok
    }

    /// Sends `raw` (a client's query, parsed as `query`) upstream and returns the first good answer.
    pub async fn forward(&self, raw: &[u8], query: &Query<'_>) -> Result<Answer, ForwardError> {
        let mut last: Option<(String, TryError)> = None;
        let order = self.order();
        for &i in &order {
            let server = &self.servers[i];
            let started = Instant::now();
            match self.try_one(server, raw, query).await {
                Ok(a) => {
                    server.latency.record(started.elapsed().as_secs_f64());
                    server.fails.store(0, Ordering::Relaxed);
                    server.benched_until.store(0, Ordering::Relaxed);
                    self.last_answer
                        .store(self.now_ms().saturating_add(1), Ordering::Relaxed);
                    return Ok(a);
                }
                Err(e) => {
                    server.failures.increment(1);
                    let fails = server
                        .fails
                        .fetch_add(1, Ordering::Relaxed)
                        .saturating_add(1);
                    // Bench for 1 s, 2 s, 4 s ... up to 30 s after consecutive failures.
                    let bench = 1000u64 << fails.saturating_sub(1).min(5);
                    server
                        .benched_until
                        .store(self.now_ms() + bench.min(30_000), Ordering::Relaxed);
                    tracing::warn!(upstream = %server.label, error = %e, qname = %query.name, "upstream try failed");
                    last = Some((server.label.clone(), e));
                }
            }
        }
        let (last_server, last_error) =
            last.unwrap_or_else(|| ("(none)".to_string(), TryError::Mismatch));
        Err(ForwardError {
            tried: order.len(),
            last_server,
            last_error,
        })
    }

    /// One try against one server: UDP, then TCP if the UDP answer is truncated; or one encrypted exchange.
    async fn try_one(
        &self,
        server: &Server,
        raw: &[u8],
        query: &Query<'_>,
    ) -> Result<Answer, TryError> {
        let addr = server.addr;
        let id: u16 = rand::random();
        let mut out = raw.to_vec();
        wire::set_id(&mut out, id);
        let exchange = match &server.transport {
            Transport::Plain => None,
            Transport::Tls(dot) => {
                Some(tokio::time::timeout(self.timeout, dot.exchange(&out)).await)
            }
            Transport::Https(doh) => {
                Some(tokio::time::timeout(self.timeout, doh.exchange(&out)).await)
            }
        };
        if let Some(result) = exchange {
            let wire = result.map_err(|_| TryError::Timeout(self.timeout))??;
            let shape = check_answer(&wire, id, query).inspect_err(|_| {
                self.mismatched.fetch_add(1, Ordering::Relaxed);
            })?;
            return Ok(Answer {
                wire,
                shape,
                server: addr,
            });
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let answer = tokio::time::timeout_at(deadline, self.udp(addr, &out, id, query))
            .await
            .map_err(|_| TryError::Timeout(self.timeout))??;
        let answer = if answer.shape.header.truncated() {
            tokio::time::timeout(self.timeout, self.tcp(addr, &out, id, query))
                .await
                .map_err(|_| TryError::Timeout(self.timeout))??
        } else {
            answer
        };
        Ok(answer)
    }

    async fn udp(
        &self,
        addr: SocketAddr,
        out: &[u8],
        id: u16,
        query: &Query<'_>,
    ) -> Result<Answer, TryError> {
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await?;
        sock.connect(addr).await?;
        sock.send(out).await?;
        let mut buf = vec![0u8; MAX_UDP];
        loop {
            let n = sock.recv(&mut buf).await?;
            match check_answer(&buf[..n], id, query) {
                Ok(shape) => {
                    buf.truncate(n);
                    return Ok(Answer {
                        wire: buf,
                        shape,
                        server: addr,
                    });
                }
                Err(_) => {
                    // Not ours or garbage: keep waiting for the real answer until the deadline.
                    self.mismatched.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    async fn tcp(
        &self,
        addr: SocketAddr,
        out: &[u8],
        id: u16,
        query: &Query<'_>,
    ) -> Result<Answer, TryError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let len = u16::try_from(out.len()).map_err(|_| TryError::Mismatch)?;
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(out);
        stream.write_all(&framed).await?;
        let mut lenb = [0u8; 2];
        stream.read_exact(&mut lenb).await?;
        let n = usize::from(u16::from_be_bytes(lenb)).min(MAX_TCP);
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf).await?;
        let shape = check_answer(&buf, id, query).inspect_err(|_| {
            self.mismatched.fetch_add(1, Ordering::Relaxed);
        })?;
        Ok(Answer {
            wire: buf,
            shape,
            server: addr,
        })
    }
}

/// Accepts an answer only if it is a well-formed response to exactly our question under our ID.
fn check_answer(msg: &[u8], id: u16, query: &Query<'_>) -> Result<AnswerShape, TryError> {
    let header = wire::Header::read(msg)?;
    if header.id != id || !header.is_response() {
        return Err(TryError::Mismatch);
    }
    let echoed = wire::parse_query(msg)?;
    if echoed.name != query.name || echoed.qtype != query.qtype || echoed.qclass != query.qclass {
        return Err(TryError::Mismatch);
    }
    Ok(wire::answer_shape(msg)?)
}
