//! The sinkhole host: a machine that resolved a C2 name and then connects to the sinkhole address is logged
//! with the TLS SNI or HTTP Host it sent, by real clients (curl, openssl s_client).

mod common;

use common::*;
use hickory_proto::rr::{RData, RecordType};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts c2sink in `address` mode with the sinkhole host on 127.0.0.1, free ports; returns the trap address.
fn start() -> (Upstream, C2sink, SocketAddr) {
    start_logging("")
}

/// [`start`] with more `[log]` keys.
fn start_logging(log: &str) -> (Upstream, C2sink, SocketAddr) {
    let up = Upstream::start();
    let srv = C2sink::start(
        &config(
            &[up.addr],
            &format!(
                "{log}[sinkhole]\nmode = \"address\"\nipv4 = \"127.0.0.1\"\n\n[trap]\nports = [0]\nread_timeout_ms = 2000\n"
            ),
        ),
        &[],
    );
    let addr = *srv
        .sinkhole_hosts
        .first()
        .expect("sinkhole host listening line");
    (up, srv, addr)
}

fn connection_events(srv: &C2sink, want: usize) -> Vec<serde_json::Value> {
    let connections = || -> Vec<_> {
        srv.events(0)
            .into_iter()
            .filter(|e| e["kind"] == "connection")
            .collect()
    };
    poll(PATIENCE, Duration::from_millis(50), connections, |ev| {
        ev.len() >= want
    })
}

#[test]
fn http_request_to_the_sinkhole_is_logged_with_host_and_path() {
    let (_up, srv, trap) = start();
    // The client resolves the C2 name through c2sink and gets the sinkhole address ...
    let m = ask_simple(srv.addr(), Proto::Udp, "sbmsa.wiki", RecordType::A);
    assert_eq!(
        m.answers[0].data,
        RData::A("127.0.0.1".parse().expect("ip"))
    );
    // ... and then connects to it, as the macOS stage does.
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "--resolve",
            &format!("sbmsa.wiki:{}:127.0.0.1", trap.port()),
            &format!("http://sbmsa.wiki:{}/blog/_insert", trap.port()),
        ])
        .output()
        .expect("curl must be installed (scripts/install-test-tools.sh)");
    // c2sink closes without answering: curl reports an empty reply.
    assert!(!out.status.success());
    let ev = connection_events(&srv, 1);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!(e["client_ip"], "127.0.0.1");
    assert_eq!(e["port"], trap.port());
    assert_eq!(e["seen"], "http");
    assert_eq!(e["method"], "GET");
    assert_eq!(e["path"], "/blog/_insert");
    assert_eq!(e["host"], format!("sbmsa.wiki:{}", trap.port()));
    assert!(e["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
    // The block event that led there is in the same log.
    assert!(
        srv.events(2)
            .iter()
            .any(|e| e["kind"] == "block" && e["qname"] == "sbmsa.wiki")
    );
}

#[test]
fn tls_client_hello_sni_is_logged_without_a_handshake() {
    let (_up, srv, trap) = start();
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &trap.to_string(),
            "-servername",
            "cdn.msstorageazure.com",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl must be installed (scripts/install-test-tools.sh)");
    let ev = connection_events(&srv, 1);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["seen"], "tls");
    assert_eq!(ev[0]["sni"], "cdn.msstorageazure.com");
    assert_eq!(ev[0]["client_ip"], "127.0.0.1");
}

#[test]
fn silent_and_garbage_connections_are_logged_and_closed() {
    let (_up, srv, trap) = start();
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(trap).expect("connect");
    s.write_all(b"\x00\x01\x02 not a protocol").expect("write");
    let quiet = std::net::TcpStream::connect(trap).expect("connect");
    let ev = connection_events(&srv, 2);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev.iter().all(|e| e["seen"] == "unknown"));
    drop((s, quiet));
    // DNS keeps answering.
    let m = ask_simple(srv.addr(), Proto::Udp, "www.example.test", RecordType::A);
    assert_eq!(m.answers.len(), 1);
}

