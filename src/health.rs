//! Health: a reserved name c2sink answers itself, and the client behind `c2sink healthcheck` that asks it.
//!
//! The name lies under `.invalid` (RFC 6761), so answering it locally never hides a real name, and the check
//! passes or fails on c2sink alone: a slow or dead upstream does not make a container "unhealthy" and get it
//! restarted for nothing (upstream trouble is what `/readyz` reports).

use crate::wire::Query;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The name c2sink answers itself, for health checks.
pub const NAME: &str = "healthcheck.c2sink.invalid";
/// The TXT string in the answer.
pub const TEXT: &str = "c2sink ok";

const TYPE_TXT: u16 = 16;
const CLASS_IN: u16 = 1;

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot send to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("wrong answer from {addr}: {why}")]
    Wrong { addr: SocketAddr, why: String },
}

/// The local answer to a question for [`NAME`]: TXT "c2sink ok" (TTL 0) for TXT, NODATA for other types.
pub fn answer(query: &Query<'_>) -> Vec<u8> {
    let txt = query.qtype == TYPE_TXT && query.qclass == CLASS_IN;
    crate::protocol::own_txt(query, txt.then_some(TEXT))
}

/// Where to ask a server listening on `listen`: a wildcard address is reached over its loopback.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The TXT query for [`NAME`] under `id`.
fn query_bytes(id: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(48);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in NAME.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&TYPE_TXT.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m
}

/// Asks `addr` over UDP for [`NAME`] TXT and accepts only the exact expected answer.
///
/// Tries up to three times within `timeout` (a lost datagram is not a dead server).
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let io = |source| HealthError::Io { addr, source };
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).map_err(io)?;
    sock.connect(addr).map_err(io)?;
    let deadline = Instant::now() + timeout;
    let per_try = timeout / 3;
    let mut buf = [0u8; 1500];
    let mut last_wrong = None;
    while Instant::now() < deadline {
        let id: u16 = rand::random();
        sock.send(&query_bytes(id)).map_err(io)?;
        let try_end = (Instant::now() + per_try).min(deadline);
        loop {
            let left = try_end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left)).map_err(io)?;
            match sock.recv(&mut buf) {
                Ok(n) => match verify(&buf[..n], id) {
                    Ok(()) => return Ok(()),
                    // Not our ID: a late answer to an earlier try; keep waiting.
                    Err(None) => {}
                    Err(Some(why)) => last_wrong = Some(why),
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                // "Connection refused": nothing listens there. Retrying will not help.
                Err(e) => return Err(io(e)),
            }
            if last_wrong.is_some() {
                break;
            }
        }
        if let Some(why) = last_wrong.take() {
            return Err(HealthError::Wrong { addr, why });
        }
    }
    Err(HealthError::Timeout { addr, timeout })
}

/// `Ok` for the expected answer, `Err(None)` for someone else's message, `Err(Some(why))` for a wrong answer.
fn verify(msg: &[u8], id: u16) -> Result<(), Option<String>> {
    let m = Message::from_vec(msg).map_err(|e| Some(format!("unparsable: {e}")))?;
    if m.metadata.id != id {
        return Err(None);
    }
    let rcode = m.metadata.response_code;
    if rcode != ResponseCode::NoError {
        return Err(Some(format!("rcode {rcode}")));
    }
    let ok = m.answers.iter().any(|r| {
        r.record_type() == RecordType::TXT
            && matches!(&r.data, RData::TXT(t) if t.txt_data.iter().any(|d| &d[..] == TEXT.as_bytes()))
    });
    if ok {
        Ok(())
    } else {
        Err(Some(format!(
            "no TXT \"{TEXT}\" in {} answer(s)",
            m.answers.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    #[test]
    fn wildcard_listen_is_probed_over_loopback() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(probe_addr(a("0.0.0.0:53")), a("127.0.0.1:53"));
        assert_eq!(probe_addr(a("[::]:5353")), a("[::1]:5353"));
        assert_eq!(probe_addr(a("192.0.2.7:53")), a("192.0.2.7:53"));
    }

    #[test]
    fn local_answer_is_what_the_checker_accepts() {
        let raw = query_bytes(0x1234);
        let q = wire::parse_query(&raw).expect("query");
        assert_eq!(q.name, NAME);
        let a = answer(&q);
        assert!(verify(&a, 0x1234).is_ok());
        assert_eq!(verify(&a, 0x4321), Err(None));
        wire::answer_shape(&a).expect("well formed");
    }

    #[test]
    fn other_types_get_nodata_which_the_checker_refuses() {
        let mut raw = query_bytes(7);
        let n = raw.len();
        raw[n - 3] = 1; // TXT -> A
        let q = wire::parse_query(&raw).expect("query");
        let a = answer(&q);
        let shape = wire::answer_shape(&a).expect("well formed");
        assert_eq!((shape.header.rcode(), shape.answers), (0, 0));
        assert!(matches!(verify(&a, 7), Err(Some(_))));
    }
}
