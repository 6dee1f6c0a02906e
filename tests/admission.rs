//! Access control and rate limiting, against the real binary on loopback (127.0.0.0/8 gives many sources).

mod common;

use common::*;
use std::net::Ipv4Addr;
use std::time::Duration;

const UP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SHORT: Duration = Duration::from_millis(400);

#[test]
fn source_outside_allow_gets_refused_and_is_counted() {
    let up = Upstream::answering(UP);
    let mut c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "allow = [\"127.0.0.1\", \"127.0.1.0/24\"]\ndeny = [\"127.0.1.66\"]",
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    // Allowed: a host entry and a network.
    for ip in ["127.0.0.1", "127.0.1.5"] {
        let q = query(0x1111, &format!("ok-{ip}.example"), TYPE_A);
        let r = udp_ask_from(ip, c.addr(), &q, Duration::from_secs(5)).expect("answer");
        let r = parse(&r).expect("parse");
        assert_eq!((r.rcode, r.addrs()), (NOERROR, vec![UP]), "{ip}");
    }
    // Not allowed, or denied by a more specific entry: REFUSED with the question echoed; never forwarded.
    for ip in ["127.0.0.2", "127.0.1.66"] {
        let name = format!("scan-{ip}.example");
        let mut q = query(0x2222, &name, TYPE_A);
        add_opt(&mut q, 1232, 0, false);
        let r = udp_ask_from(ip, c.addr(), &q, Duration::from_secs(5)).expect("refused answer");
        let r = parse(&r).expect("parse");
        assert_eq!((r.rcode, r.qdcount, r.ancount), (REFUSED, 1, 0), "{ip}");
        assert!(r.opt.is_some(), "REFUSED keeps EDNS");
        let mut s = tcp_connect_from(ip, c.addr());
        tcp_send(&mut s, &q).expect("send");
        let r = parse(&tcp_read(&mut s).expect("tcp refused")).expect("parse");
        assert_eq!(r.rcode, REFUSED, "{ip} over tcp");
        assert_eq!(
            up.count(&name),
            0,
            "refused query must not reach the upstream"
        );
    }
    // Blocked names are refused too for outsiders (they are not our clients; no event is logged for them).
    let q = query(0x3333, BLOCKED, TYPE_A);
    let r = udp_ask_from("127.0.0.2", c.addr(), &q, Duration::from_secs(5)).expect("answer");
    assert_eq!(parse(&r).expect("parse").rcode, REFUSED);
    // The metric counts them as the totals line does: 2 sources x (UDP + TCP) + the blocked name.
    assert_eq!(rejected(&c, "denied"), 5.0);
    assert_eq!(rejected(&c, "rate_limited"), 0.0);
    let (ok, log) = c.terminate();
    assert!(ok, "{log}");
    assert_eq!(total(&log, "denied"), Some(5), "{log}");
}

/// `c2sink_queries_rejected_total{reason}` from the server's `/metrics`.
fn rejected(c: &C2sink, reason: &str) -> f64 {
    let (status, body) = http_get(c.admin.expect("admin address logged"), "/metrics");
    assert_eq!(status, 200, "{body}");
    let key = format!("c2sink_queries_rejected_total{{reason=\"{reason}\"}}");
    *parse_metrics(&body)
        .get(&key)
        .unwrap_or_else(|| panic!("no {key} in:\n{body}"))
}

#[test]
fn drop_action_sends_nothing_and_closes_tcp() {
    let up = Upstream::answering(UP);
    let c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "allow = [\"127.0.0.1\"]\nrefuse_action = \"drop\"",
        "",
    );
    let q = query(0x4444, "dropped.example", TYPE_A);
    assert!(udp_ask_from("127.0.0.3", c.addr(), &q, SHORT).is_none());
    let mut s = tcp_connect_from("127.0.0.3", c.addr());
    let _ = tcp_send(&mut s, &q);
    assert!(closed_by_peer(&mut s, Duration::from_secs(5)));
    assert_still_serving(&c, "drop", UP);
}

