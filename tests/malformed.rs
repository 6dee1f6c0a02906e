//! Hostile input over UDP and TCP against the real binary: every malformed message gets FORMERR (or the
//! RCODE its defect calls for) or nothing, every reply is a well-formed DNS message, and a correct query is
//! answered correctly right after each batch.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const UP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

/// What a malformed message must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// No reply at all.
    Nothing,
    /// A reply with this RCODE; `true` when it must carry an OPT record.
    Rcode(u16, bool),
    /// Any well-formed reply (or none).
    Anything,
}

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// The named cases, each with its own ID.
fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let mut v: Vec<(&'static str, Vec<u8>, Expect)> = Vec::new();
    let good = query(0, "case.example", TYPE_A);
    for n in 0..12 {
        v.push(("truncated header", good[..n].to_vec(), Nothing));
    }
    let mut m = header(0, 0x0100, 1, 0, 0, 0);
    m.push(64);
    m.extend_from_slice(&[b'a'; 64]);
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    v.push(("label of 64 octets", m, Rcode(FORMERR, false)));
    let mut m = header(0, 0x0100, 1, 0, 0, 0);
    m.extend_from_slice(&[63, b'a', b'b']);
    v.push(("label past the end", m, Rcode(FORMERR, false)));
    let mut m = header(0, 0x0100, 1, 0, 0, 0);
    for _ in 0..5 {
        m.push(60);
        m.extend_from_slice(&[b'x'; 60]);
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    v.push(("name over 255 octets", m, Rcode(FORMERR, false)));
    let mut m = header(0, 0x0100, 1, 0, 0, 0);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    v.push(("pointer to itself in question", m, Rcode(FORMERR, false)));
    let mut m = header(0, 0x0100, 1, 0, 0, 0);
    m.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
    v.push(("pointer loop in question", m, Rcode(FORMERR, false)));
    let mut m = query(0, "loop-in-additional.example", TYPE_A);
    let at = m.len() as u8;
    m.extend_from_slice(&[0xc0, at, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    m[11] = 1;
    v.push(("pointer loop in additional", m, Anything));
    let mut m = query(0, "a.example", TYPE_A);
    m[10] = 0x40; // arcount far beyond the message
    v.push(("additional count past the end", m, Rcode(FORMERR, false)));
    let mut m = header(0, 0x0100, 0, 0, 0, 0);
    v.push(("zero questions", m.clone(), Rcode(FORMERR, false)));
    add_opt(&mut m, 1232, 0, false);
    v.push(("zero questions with OPT", m, Rcode(FORMERR, true)));
    let mut m = query(0, "two.example", TYPE_A);
    m[5] = 2;
    m.extend_from_slice(&query(0, "second.example", TYPE_A)[12..]);
    v.push(("two questions", m, Rcode(FORMERR, false)));
    let mut m = query(0, "big-payload.example", TYPE_A);
    add_opt(&mut m, 65535, 0, false);
    v.push(("EDNS payload 65535", m, Rcode(NOERROR, false)));
    let mut m = query(0, "zero-payload.example", TYPE_A);
    add_opt(&mut m, 0, 0, false);
    v.push(("EDNS payload 0", m, Rcode(NOERROR, false)));
    let mut m = query(0, "dup-opt.example", TYPE_A);
    add_opt(&mut m, 1232, 0, false);
    add_opt(&mut m, 4096, 0, true);
    v.push(("duplicate OPT", m, Rcode(FORMERR, true)));
    let mut m = query(0, "edns-v1.example", TYPE_A);
    add_opt(&mut m, 1232, 1, false);
    v.push(("EDNS version 1", m, Rcode(BADVERS, true)));
    let mut m = query(0, "edns-v255.example", TYPE_A);
    add_opt(&mut m, 1232, 255, true);
    v.push(("EDNS version 255", m, Rcode(BADVERS, true)));
    let mut m = query(0, "opt-rdata.example", TYPE_A);
    add_opt(&mut m, 1232, 0, false);
    let n = m.len();
    m[n - 1] = 200; // rdlength beyond the end
    v.push(("OPT rdata past the end", m, Rcode(FORMERR, false)));
    // RFC 6891 6.1.2: OPT belongs to the root, and its options fill its data exactly (Unbound: FORMERR).
    let mut m = query(0, "opt-owner.example", TYPE_A);
    m.extend_from_slice(&[1, b'x', 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    m[11] = 1;
    v.push(("OPT owned by a name, not the root", m, Rcode(FORMERR, true)));
    let mut m = query(0, "opt-option.example", TYPE_A);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 6, 0, 10, 0, 8, 1, 2]);
    m[11] = 1;
    v.push((
        "EDNS option longer than the OPT's data",
        m,
        Rcode(FORMERR, true),
    ));
    let mut m = query(0, "opt-tail.example", TYPE_A);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 7, 0, 10, 0, 2, 1, 2, 9]);
    m[11] = 1;
    v.push((
        "a stray octet after the EDNS options",
        m,
        Rcode(FORMERR, true),
    ));
    let mut m = query(0, "opt-ok.example", TYPE_A);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 6, 0, 10, 0, 2, 1, 2]);
    m[11] = 1;
    v.push(("a well-formed EDNS option", m, Rcode(NOERROR, true)));
    let mut m = query(0, "response.example", TYPE_A);
    m[2] |= 0x80;
    v.push(("QR set", m, Nothing));
    let mut m = query(0, "status.example", TYPE_A);
    m[2] = 0x10; // opcode 2, STATUS
    v.push(("opcode STATUS", m, Rcode(NOTIMP, false)));
    let mut m = query(0, "update.example", 6);
    m[2] = 0x28; // opcode 5, UPDATE
    add_opt(&mut m, 1232, 0, false);
    v.push(("opcode UPDATE with OPT", m, Rcode(NOTIMP, true)));
    v.push((
        "ANY for a forwarded name",
        query(0, "any.example", TYPE_ANY),
        Rcode(NOERROR, false),
    ));
    v.push((
        "ANY for a blocked name",
        query(0, BLOCKED, TYPE_ANY),
        Rcode(NOERROR, false),
    ));
    let mut m = query(0, "tc-set.example", TYPE_A);
    m[2] |= 0x02;
    v.push(("TC set in a query", m, Rcode(FORMERR, false)));
    let mut m = query(0, "stray-bits.example", TYPE_A);
    m[2] |= 0x04; // AA
    m[3] = 0xc5; // RA, Z, RCODE 5
    v.push(("AA, RA, Z and an RCODE set", m, Rcode(NOERROR, false)));
    let mut m = query(0, "trailing.example", TYPE_A);
    m.extend_from_slice(&[0xde, 0xad]);
    v.push(("trailing bytes", m, Anything));
    for (i, c) in v.iter_mut().enumerate() {
        if c.1.len() >= 2 {
            c.1[..2].copy_from_slice(&(0x1000 + i as u16).to_be_bytes());
        }
    }
    v
}