/// Malware retrying its C2 connection in a loop gets one line at once and one that counts the retries of the
/// window (`[log] coalesce`, 3 s here so that the six connections surely fall in one), as repeated blocked
/// queries do; every connection is still accounted for.
#[test]
fn a_client_reconnecting_in_a_loop_is_folded_into_one_line() {
    use std::io::{Read, Write};
    let (_up, srv, trap) = start_logging("coalesce = \"3s\"\n");
    let sent = std::time::Instant::now();
    for _ in 0..6 {
        let mut s = std::net::TcpStream::connect(trap).expect("connect");
        s.write_all(b"GET /blog/_insert HTTP/1.1\r\nHost: sbmsa.wiki\r\n\r\n")
            .expect("write");
        // The trap closes once it has read the request head: the connection has been seen.
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let _ = s.read_to_end(&mut Vec::new());
    }
    let inside = sent.elapsed() < Duration::from_millis(2900);
    let count = |e: &serde_json::Value| e["count"].as_u64().unwrap_or(1);
    // The folded line comes when the window ends.
    let lines = poll(
        PATIENCE,
        Duration::from_millis(50),
        || connection_events(&srv, 1),
        |l| l.iter().map(count).sum::<u64>() >= 6,
    );
    let stderr = srv.stop();
    let connections: u64 = lines.iter().map(count).sum();
    assert_eq!(connections, 6, "{lines:?}");
    if inside {
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].get("count").is_none(), "{lines:?}");
        assert_eq!(lines[1]["count"], 5, "{lines:?}");
        assert_eq!(lines[1]["path"], "/blog/_insert");
        assert!(lines[1]["first_ts"].as_str().unwrap() <= lines[1]["ts"].as_str().unwrap());
    }
    let n = |key| total(&stderr, key).unwrap_or_else(|| panic!("{key}: {stderr}"));
    assert_eq!(
        n("events_written") + n("events_coalesced"),
        6,
        "every connection is a line or counted in one: {stderr}"
    );
}

/// A connection over `max_connections` is closed at once, but still recorded (unread, `seen` unknown): a host
/// holding every slot with idle connections must not hide the machines that connect meanwhile. It was
/// dropped without an event, a count or a log line.
#[test]
fn a_connection_over_the_cap_is_recorded_not_lost() {
    use std::io::Write;
    let up = Upstream::start();
    let srv = C2sink::start(
        &config(
            &[up.addr],
            "[sinkhole]\nmode = \"address\"\nipv4 = \"127.0.0.1\"\n\n\
             [trap]\nports = [0]\nmax_connections = 1\nread_timeout_ms = 60000\n",
        ),
        &[],
    );
    let trap = *srv
        .sinkhole_hosts
        .first()
        .expect("sinkhole host listening line");
    // Holds the only slot for the whole test (its read time is a minute): it is not recorded meanwhile.
    let held = std::net::TcpStream::connect(trap).expect("connect");
    let mut beacon = std::net::TcpStream::connect(trap).expect("connect");
    let _ = beacon.write_all(b"GET /blog/_insert HTTP/1.1\r\nHost: sbmsa.wiki\r\n\r\n");
    let ev = connection_events(&srv, 1);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["seen"], "unknown", "{ev:?}");
    assert_eq!(ev[0]["client_ip"], "127.0.0.1");
    assert_eq!(ev[0]["port"], trap.port());
    assert_eq!(
        ev[0]["client_port"],
        beacon.local_addr().expect("addr").port(),
        "the line is the connection over the cap: {ev:?}"
    );
    drop((held, beacon));
    let m = ask_simple(srv.addr(), Proto::Udp, "www.example.test", RecordType::A);
    assert_eq!(m.answers.len(), 1);
}

/// One host holding idle connections takes at most its share of the slots (`max_connections_per_client`):
/// its next connection is recorded unread, and another machine's beacon is still read, Host and all.
#[test]
fn one_host_cannot_take_every_slot() {
    use std::io::Write;
    let up = Upstream::start();
    let srv = C2sink::start(
        &config(
            &[up.addr],
            "[sinkhole]\nmode = \"address\"\nipv4 = \"127.0.0.1\"\n\n\
             [trap]\nports = [0]\nmax_connections = 8\nmax_connections_per_client = 2\n\
             read_timeout_ms = 60000\n",
        ),
        &[],
    );
    let trap = *srv
        .sinkhole_hosts
        .first()
        .expect("sinkhole host listening line");
    // Two idle connections (read for a minute): the host's whole share, not yet recorded.
    let held = [
        common::tcp_connect_from("127.0.0.1", trap),
        common::tcp_connect_from("127.0.0.1", trap),
    ];
    let third = common::tcp_connect_from("127.0.0.1", trap);
    let ev = connection_events(&srv, 1);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["seen"], "unknown", "{ev:?}");
    assert_eq!(
        ev[0]["client_port"],
        third.local_addr().expect("addr").port(),
        "the line is the third connection: {ev:?}"
    );
    // Another machine: read as usual, though the first holds idle connections.
    let mut beacon = common::tcp_connect_from("127.0.0.2", trap);
    beacon
        .write_all(b"GET /blog/_insert HTTP/1.1\r\nHost: sbmsa.wiki\r\n\r\n")
        .expect("send");
    let ev = connection_events(&srv, 2);
    let other = ev
        .iter()
        .find(|e| e["client_ip"] == "127.0.0.2")
        .unwrap_or_else(|| panic!("no line for 127.0.0.2: {ev:?}"));
    assert_eq!(other["seen"], "http", "{ev:?}");
    assert_eq!(other["host"], "sbmsa.wiki", "{ev:?}");
    drop((held, third, beacon));
}