#[test]
fn default_acl_allows_loopback_and_open_resolver_is_warned() {
    let up = Upstream::answering(UP);
    let c = C2sink::start_small(&[up.addr], UPSTREAM_TIMEOUT_MS, "", "");
    assert_still_serving(&c, "default", UP);
    assert!(!c.log().contains("OPEN RESOLVER"));
    drop(c);
    let mut c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "allow = [\"0.0.0.0/0\"]",
        "",
    );
    assert_still_serving(&c, "open", UP);
    let (_, log) = c.terminate();
    assert!(log.contains("OPEN RESOLVER"), "{log}");
    // An empty allow refuses every client but the host itself: said at start, and so it does.
    let mut c = C2sink::start_small(&[up.addr], UPSTREAM_TIMEOUT_MS, "allow = []", "");
    assert_still_serving(&c, "host itself", UP);
    let r = udp_ask_from(
        "127.0.0.3",
        c.addr(),
        &query(0x4545, "x.example", TYPE_A),
        SHORT,
    )
    .expect("an answer");
    assert_eq!(parse(&r).expect("parse").rcode, 5, "REFUSED");
    let (_, log) = c.terminate();
    assert!(log.contains("server.allow is empty"), "{log}");
}

#[test]
fn flooding_client_is_limited_while_another_is_served() {
    let up = Upstream::answering(UP);
    let mut c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "rate_limit = 5\nrate_limit_action = \"refuse\"",
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let flood = udp_client("127.0.0.5", Duration::from_secs(2));
    let n = 100u16;
    for i in 0..n {
        // Blocked names: answered locally, so the limit and not the upstream decides.
        let q = query(i, &format!("x{i}.{BLOCKED}"), TYPE_A);
        flood.send_to(&q, c.addr()).expect("send");
    }
    let (mut ok, mut refused) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok(len) = flood.recv(&mut buf) {
        match parse(&buf[..len]).expect("parse").rcode {
            NOERROR => ok += 1,
            REFUSED => refused += 1,
            r => panic!("unexpected rcode {r}"),
        }
        if ok + refused == usize::from(n) {
            break;
        }
    }
    // Burst of 5 plus what refills (5/s) while the flood is sent and answered.
    assert!((5..=30).contains(&ok), "ok={ok} refused={refused}");
    assert!(refused >= 60, "ok={ok} refused={refused}");
    // Another client is not affected.
    let q = query(0x5555, "other-client.example", TYPE_A);
    let r = udp_ask_from("127.0.0.6", c.addr(), &q, Duration::from_secs(5)).expect("answer");
    assert_eq!(parse(&r).expect("parse").addrs(), vec![UP]);
    let limited = rejected(&c, "rate_limited");
    assert_eq!(rejected(&c, "denied"), 0.0);
    let (_, log) = c.terminate();
    assert!(total(&log, "rate_limited").unwrap_or(0) >= 60, "{log}");
    assert_eq!(Some(limited as u64), total(&log, "rate_limited"), "{log}");
    // Events are written for the queries that passed the limit only, and every one of them.
    assert_eq!(total(&log, "blocked"), Some(ok as u64), "{log}");
}

#[test]
fn rate_limited_queries_are_dropped_by_default() {
    let up = Upstream::answering(UP);
    let c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "rate_limit = 2\nrate_limit_burst = 2",
        "",
    );
    // The wait only ends the loop below; how many are answered depends on how fast the sends go.
    let s = udp_client("127.0.0.7", Duration::from_secs(2));
    for i in 0..10u16 {
        s.send_to(&query(i, &format!("r{i}.{BLOCKED}"), TYPE_A), c.addr())
            .expect("send");
    }
    let mut got = 0;
    let mut buf = [0u8; 2048];
    while s.recv(&mut buf).is_ok() {
        got += 1;
    }
    // Burst of 2, plus at most a few refills if the machine is slow.
    assert!((2..=6).contains(&got), "{got} answers");
}