fn check(name: &str, reply: Option<&Vec<u8>>, expect: Expect) {
    let parsed =
        reply.map(|r| parse(r).unwrap_or_else(|e| panic!("{name}: reply not well formed: {e}")));
    if let Some(r) = &parsed {
        assert!(r.is_response(), "{name}: reply without QR");
    }
    match expect {
        Expect::Nothing => assert!(
            parsed.is_none(),
            "{name}: expected no reply, got {parsed:?}"
        ),
        Expect::Rcode(rcode, opt) => {
            let r = parsed.unwrap_or_else(|| panic!("{name}: no reply"));
            assert_eq!(r.rcode, rcode, "{name}: {r:?}");
            if opt {
                assert!(r.opt.is_some(), "{name}: reply lacks OPT");
                assert_eq!(r.opt.map(|o| o.1), Some(0), "{name}: our EDNS version is 0");
            }
        }
        Expect::Anything => {}
    }
}

/// Sends every message over UDP, then a sentinel; returns the replies once the sentinel and every reply
/// with an ID in `want` are in (forwarded ones may come after the sentinel's) and no other came for
/// [`QUIET`]. Sends in small chunks and reads in between, so the client's own receive buffer never
/// overflows (which would lose replies and fail the test for nothing).
fn udp_batch(c: &C2sink, msgs: &[Vec<u8>], want: &[u16]) -> Vec<(u16, Vec<u8>)> {
    let s = udp_client("127.0.0.1", Duration::from_millis(20));
    let mut out = Vec::new();
    let mut sentinel_seen = false;
    let mut buf = [0u8; 65535];
    let mut take =
        |s: &std::net::UdpSocket, out: &mut Vec<(u16, Vec<u8>)>, seen: &mut bool| -> bool {
            match s.recv(&mut buf) {
                Ok(n) => {
                    assert!(n >= 2, "reply shorter than an ID");
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    if id == 0xfff0 {
                        let r = parse(&buf[..n]).expect("parse");
                        assert_eq!(r.addrs(), vec![UP]);
                        *seen = true;
                    }
                    out.push((id, buf[..n].to_vec()));
                    true
                }
                Err(_) => false,
            }
        };
    for chunk in msgs.chunks(25) {
        for m in chunk {
            s.send_to(m, c.addr()).expect("send");
        }
        while take(&s, &mut out, &mut sentinel_seen) {}
    }
    let sentinel = query(0xfff0, "sentinel-udp.example", TYPE_A);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next_send = Instant::now();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        if !sentinel_seen && Instant::now() >= next_send {
            s.send_to(&sentinel, c.addr()).expect("send");
            next_send = Instant::now() + Duration::from_secs(2);
        }
        if take(&s, &mut out, &mut sentinel_seen) {
            quiet_since = Instant::now();
        } else if sentinel_seen && quiet_since.elapsed() > QUIET && all_in(&out, want) {
            break;
        }
    }
    assert!(sentinel_seen, "sentinel not answered");
    out
}

