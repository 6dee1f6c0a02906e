//! Forwarding to the upstream resolvers: the client's query bytes go out with a fresh random ID from a fresh
//! random port, and the upstream's answer comes back whole, so nothing the client and upstream say is lost.
//!
//! Failover: upstreams are tried healthiest first; one that fails is moved to the back for a while, so a dead
//! server is not tried first on every query.

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
}

/// Every upstream failed; the client gets SERVFAIL.
#[derive(Debug, thiserror::Error)]
#[error("all {tried} upstream(s) failed; last error from {last_server}: {last_error}")]
pub struct ForwardError {
    pub tried: usize,
    pub last_server: SocketAddr,
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
    /// Consecutive failures.
    fails: AtomicU32,
    /// Milliseconds since `epoch` until which this server is tried last.
    benched_until: AtomicU64,
}

/// The configured upstreams with their health.
pub struct Upstreams {
    servers: Vec<Server>,
    timeout: Duration,
    epoch: Instant,
    /// Answers dropped because their ID or question did not match (spoofing or confusion).
    pub mismatched: AtomicU64,
}

/// Upper bound of an answer over TCP.
const MAX_TCP: usize = 65_535;
/// Receive buffer for UDP answers (the largest UDP payload).
const MAX_UDP: usize = 65_535;

impl Upstreams {
    /// Upstreams in the admin's order of preference.
    pub fn new(addrs: &[SocketAddr], timeout: Duration) -> Self {
        Upstreams {
            servers: addrs
                .iter()
                .map(|&addr| Server {
                    addr,
                    fails: AtomicU32::new(0),
                    benched_until: AtomicU64::new(0),
                })
                .collect(),
            timeout,
            epoch: Instant::now(),
            mismatched: AtomicU64::new(0),
        }
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
        let mut last: Option<(SocketAddr, TryError)> = None;
        let order = self.order();
        for &i in &order {
            let server = &self.servers[i];
            match self.try_one(server.addr, raw, query).await {
                Ok(a) => {
                    server.fails.store(0, Ordering::Relaxed);
                    server.benched_until.store(0, Ordering::Relaxed);
                    return Ok(a);
                }
                Err(e) => {
                    let fails = server
                        .fails
                        .fetch_add(1, Ordering::Relaxed)
                        .saturating_add(1);
                    // Bench for 1 s, 2 s, 4 s ... up to 30 s after consecutive failures.
                    let bench = 1000u64 << fails.saturating_sub(1).min(5);
                    server
                        .benched_until
                        .store(self.now_ms() + bench.min(30_000), Ordering::Relaxed);
                    tracing::warn!(upstream = %server.addr, error = %e, qname = %query.name, "upstream try failed");
                    last = Some((server.addr, e));
                }
            }
        }
        let (last_server, last_error) = last.unwrap_or((
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            TryError::Mismatch,
        ));
        Err(ForwardError {
            tried: order.len(),
            last_server,
            last_error,
        })
    }

    /// One try against one server: UDP, then TCP if the UDP answer is truncated.
    async fn try_one(
        &self,
        addr: SocketAddr,
        raw: &[u8],
        query: &Query<'_>,
    ) -> Result<Answer, TryError> {
        let id: u16 = rand::random();
        let mut out = raw.to_vec();
        wire::set_id(&mut out, id);
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
        // Room for the largest datagram, left uninitialized: zeroing 64 KiB per query cost more than the
        // rest of the forward.
        let mut buf = Vec::with_capacity(MAX_UDP);
        loop {
            buf.clear();
            let n = sock.recv_buf(&mut buf).await?;
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
    // The question must come back as asked: the same name up to case (length octets are never letters, so
    // a case-blind compare keeps the label structure), the same type and class.
    let q = query.question;
    let (qname, qfixed) = q.split_at(q.len().saturating_sub(4));
    let echoed = msg
        .get(wire::HEADER_LEN..wire::HEADER_LEN + q.len())
        .ok_or(TryError::Mismatch)?;
    let (ename, efixed) = echoed.split_at(qname.len());
    if header.qdcount != 1 || !ename.eq_ignore_ascii_case(qname) || efixed != qfixed {
        return Err(TryError::Mismatch);
    }
    Ok(wire::answer_shape(msg)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u16, flags: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn answer_must_echo_our_id_and_question_up_to_case() {
        let raw = message(7, 0x0100, "Www.Example.com", 1);
        let query = wire::parse_query(&raw).expect("query");
        let ok = message(7, 0x8180, "www.EXAMPLE.com", 1);
        assert!(check_answer(&ok, 7, &query).is_ok());
        let wrong_id = message(8, 0x8180, "www.example.com", 1);
        assert!(matches!(
            check_answer(&wrong_id, 7, &query),
            Err(TryError::Mismatch)
        ));
        let not_response = message(7, 0x0100, "www.example.com", 1);
        assert!(matches!(
            check_answer(&not_response, 7, &query),
            Err(TryError::Mismatch)
        ));
        let other_name = message(7, 0x8180, "www.example.org", 1);
        assert!(matches!(
            check_answer(&other_name, 7, &query),
            Err(TryError::Mismatch)
        ));
        // Types 65 (0x41) and 97 (0x61) differ only by "case" as bytes: they must not match.
        let raw65 = message(7, 0x0100, "a.b", 65);
        let query65 = wire::parse_query(&raw65).expect("query");
        let ans97 = message(7, 0x8180, "a.b", 97);
        assert!(matches!(
            check_answer(&ans97, 7, &query65),
            Err(TryError::Mismatch)
        ));
        let short = &ok[..ok.len() - 3];
        assert!(check_answer(short, 7, &query).is_err());
    }
}