#[test]
fn bad_acl_entry_fails_config_with_key() {
    let dir = TempDir::new("acl");
    let cfg = dir.write(
        "c.toml",
        "[server]\nlisten = [\"127.0.0.1:0\"]\nallow = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\nrate_limit_ipv6_prefix = 0\n[upstream]\nservers = [\"127.0.0.1:53\"]\n",
    );
    let (code, _, err) = run(&["check", "--config", cfg.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("server.allow[1]") && err.contains("10.0.0.0/40"),
        "{err}"
    );
    assert!(err.contains("server.rate_limit_ipv6_prefix"), "{err}");
}

#[test]
fn one_client_cannot_hold_every_forward_slot() {
    let up = Upstream::answering(UP);
    let mut c = C2sink::start_small(
        &[up.addr],
        10_000,
        "max_inflight = 8\nmax_inflight_per_client = 2",
        "[clients]\nedns_from = [\"127.0.0.4\", \"127.0.1.0/24\"]",
    );
    let blackholes = || {
        up.names()
            .iter()
            .filter(|n| n.starts_with("blackhole"))
            .count()
    };
    // One machine asks five names whose servers never answer: two wait on the upstream, and the other
    // three get SERVFAIL at once instead of a slot every other client needs.
    // (A network in [clients] edns_from is many machines: each is still held to its share.)
    let a = udp_client("127.0.1.2", Duration::from_secs(5));
    for i in 0..5u16 {
        let q = query(0x100 + i, &format!("blackhole.a{i}.example"), TYPE_A);
        a.send_to(&q, c.addr()).expect("send");
    }
    let mut buf = [0u8; 512];
    for _ in 0..3 {
        let (n, _) = a
            .recv_from(&mut buf)
            .expect("a shed query is answered at once");
        assert_eq!(parse(&buf[..n]).expect("parse").rcode, SERVFAIL);
    }
    poll_until("two of its queries reaching the upstream", || {
        blackholes() == 2
    });
    // Another machine's query still goes out, and comes back.
    let q = query(0x200, "other.example", TYPE_A);
    let r = udp_ask_from("127.0.0.3", c.addr(), &q, Duration::from_secs(5)).expect("answer");
    let r = parse(&r).expect("parse");
    assert_eq!((r.rcode, r.addrs()), (NOERROR, vec![UP]));
    // The host's own queries (a forwarder on the box speaks for many clients) count only against the total.
    let own = udp_client("127.0.0.1", Duration::from_secs(5));
    for i in 0..3u16 {
        let q = query(0x300 + i, &format!("blackhole.own{i}.example"), TYPE_A);
        own.send_to(&q, c.addr()).expect("send");
    }
    poll_until("the host's three queries reaching the upstream", || {
        blackholes() == 5
    });
    assert_eq!(
        blackholes(),
        5,
        "the first machine got no more than its two"
    );
    // So do those of a router listed in [clients] edns_from: it speaks for a whole network.
    let router = udp_client("127.0.0.4", Duration::from_secs(5));
    for i in 0..3u16 {
        let q = query(0x400 + i, &format!("blackhole.lan{i}.example"), TYPE_A);
        router.send_to(&q, c.addr()).expect("send");
    }
    poll_until("the router's three queries reaching the upstream", || {
        blackholes() == 8
    });
    // Every slot is taken now: anyone's next query is shed.
    let q = query(0x500, "blackhole.late.example", TYPE_A);
    let r = udp_ask_from("127.0.0.5", c.addr(), &q, Duration::from_secs(5)).expect("shed");
    assert_eq!(parse(&r).expect("parse").rcode, SERVFAIL);
    assert_eq!(blackholes(), 8);
    // The exit totals count the shed queries apart from upstream failures, as the metrics do.
    let (_, log) = c.terminate();
    assert_eq!(total(&log, "shed"), Some(4), "{log}");
}
