//! A fast loopback upstream for the soak bench (`bench/soak.sh`): answers every A question with 192.0.2.1 and
//! every other type with NODATA, over UDP and TCP on one port. Not a resolver; a load target that can be
//! killed and restarted to make c2sink's upstream flap.
//!
//! Usage: soak_upstream 127.0.0.1:PORT

#[path = "../tests/common/raw.rs"]
mod raw;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// The answer to `q`: A 192.0.2.1 (TTL 30) or NODATA; `None` when `q` is not a query with one readable question.
fn answer(q: &[u8]) -> Option<Vec<u8>> {
    raw::fixed_a(q, Ipv4Addr::new(192, 0, 2, 1), 30, true)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5399".into())
        .parse()
        .map_err(|e| std::io::Error::other(format!("address: {e}")))?;
    let udp = Arc::new(UdpSocket::bind(addr).await?);
    let tcp = TcpListener::bind(addr).await?;
    eprintln!("soak_upstream listening on {addr}");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                loop {
                    let mut lb = [0u8; 2];
                    if s.read_exact(&mut lb).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(lb))];
                    if s.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    if let Some(r) = answer(&q) {
                        let mut f = (r.len() as u16).to_be_bytes().to_vec();
                        f.extend_from_slice(&r);
                        if s.write_all(&f).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, src)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(r) = answer(&buf[..n]) {
            let _ = udp.send_to(&r, src).await;
        }
    }
}
