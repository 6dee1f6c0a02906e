//! TCP under abuse: connection caps (total and per client), slow senders cut off, pipelined queries answered
//! as each is ready, and UDP service unaffected by many idle connections.

mod common;

use common::*;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const UP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// A connection is accepted and served if a query on it gets an answer.
fn served(s: &mut std::net::TcpStream, id: u16) -> bool {
    tcp_send(s, &query(id, BLOCKED, TYPE_A)).is_ok()
        && tcp_read(s).is_ok_and(|r| r[..2] == id.to_be_bytes())
}

#[test]
fn connections_are_capped_per_client_and_in_total() {
    let up = Upstream::answering(UP);
    let c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "tcp_max_connections = 6\ntcp_max_connections_per_client = 2",
        "",
    );
    let mut a1 = tcp_connect_from("127.0.0.10", c.addr());
    let mut a2 = tcp_connect_from("127.0.0.10", c.addr());
    assert!(served(&mut a1, 1) && served(&mut a2, 2));
    // A third from the same client is closed at once.
    let mut a3 = tcp_connect_from("127.0.0.10", c.addr());
    assert!(!served(&mut a3, 3));
    assert!(closed_by_peer(&mut a3, Duration::from_secs(10)));
    // Other clients fill the total cap (6): 2 + 2 + 2.
    let mut others = Vec::new();
    for ip in ["127.0.0.11", "127.0.0.11", "127.0.0.12", "127.0.0.12"] {
        let mut s = tcp_connect_from(ip, c.addr());
        assert!(served(&mut s, 10), "{ip}");
        others.push(s);
    }
    let mut over = tcp_connect_from("127.0.0.13", c.addr());
    assert!(
        closed_by_peer(&mut over, Duration::from_secs(10)),
        "7th connection must be closed"
    );
    // UDP is not affected by full TCP.
    assert_still_serving_udp(&c);
    // Closing one frees a slot for that client again.
    drop(a1);
    // c2sink frees the slot once it reads the close; on a loaded machine that may take a while.
    poll_until("the closed connection's slot to be freed", || {
        served(&mut tcp_connect_from("127.0.0.10", c.addr()), 4)
    });
}

fn assert_still_serving_udp(c: &C2sink) {
    let r = udp_ask(
        c.addr(),
        &query(0x6666, "udp-while-tcp-full.example", TYPE_A),
    )
    .expect("udp answer");
    assert_eq!(parse(&r).expect("parse").addrs(), vec![UP]);
}

#[test]
fn slow_sender_is_cut_off_before_finishing_a_query() {
    let up = Upstream::answering(UP);
    let c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "tcp_idle_timeout_ms = 500",
        "",
    );
    let mut s = tcp_connect_from("127.0.0.1", c.addr());
    let q = query(0x5151, "slowloris.example", TYPE_A);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    // One byte every 100 ms: the whole query would take several seconds; each byte alone resets no timer.
    let started = Instant::now();
    let mut cut = false;
    for b in &framed {
        if s.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        if closed_by_peer(&mut s, Duration::from_millis(100)) {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a dribbling client must be cut off (took {:?})",
        started.elapsed()
    );
    assert_eq!(up.count("slowloris.example"), 0);
    assert_still_serving(&c, "slowloris", UP);
}

#[test]
fn a_frame_that_is_no_query_closes_the_connection() {
    let up = Upstream::answering(UP);
    // An idle limit far beyond the wait below: only the empty frame can end the connection in time.
    let c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "tcp_idle_timeout_ms = 60000",
        "",
    );
    // An empty frame, a 3-octet one, and a 12-octet header with QR set (a response, not a query).
    let response = [0, 12, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for frame in [&[0u8, 0][..], &[0, 3, 1, 2, 3], &response] {
        let mut s = tcp_connect_from("127.0.0.1", c.addr());
        assert!(served(&mut s, 1), "{frame:?}");
        s.write_all(frame).expect("send");
        // Before the fix an empty frame every few seconds held the connection open without a query.
        assert!(
            closed_by_peer(&mut s, Duration::from_secs(10)),
            "{frame:?}: connection still open"
        );
    }
    assert_still_serving(&c, "after-short-frames", UP);
}

#[test]
fn many_idle_connections_do_not_stop_udp() {
    let up = Upstream::answering(UP);
    let c = C2sink::start_small(
        &[up.addr],
        UPSTREAM_TIMEOUT_MS,
        "tcp_max_connections = 100\ntcp_idle_timeout_ms = 5000",
        "",
    );
    let mut conns = Vec::new();
    for i in 0..300u32 {
        // Spread over sources so the per-client cap is not what limits them.
        let ip = format!("127.0.{}.{}", 20 + i / 200, 1 + i % 200);
        conns.push(tcp_connect_from(&ip, c.addr()));
    }
    for i in 0..20u16 {
        let r = udp_ask(
            c.addr(),
            &query(0x7000 + i, &format!("u{i}.example"), TYPE_A),
        )
        .expect("udp answer");
        assert_eq!(parse(&r).expect("parse").addrs(), vec![UP]);
    }
    drop(conns);
}

