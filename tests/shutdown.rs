//! Graceful shutdown: on SIGTERM, queries already being forwarded still get their answers and every block
//! event is in the log before the process exits.

mod common;

use common::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const UP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

#[test]
fn sigterm_drains_queries_in_flight_and_flushes_events() {
    let up = Upstream::answering(UP);
    up.delay("slow-udp.example", Duration::from_millis(1200));
    up.delay("slow-tcp.example", Duration::from_millis(1200));
    let mut c = C2sink::start_small(&[up.addr], 5000, "", "");

    // Block events first, so they are queued before shutdown.
    for i in 0..50u16 {
        let r =
            udp_ask(c.addr(), &query(i, &format!("h{i}.{BLOCKED}"), TYPE_A)).expect("sinkholed");
        assert_eq!(
            parse(&r).expect("parse").addrs(),
            vec![Ipv4Addr::UNSPECIFIED]
        );
    }
    // Two slow forwarded queries, one per transport, in flight when SIGTERM arrives.
    let udp = udp_client("127.0.0.1", Duration::from_secs(8));
    udp.send_to(&query(0xaaaa, "slow-udp.example", TYPE_A), c.addr())
        .expect("send");
    let mut tcp = tcp_connect_from("127.0.0.1", c.addr());
    tcp.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    tcp_send(&mut tcp, &query(0xbbbb, "slow-tcp.example", TYPE_A)).expect("send");
    poll_until("upstream to see both slow queries", || {
        up.count("slow-udp.example") == 1 && up.count("slow-tcp.example") == 1
    });
    c.signal_term();

    let mut buf = [0u8; 512];
    let n = udp.recv(&mut buf).expect("UDP answer after SIGTERM");
    let r = parse(&buf[..n]).expect("parse");
    assert_eq!((r.id, r.addrs()), (0xaaaa, vec![UP]));
    let r = parse(&tcp_read(&mut tcp).expect("TCP answer after SIGTERM")).expect("parse");
    assert_eq!((r.id, r.addrs()), (0xbbbb, vec![UP]));

    let (ok, log) = c.terminate();
    assert!(ok, "clean exit: {log}");
    let events = c.event_lines();
    assert_eq!(events.len(), 50, "every block event written: {log}");
    assert!(events.iter().all(|e| e.contains("\"kind\":\"block\"")));
    assert_eq!(total(&log, "events_written"), Some(50), "{log}");
    // New queries are no longer taken once it is down.
    assert!(
        udp_ask_from(
            "127.0.0.1",
            c.addr(),
            &query(1, "late.example", TYPE_A),
            Duration::from_millis(300)
        )
        .is_none()
    );
}

#[test]
fn sigterm_stops_the_server_while_a_client_keeps_sending() {
    let up = Upstream::answering(UP);
    let mut c = C2sink::start_small(&[up.addr], 2000, "", "");
    let addr = c.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = stop.clone();
    // A steady stream of blocked queries: a datagram is always waiting, so the UDP loop never idles.
    let flood = std::thread::spawn(move || {
        let sock = udp_client("127.0.0.1", Duration::from_millis(100));
        let q = query(7, &format!("flood.{BLOCKED}"), TYPE_A);
        let mut sent = 0u64;
        while !flooding.load(std::sync::atomic::Ordering::Relaxed) {
            if sock.send_to(&q, addr).is_ok() {
                sent += 1;
            }
            if sent.is_multiple_of(8) {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        sent
    });
    // One datagram among the flood's may be dropped (a full socket buffer does that): asked again every
    // 500 ms until answered.
    let probe = udp_client("127.0.0.1", Duration::from_millis(500));
    let q = query(1, &format!("probe.{BLOCKED}"), TYPE_A);
    let mut buf = [0u8; 512];
    poll_until("an answer during the flood", || {
        probe.send_to(&q, addr).expect("send");
        while let Ok(n) = probe.recv(&mut buf) {
            if parse(&buf[..n]).is_ok_and(|r| r.id == 1) {
                return true;
            }
        }
        false
    });
    c.signal_term();
    let asked = Instant::now();
    while c.is_running() && asked.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let exited = !c.is_running();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().expect("flood thread");
    assert!(
        exited,
        "still running 10 s after SIGTERM under a steady flood ({sent} queries sent)"
    );
    assert!(sent > 100, "the flood ran: {sent}");
}
