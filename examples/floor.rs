//! The do-nothing UDP responder of issue 7: one `recv_from` and one `send_to` per query, every query answered
//! with the same A record (0.0.0.0), nothing checked, logged or cached. What it costs per query is the
//! kernel's share of any UDP DNS server on this machine: the floor c2sink's CPU per query is compared with.
//!
//! `cargo run --release --example floor -- 127.0.0.6:5307` (bench/run.sh runs it as server `floor`).

use std::net::{SocketAddr, UdpSocket};

/// The answer record after the question: name = pointer to the question's name, A, IN, TTL 60, 0.0.0.0.
const ANSWER: [u8; 16] = [
    0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 0, 0, 0, 0,
];

/// Writes the canned answer to `query` into `out`; `None` for anything too short to echo a question.
fn answer(query: &[u8], out: &mut Vec<u8>) -> Option<()> {
    // The end of the question: the name's labels up to the root, then type and class.
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..at + 4)?;
    out.clear();
    out.extend_from_slice(query.get(..2)?); // ID
    out.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]); // QR RD RA, 1 question, 1 answer
    out.extend_from_slice(question);
    out.extend_from_slice(&ANSWER);
    Some(())
}

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
        if answer(&buf[..n], &mut out).is_some() {
            // A full send buffer loses this answer, as it would for any UDP server; the bench counts losses.
            let _ = sock.send_to(&out, from);
        }
    }
}