/// How long no reply must come, once the sentinel's and every awaited one are in, before a batch is taken
/// as answered: time for a reply that should not come at all (it would be answered at once, not
/// forwarded), and for stragglers among the random messages, whose replies are not known in advance (a
/// reply later than this is not checked; none is awaited).
const QUIET: Duration = Duration::from_millis(500);

/// Whether a reply with each ID in `want` is among `replies`.
fn all_in(replies: &[(u16, Vec<u8>)], want: &[u16]) -> bool {
    want.iter().all(|w| replies.iter().any(|(id, _)| id == w))
}

/// Replies by ID, where every ID must have at most one reply.
fn by_id(replies: Vec<(u16, Vec<u8>)>) -> HashMap<u16, Vec<u8>> {
    let mut out = HashMap::new();
    for (id, r) in replies {
        // The sentinel may be sent twice if its first answer was slow; every other ID is sent once.
        assert!(
            out.insert(id, r).is_none() || id == 0xfff0,
            "two replies for id {id:#x}"
        );
    }
    out
}

/// Same over one TCP connection (pipelined), with proper framing.
fn tcp_batch(c: &C2sink, msgs: &[Vec<u8>], want: &[u16]) -> Vec<(u16, Vec<u8>)> {
    let mut s = tcp_connect_from("127.0.0.1", c.addr());
    for m in msgs {
        tcp_send(&mut s, m).expect("send");
    }
    tcp_send(&mut s, &query(0xfff1, "sentinel-tcp.example", TYPE_A)).expect("send");
    let mut out = Vec::new();
    loop {
        let r = tcp_read(&mut s).expect("reply before the sentinel's");
        assert!(r.len() >= 2);
        let id = u16::from_be_bytes([r[0], r[1]]);
        out.push((id, r));
        if id == 0xfff1 {
            break;
        }
    }
    // Forwarded messages may still be answered after the sentinel.
    s.set_read_timeout(Some(QUIET)).expect("timeout");
    let deadline = Instant::now() + PATIENCE;
    loop {
        match tcp_read(&mut s) {
            Ok(r) => out.push((u16::from_be_bytes([r[0], r[1]]), r)),
            Err(_) if !all_in(&out, want) && Instant::now() < deadline => {}
            Err(_) => break,
        }
    }
    out
}