#[test]
fn pipelined_slow_query_does_not_delay_a_fast_one() {
    let up = Upstream::answering(UP);
    up.delay("slow.example", Duration::from_millis(1500));
    let c = C2sink::start_small(&[up.addr], 3000, "", "");
    let mut s = tcp_connect_from("127.0.0.1", c.addr());
    tcp_send(&mut s, &query(0x0001, "slow.example", TYPE_A)).expect("send");
    tcp_send(&mut s, &query(0x0002, "fast.example", TYPE_A)).expect("send");
    tcp_send(&mut s, &query(0x0003, BLOCKED, TYPE_A)).expect("send");
    let order: Vec<u16> = (0..3)
        .map(|_| parse(&tcp_read(&mut s).expect("reply")).expect("parse").id)
        .collect();
    assert_eq!(
        order.last(),
        Some(&0x0001),
        "the slow answer comes last: {order:?}"
    );
    assert!(order.contains(&0x0002) && order.contains(&0x0003));
}

#[test]
fn the_connection_cap_counts_every_listener_together() {
    let up = Upstream::answering(UP);
    let text = config(&[up.addr], "").replacen(
        "udp_sockets = 2\n",
        "udp_sockets = 2\ntcp_max_connections = 3\n",
        1,
    );
    let c = C2sink::start(&text, &[]);
    // Three on the IPv4 listener fill the cap...
    let mut held = Vec::new();
    for i in 0..3u16 {
        let mut s = tcp_connect_from("127.0.0.1", c.addr());
        assert!(served(&mut s, 0x30 + i), "connection {i}");
        held.push(s);
    }
    // ...so a fourth on the IPv6 listener is closed at once: the cap is c2sink's, not each address's.
    let mut over = tcp_connect_from("::1", c.addr6());
    assert!(!served(&mut over, 0x40));
    assert!(closed_by_peer(&mut over, Duration::from_secs(10)));
    drop(held);
    poll_until("a freed slot to serve the IPv6 listener", || {
        served(&mut tcp_connect_from("::1", c.addr6()), 0x41)
    });
}

#[test]
fn running_out_of_file_descriptors_is_logged_once_a_second_not_per_retry() {
    use std::io::BufRead;
    let up = Upstream::answering(UP);
    let dir = TempDir::new("fd-limit");
    let cfg = dir.write(
        "c2sink.toml",
        &small_config(
            &[up.addr],
            UPSTREAM_TIMEOUT_MS,
            "tcp_max_connections = 500",
            "",
        ),
    );
    dir.write("list.txt", &format!("{BLOCKED}\n"));
    // A low descriptor limit: the connections below use up what is left after start.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" serve --config \"$1\""])
        .arg(bin())
        .arg(&cfg)
        .env("RUST_LOG", "c2sink=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx.recv_timeout(PATIENCE).expect("c2sink ready");
        log.push(line.clone());
        if let Some(at) = line.find("listening on ") {
            let rest = &line[at + "listening on ".len()..];
            break rest
                .split(' ')
                .next()
                .expect("addr")
                .parse::<std::net::SocketAddr>()
                .expect("addr");
        }
    };
    // More connections than descriptors left: accept fails over and over while they stay open.
    let held: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    let _ = child.kill();
    let _ = child.wait();
    drop(held);
    log.extend(rx.try_iter());
    let errors = log.iter().filter(|l| l.contains("accept error")).count();
    assert!(errors >= 1, "the listener ran out of descriptors: {log:#?}");
    assert!(
        errors <= 4,
        "{errors} lines in 2.5 s: {:#?}",
        &log[log.len().saturating_sub(5)..]
    );
}

#[test]
fn the_per_client_cap_is_each_listeners_own() {
    let up = Upstream::answering(UP);
    let text = config(&[up.addr], "")
        .replacen(
            "listen = [\"127.0.0.1:0\", \"[::1]:0\"]",
            "listen = [\"127.0.0.1:0\", \"127.0.0.2:0\"]",
            1,
        )
        .replacen(
            "udp_sockets = 2\n",
            "udp_sockets = 2\ntcp_max_connections_per_client = 1\n",
            1,
        );
    let c = C2sink::start(&text, &[]);
    let second = *c
        .addrs
        .iter()
        .find(|a| a.ip() == std::net::IpAddr::from([127, 0, 0, 2]))
        .expect("second listener");
    // One connection to each listener from the same client: both served, as the README says.
    let mut first = tcp_connect_from("127.0.0.5", c.addr());
    assert!(served(&mut first, 0x50));
    let mut other = tcp_connect_from("127.0.0.5", second);
    assert!(served(&mut other, 0x51), "the cap is per listener");
    // A second on the same listener is over its cap.
    let mut over = tcp_connect_from("127.0.0.5", c.addr());
    assert!(!served(&mut over, 0x52));
}
