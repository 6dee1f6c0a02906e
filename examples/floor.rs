//! The do-nothing UDP responder of issue 7: one `recv_from` and one `send_to` per query, every query answered
//! with the same A record (0.0.0.0), nothing checked, logged or cached. What it costs per query is the
//! kernel's share of any UDP DNS server on this machine: the floor c2sink's CPU per query is compared with.
//!
//! `cargo run --release --example floor -- 127.0.0.6:5307` (bench/run.sh runs it as server `floor`).

#[path = "../tests/common/raw.rs"]
mod raw;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| std::io::Error::other("usage: floor ADDRESS:PORT (e.g. 127.0.0.6:5307)"))?;
    let sock = UdpSocket::bind(addr)?;
    eprintln!("floor: answering every query on {addr}");
    let mut buf = [0u8; 1500];
    let mut out = Vec::with_capacity(1500);
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        // The question echoed (its end found by walking the name), one A record 0.0.0.0, TTL 60.
        if raw::fixed_a_into(&buf[..n], Ipv4Addr::UNSPECIFIED, 60, false, &mut out).is_some() {
            // A full send buffer loses this answer, as it would for any UDP server; the bench counts losses.
            let _ = sock.send_to(&out, from);
        }
    }
}