fn start() -> (Upstream, C2sink) {
    let up = Upstream::answering(UP);
    let c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "tcp_idle_timeout_ms = 1000",
        "",
    );
    (up, c)
}

#[test]
fn named_malformed_cases_over_udp_and_tcp() {
    let (up, c) = start();
    let cases = cases();
    let msgs: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
    // The replies that must come, some of them (forwarded) after the sentinel's.
    let want: Vec<u16> = cases
        .iter()
        .filter(|c| matches!(c.2, Expect::Rcode(..)))
        .map(|c| u16::from_be_bytes([c.1[0], c.1[1]]))
        .collect();
    let replies = by_id(udp_batch(&c, &msgs, &want));
    for (name, m, expect) in &cases {
        let id = (m.len() >= 2).then(|| u16::from_be_bytes([m[0], m[1]]));
        check(
            &format!("udp {name}"),
            id.and_then(|id| replies.get(&id)),
            *expect,
        );
    }
    // Over TCP a frame that is no query (shorter than a header, an empty one too, or a response) gets no
    // reply and closes the connection (as Unbound does for the first), so each goes on a connection of its own.
    let no_query = |m: &Vec<u8>| m.len() < 12 || m[2] & 0x80 != 0;
    for frame in msgs.iter().filter(|m| no_query(m)) {
        let mut s = tcp_connect_from("127.0.0.1", c.addr());
        tcp_send(&mut s, frame).expect("send");
        assert!(
            closed_by_peer(&mut s, Duration::from_secs(10)),
            "{frame:?}: closed"
        );
    }
    let framed: Vec<Vec<u8>> = msgs.iter().filter(|m| !no_query(m)).cloned().collect();
    let replies = by_id(tcp_batch(&c, &framed, &want));
    for (name, m, expect) in &cases {
        let id = (m.len() >= 2).then(|| u16::from_be_bytes([m[0], m[1]]));
        check(
            &format!("tcp {name}"),
            id.and_then(|id| replies.get(&id)),
            *expect,
        );
    }
    // The RFC 8482 answer for a forwarded name, and the upstream never saw the ANY query.
    let any = cases
        .iter()
        .position(|c| c.0 == "ANY for a forwarded name")
        .expect("case");
    let r = parse(&replies[&(0x1000 + any as u16)]).expect("parse");
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].0, TYPE_HINFO);
    assert_eq!(r.answers[0].1, b"\x07RFC8482\x00");
    assert_eq!(up.count("any.example"), 0);
    // A query with TC set never goes upstream; one with stray header bits goes with RD alone.
    assert_eq!(up.count("tc-set.example"), 0);
    let stray: Vec<u16> = up
        .seen()
        .iter()
        .filter(|q| q.name == "stray-bits.example")
        .map(|q| q.flags)
        .collect();
    assert!(
        !stray.is_empty() && stray.iter().all(|&f| f == 0x0100),
        "{stray:x?}"
    );
    // A blocked name asked with ANY still gets the sinkhole answer (NODATA with the SOA in null mode).
    let blocked = cases
        .iter()
        .position(|c| c.0 == "ANY for a blocked name")
        .expect("case");
    let r = parse(&replies[&(0x1000 + blocked as u16)]).expect("parse");
    assert_eq!((r.answers.len(), r.authority.clone()), (0, vec![TYPE_SOA]));
    assert_still_serving(&c, "named cases", UP);
}

#[test]
fn random_and_mutated_packets_never_break_the_server() {
    let (_up, mut c) = start();
    let mut rng = Prng(0x00c2_5111_c0ff_ee00);
    let base = {
        let mut q = query(0, "mutate.example", TYPE_A);
        add_opt(&mut q, 1232, 0, true);
        q
    };
    for round in 0..4 {
        let mut msgs = Vec::new();
        for _ in 0..300 {
            let len = rng.below(300) as usize;
            let mut m = rng.bytes(len);
            // Half of them look like queries so they get past the first checks.
            if m.len() >= 4 && rng.below(2) == 0 {
                m[2] &= 0x7f;
            }
            msgs.push(m);
        }
        for _ in 0..300 {
            let mut m = base.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len() as u64) as usize;
                m[at] = rng.next() as u8;
            }
            if rng.below(5) == 0 {
                m.truncate(rng.below(m.len() as u64) as usize);
            }
            msgs.push(m);
        }
        // IDs stay random: several messages may share one, so only well-formedness is checked here.
        let udp = udp_batch(&c, &msgs, &[]);
        for (id, r) in &udp {
            let p = parse(r).unwrap_or_else(|e| panic!("round {round} id {id:#x}: {e}"));
            assert!(p.is_response());
        }
        // A frame that is no query closes the connection (named cases above): the rest share one.
        let msgs_tcp: Vec<Vec<u8>> = msgs
            .into_iter()
            .filter(|m| (12..=65535).contains(&m.len()) && m[2] & 0x80 == 0)
            .collect();
        for (id, r) in tcp_batch(&c, &msgs_tcp, &[]) {
            let p = parse(&r).unwrap_or_else(|e| panic!("tcp round {round} id {id:#x}: {e}"));
            assert!(p.is_response());
        }
        assert_still_serving(&c, &format!("random round {round}"), UP);
    }
    assert!(c.is_running());
    let (ok, log) = c.terminate();
    assert!(ok, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn tcp_length_prefix_abuse_is_cut_off_without_hurting_others() {
    let (_up, c) = start();
    // A huge length prefix, then silence: closed after the idle timeout, not held open waiting for 64 KiB.
    let mut s = tcp_connect_from("127.0.0.1", c.addr());
    s.write_all(&[0xff, 0xff]).expect("write");
    s.write_all(&[0u8; 100]).expect("write");
    assert_still_serving(&c, "stalled prefix", UP);
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(10)),
        "stalled connection must be closed"
    );
    // A full 65535-byte message of junk: answered or dropped, and the same connection keeps working.
    let mut s = tcp_connect_from("127.0.0.1", c.addr());
    let mut junk = Prng(7).bytes(65535);
    junk[..4].copy_from_slice(&[0xab, 0xcd, 0x01, 0x00]);
    tcp_send(&mut s, &junk).expect("send");
    tcp_send(&mut s, &query(0x4321, "after-junk.example", TYPE_A)).expect("send");
    loop {
        let r = tcp_read(&mut s).expect("reply");
        let p = parse(&r).expect("well formed");
        if p.id == 0x4321 {
            assert_eq!(p.addrs(), vec![UP]);
            break;
        }
        assert_eq!(p.rcode, FORMERR);
    }
    // A zero length prefix is no message: the connection is closed (as Unbound does), and others are served.
    s.write_all(&[0, 0]).expect("write");
    assert!(closed_by_peer(&mut s, Duration::from_secs(10)));
    assert_still_serving(&c, "empty frame", UP);
    // Unframed random bytes: whatever lengths they spell, the server closes or answers, never hangs on it.
    let mut s = tcp_connect_from("127.0.0.1", c.addr());
    s.write_all(&Prng(99).bytes(3000)).expect("write");
    assert!(closed_by_peer(&mut s, Duration::from_secs(10)));
    assert_still_serving(&c, "length abuse", UP);
}
