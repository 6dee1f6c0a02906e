//! DNS over TLS and over HTTPS to the upstream: a DoT and a DoH server on loopback, with certificates from a
//! throwaway CA made here, answer through c2sink over kept connections; a certificate from another CA, or
//! for another name, is refused.

mod common;

use bytes::Bytes;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn acceptor(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> tokio_rustls::TlsAcceptor {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server cert");
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// A TLS upstream on loopback: counts TLS connections accepted, and keeps the size of each DNS query.
struct TlsUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// `Mute`: TCP connections the client has closed.
    closed: Arc<AtomicUsize>,
    queries: Arc<Queries>,
    _rt: tokio::runtime::Runtime,
}

/// The sizes of the DNS queries an upstream received, in order.
#[derive(Default)]
struct Queries(std::sync::Mutex<Vec<usize>>);

impl Queries {
    fn record(&self, len: usize) {
        self.0.lock().expect("lock").push(len);
    }
    fn count(&self) -> usize {
        self.0.lock().expect("lock").len()
    }
    fn sizes(&self) -> Vec<usize> {
        self.0.lock().expect("lock").clone()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Dot,
    /// DoT that closes every connection after one answer, as servers do with idle connections.
    DotOneShot,
    /// DoT that follows its first answer on a connection with a stray message (another ID), as an answer
    /// that arrives after its query gave up would.
    DotStray,
    /// DoT that never answers a query whose name holds "slow" (its authoritative servers are dead): the
    /// connection it came on stays open, unanswered.
    DotSlowName,
    Doh,
    /// DoH whose first connection answers one query and then takes requests without ever answering, as a
    /// connection that died without a reset looks from the client; later connections answer.
    DohGoesQuiet,
    /// DoH that never answers a query whose name holds "slow" (its authoritative servers are dead), and
    /// answers the others on the same connection.
    DohSlowName,
    /// Accepts TCP and never starts TLS: reads until the client closes, counting the closes.
    Mute,
}

impl TlsUpstream {
    fn start(kind: Kind, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let alpn: &[u8] = match kind {
            Kind::Dot | Kind::DotOneShot | Kind::DotStray | Kind::DotSlowName => b"dot",
            Kind::Doh | Kind::DohGoesQuiet | Kind::DohSlowName | Kind::Mute => b"h2",
        };
        let acceptor = acceptor(chain, key, alpn);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let queries = Arc::new(Queries::default());
        let closed = Arc::new(AtomicUsize::new(0));
        let (c, q, cl) = (connections.clone(), queries.clone(), closed.clone());
        rt.spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, c, q, cl) = (acceptor.clone(), c.clone(), q.clone(), cl.clone());
                tokio::spawn(async move {
                    if let Kind::Mute = kind {
                        c.fetch_add(1, Ordering::Relaxed);
                        let mut sink = [0u8; 512];
                        while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                        cl.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    // A refused handshake (wrong CA on the client's side) just ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let earlier = c.fetch_add(1, Ordering::Relaxed);
                    match kind {
                        Kind::Dot => serve_dot(tls, q, false, false, false).await,
                        Kind::DotOneShot => serve_dot(tls, q, true, false, false).await,
                        Kind::DotStray => serve_dot(tls, q, false, true, false).await,
                        Kind::DotSlowName => serve_dot(tls, q, false, false, true).await,
                        Kind::Doh => serve_doh(tls, q, None).await,
                        Kind::DohGoesQuiet => serve_doh(tls, q, (earlier == 0).then_some(1)).await,
                        Kind::DohSlowName => serve_doh(tls, q, None).await,
                        Kind::Mute => {}
                    }
                });
            }
        });
        TlsUpstream {
            addr,
            connections,
            closed,
            queries,
            _rt: rt,
        }
    }
}

async fn serve_dot(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    q: Arc<Queries>,
    one_shot: bool,
    mut stray: bool,
    slow_names: bool,
) {
    loop {
        let mut l = [0u8; 2];
        if tls.read_exact(&mut l).await.is_err() {
            return;
        }
        let mut m = vec![0u8; usize::from(u16::from_be_bytes(l))];
        if tls.read_exact(&mut m).await.is_err() {
            return;
        }
        q.record(m.len());
        if slow_names && m.windows(4).any(|w| w == b"slow") {
            continue;
        }
        if let Some(r) = fixed_a(&m, std::net::Ipv4Addr::new(192, 0, 2, 1), 300, true) {
            let mut out = (r.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&r);
            if stray {
                stray = false;
                let mut late = r.clone();
                late[0] ^= 0xff;
                out.extend_from_slice(&(late.len() as u16).to_be_bytes());
                out.extend_from_slice(&late);
            }
            if tls.write_all(&out).await.is_err() {
                return;
            }
        }
        if one_shot {
            let _ = tls.shutdown().await;
            return;
        }
    }
}

/// Serves DoH on one connection; with `answered`, only that many requests get an answer, the rest are held
/// open unanswered.
async fn serve_doh(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    q: Arc<Queries>,
    answered: Option<usize>,
) {
    let Ok(mut conn) = h2::server::handshake(tls).await else {
        return;
    };
    let mut held = Vec::new();
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        if answered.is_some_and(|n| q.count() >= n) {
            held.push(respond);
            continue;
        }
        let q = q.clone();
        tokio::spawn(async move {
            let ok_request = req.method() == http::Method::POST
                && req.uri().path() == "/dns-query"
                && req.headers().get("content-type").map(|v| v.as_bytes())
                    == Some(b"application/dns-message");
            let mut body = req.into_body();
            let mut msg = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                msg.extend_from_slice(&chunk);
            }
            q.record(msg.len());
            if msg.windows(4).any(|w| w == b"slow") {
                // Never answered, the stream held open (`DohSlowName`).
                let _held = &respond;
                std::future::pending::<()>().await;
            }
            let answer = if ok_request {
                fixed_a(&msg, std::net::Ipv4Addr::new(192, 0, 2, 1), 300, true)
            } else {
                None
            };
            let (status, bytes) = match answer {
                Some(a) => (200, a),
                None => (400, Vec::new()),
            };
            let resp = http::Response::builder()
                .status(status)
                .header("content-type", "application/dns-message")
                .body(())
                .expect("response");
            if let Ok(mut send) = respond.send_response(resp, false) {
                let _ = send.send_data(Bytes::from(bytes), true);
            }
        });
    }
}

/// c2sink with `upstream` as its only upstream and `ca_pem` as its private CA.
fn c2sink_via(dir: &TempDir, upstream: &str, ca_pem: &str) -> C2sink {
    dir.write("ca.pem", ca_pem);
    dir.write("c2.txt", "evil.example\n");
    let cfg = dir.write(
        "c2sink.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{upstream}\"]\n\
             timeout_ms = 2000\nca_file = \"ca.pem\"\n[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n\
             [log]\nevents = \"events.jsonl\"\n"
        ),
    );
    C2sink::start_file(&cfg)
}

fn answers_through(server: &C2sink, up: &TlsUpstream) {
    for (i, name) in ["a.example", "b.example", "c.example"].iter().enumerate() {
        let r = if i == 1 {
            ask_tcp(server.addr(), name, 1)
        } else {
            ask_udp(server.addr(), name, 1)
        };
        assert_eq!(r.metadata.response_code.to_string(), "No Error", "{name}");
        assert_eq!(r.answers.len(), 1, "{name}");
        assert_eq!(r.answers[0].data.to_string(), "192.0.2.1");
    }
    // Cached: no fourth upstream query. Blocked: never sent upstream.
    assert_eq!(ask_udp(server.addr(), "a.example", 1).answers.len(), 1);
    assert_eq!(
        ask_udp(server.addr(), "evil.example", 1).answers[0]
            .data
            .to_string(),
        "0.0.0.0"
    );
    assert_eq!(up.queries.count(), 3);
    // One kept connection carried all three.
    assert_eq!(up.connections.load(Ordering::Relaxed), 1);
}

#[test]
fn dot_upstream_answers_over_one_kept_connection() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::Dot, chain, key);
    let dir = TempDir::new("dot");
    let server = c2sink_via(&dir, &format!("tls://{}#dns.test", up.addr), &ca);
    answers_through(&server, &up);
}

/// Queries with EDNS for a short and a long name: each reaches the upstream as one 128-octet block.
fn queries_are_padded(server: &C2sink, up: &TlsUpstream) {
    let edns = Ask {
        edns: true,
        ..Ask::default()
    };
    let long = format!("{}.example", "n".repeat(60));
    for name in ["p.example", long.as_str()] {
        let m = ask(
            server.addr(),
            Proto::Udp,
            name,
            hickory_proto::rr::RecordType::A,
            &edns,
        );
        assert_eq!(m.answers.len(), 1, "{name}");
    }
    assert_eq!(
        up.queries.sizes(),
        vec![128, 128],
        "RFC 8467: padded to 128 octets"
    );
}

#[test]
fn dot_and_doh_queries_are_padded_to_a_block() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    for kind in [Kind::Dot, Kind::Doh] {
        let up = TlsUpstream::start(kind, chain.clone(), key.clone_key());
        let dir = TempDir::new("pad");
        let url = match kind {
            Kind::Doh => format!("https://{}/dns-query#dns.test", up.addr),
            _ => format!("tls://{}#dns.test", up.addr),
        };
        let server = c2sink_via(&dir, &url, &ca);
        queries_are_padded(&server, &up);
    }
}

#[test]
fn dot_connection_closed_by_the_server_is_replaced_transparently() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::DotOneShot, chain, key);
    let dir = TempDir::new("dot-close");
    let server = c2sink_via(&dir, &format!("tls://{}#dns.test", up.addr), &ca);
    for name in ["a.example", "b.example", "c.example"] {
        let r = ask_udp(server.addr(), name, 1);
        assert_eq!(r.answers.len(), 1, "{name}");
    }
    assert_eq!(up.queries.count(), 3);
    assert_eq!(up.connections.load(Ordering::Relaxed), 3);
}

#[test]
fn a_stray_message_on_a_kept_dot_connection_does_not_put_it_out_of_step() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::DotStray, chain, key);
    let dir = TempDir::new("dot-stray");
    let server = c2sink_via(&dir, &format!("tls://{}#dns.test", up.addr), &ca);
    // The second query finds the stray message first on the kept connection: that connection is dropped
    // and the query asked again on a fresh one, instead of every later answer being read one query late.
    for name in ["a.example", "b.example", "c.example", "d.example"] {
        let r = ask_udp(server.addr(), name, 1);
        assert_eq!(r.answers.len(), 1, "{name}");
        assert_eq!(r.answers[0].data.to_string(), "192.0.2.1", "{name}");
    }
    // This server sends a stray message after the first answer on every connection, so each connection
    // serves one query and is dropped when the next one finds the stray.
    assert_eq!(up.connections.load(Ordering::Relaxed), 4);
}

#[test]
fn doh_upstream_answers_over_one_http2_connection() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::Doh, chain, key);
    let dir = TempDir::new("doh");
    let server = c2sink_via(
        &dir,
        &format!("https://{}/dns-query#dns.test", up.addr),
        &ca,
    );
    answers_through(&server, &up);
}

/// The upstream's certificate comes from `rogue_ca_name`, a CA other than the one c2sink trusts
/// (which is called "c2sink test CA").
fn refused(kind: Kind, upstream: impl Fn(SocketAddr) -> String, rogue_ca_name: &str, why: &str) {
    let (trusted_ca, _, _) = pki("c2sink test CA", "dns.test");
    let (_, rogue_chain, rogue_key) = pki(rogue_ca_name, "dns.test");
    let up = TlsUpstream::start(kind, rogue_chain, rogue_key);
    let dir = TempDir::new("tls-bad");
    let server = c2sink_via(&dir, &upstream(up.addr), &trusted_ca);
    let r = ask_udp(server.addr(), "a.example", 1);
    assert_eq!(r.metadata.response_code.to_string(), "Server Failure");
    assert!(r.answers.is_empty());
    assert_eq!(up.queries.count(), 0, "no query sent over a refused TLS");
    let line = server
        .wait_for("answering SERVFAIL", PATIENCE)
        .expect("failure logged");
    assert!(line.contains(why), "{line}");
}

#[test]
fn dot_certificate_from_another_ca_is_refused() {
    refused(
        Kind::Dot,
        |a| format!("tls://{a}#dns.test"),
        "rogue CA",
        "invalid peer certificate: UnknownIssuer",
    );
}

#[test]
fn dot_certificate_from_an_impostor_ca_of_the_same_name_is_refused() {
    refused(
        Kind::Dot,
        |a| format!("tls://{a}#dns.test"),
        "c2sink test CA",
        "invalid peer certificate: BadSignature",
    );
}

#[test]
fn doh_certificate_from_another_ca_is_refused() {
    refused(
        Kind::Doh,
        |a| format!("https://{a}/dns-query#dns.test"),
        "rogue CA",
        "invalid peer certificate: UnknownIssuer",
    );
}

#[test]
fn certificate_for_another_name_is_refused() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::Dot, chain, key);
    let dir = TempDir::new("tls-name");
    let server = c2sink_via(&dir, &format!("tls://{}#other.test", up.addr), &ca);
    let r = ask_udp(server.addr(), "a.example", 1);
    assert_eq!(r.metadata.response_code.to_string(), "Server Failure");
    assert_eq!(up.queries.count(), 0);
    let line = server
        .wait_for("answering SERVFAIL", PATIENCE)
        .expect("failure logged");
    assert!(
        line.contains("certificate not valid for name \"other.test\""),
        "{line}"
    );
}

/// c2sink with one encrypted upstream and a short timeout.
fn c2sink_quick_timeout(dir: &TempDir, upstream: &str, ca_pem: &str) -> C2sink {
    dir.write("ca.pem", ca_pem);
    let cfg = dir.write(
        "c2sink.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{upstream}\"]\n\
             timeout_ms = 1500\nca_file = \"ca.pem\"\n"
        ),
    );
    C2sink::start_file(&cfg)
}

#[test]
fn doh_connection_that_goes_quiet_is_replaced_after_a_timeout() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::DohGoesQuiet, chain, key);
    let dir = TempDir::new("doh-quiet");
    let server = c2sink_quick_timeout(
        &dir,
        &format!("https://{}/dns-query#dns.test", up.addr),
        &ca,
    );
    assert_eq!(ask_udp(server.addr(), "a.example", 1).answers.len(), 1);
    // The kept connection now takes requests and never answers: this query times out...
    let r = ask_udp(server.addr(), "b.example", 1);
    assert_eq!(r.metadata.response_code.to_string(), "Server Failure");
    assert_eq!(up.connections.load(Ordering::Relaxed), 1);
    // ...and the next one goes out on a new connection instead of waiting on the dead one.
    let r = ask_udp(server.addr(), "c.example", 1);
    assert_eq!(r.answers.len(), 1, "{r:?}");
    assert_eq!(up.connections.load(Ordering::Relaxed), 2);
    assert_eq!(ask_udp(server.addr(), "d.example", 1).answers.len(), 1);
    assert_eq!(up.connections.load(Ordering::Relaxed), 2, "kept again");
}

#[test]
fn a_connection_attempt_that_gets_no_handshake_ends_with_its_query() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::Mute, chain, key);
    for (name, upstream) in [
        ("dot", format!("tls://{}#dns.test", up.addr)),
        ("doh", format!("https://{}/dns-query#dns.test", up.addr)),
    ] {
        let dir = TempDir::new(&format!("mute-{name}"));
        let mut server = c2sink_quick_timeout(&dir, &upstream, &ca);
        let before = up.connections.load(Ordering::Relaxed);
        let r = ask_udp(server.addr(), "a.example", 1);
        assert_eq!(
            r.metadata.response_code.to_string(),
            "Server Failure",
            "{name}"
        );
        assert!(
            up.connections.load(Ordering::Relaxed) > before,
            "{name}: no connection tried"
        );
        // c2sink still runs: the attempt is closed because its query gave up, not because c2sink ended.
        poll_until(
            &format!("{name}: c2sink closing its abandoned connection"),
            || up.closed.load(Ordering::Relaxed) == up.connections.load(Ordering::Relaxed),
        );
        assert!(server.is_running(), "{name}");
    }
}

#[test]
fn one_slow_name_does_not_cost_a_live_doh_connection() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::DohSlowName, chain, key);
    let dir = TempDir::new("doh-slow");
    let server = c2sink_quick_timeout(
        &dir,
        &format!("https://{}/dns-query#dns.test", up.addr),
        &ca,
    );
    assert_eq!(ask_udp(server.addr(), "a.example", 1).answers.len(), 1);
    // A name the upstream never answers waits out its timeout while other names are answered on the
    // same connection: the connection lives, so it is kept.
    let slow = udp_client("127.0.0.1", std::time::Duration::from_secs(5));
    slow.send_to(&query(0x77, "slow.example", 1), server.addr())
        .expect("send");
    for name in ["b.example", "c.example"] {
        assert_eq!(ask_udp(server.addr(), name, 1).answers.len(), 1, "{name}");
    }
    let mut buf = [0u8; 512];
    let (n, _) = slow
        .recv_from(&mut buf)
        .expect("SERVFAIL after the timeout");
    assert_eq!(parse(&buf[..n]).expect("parse").rcode, SERVFAIL);
    assert_eq!(ask_udp(server.addr(), "d.example", 1).answers.len(), 1);
    assert_eq!(
        up.connections.load(Ordering::Relaxed),
        1,
        "the live connection was kept"
    );
}

#[test]
fn a_burst_of_distinct_names_opens_a_bounded_number_of_dot_connections() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::Dot, chain, key);
    let dir = TempDir::new("dot-burst");
    let server = c2sink_via(&dir, &format!("tls://{}#dns.test", up.addr), &ca);
    // 200 names at once from one client socket: every one answered, over at most 64 TLS connections.
    let sock = udp_client("127.0.0.1", std::time::Duration::from_secs(10));
    for i in 0..200u16 {
        let q = query(0x3000 + i, &format!("burst{i}.example"), TYPE_A);
        sock.send_to(&q, server.addr()).expect("send");
    }
    let mut answered = std::collections::HashSet::new();
    let mut buf = [0u8; 512];
    while answered.len() < 200 {
        let n = sock.recv(&mut buf).expect("every name answered");
        let r = parse(&buf[..n]).expect("well formed");
        assert_eq!(r.rcode, NOERROR, "{:#06x}", r.id);
        answered.insert(r.id);
    }
    let opened = up.connections.load(Ordering::Relaxed);
    assert!(opened <= 64, "{opened} TLS connections for one burst");
    // A second burst reuses the kept connections: still no more than 64 in all.
    for i in 0..100u16 {
        let q = query(0x4000 + i, &format!("again{i}.example"), TYPE_A);
        sock.send_to(&q, server.addr()).expect("send");
    }
    for _ in 0..100 {
        sock.recv(&mut buf).expect("every name answered");
    }
    let opened = up.connections.load(Ordering::Relaxed);
    assert!(opened <= 64, "{opened} TLS connections after two bursts");
}

/// One machine flooding names the upstream never answers (a DGA under a dead zone) holds at most a quarter of
/// a DoT upstream's connections, each for a whole timeout; another machine's lookups go through at once.
/// Before, the flood held all 64 and the other machine's lookups waited for the flood's timeouts (2 s).
#[test]
fn one_machine_flooding_slow_names_leaves_dot_connections_for_the_others() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::DotSlowName, chain, key);
    let dir = TempDir::new("dot-share");
    let server = c2sink_via(&dir, &format!("tls://{}#dns.test", up.addr), &ca);
    let flood = udp_client("127.0.0.2", std::time::Duration::from_secs(10));
    for i in 0..100u16 {
        let q = query(0x5000 + i, &format!("slow{i}.dga.example"), TYPE_A);
        flood.send_to(&q, server.addr()).expect("send");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Another machine, as patient as a stub resolver: 1.5 s a lookup, less than the flood's timeout.
    let other = udp_client("127.0.0.3", std::time::Duration::from_millis(1500));
    let mut buf = [0u8; 512];
    for (i, name) in ["a.example", "b.example", "c.example", "d.example"]
        .iter()
        .enumerate()
    {
        let id = 0x6000 + i as u16;
        other
            .send_to(&query(id, name, TYPE_A), server.addr())
            .expect("send");
        let n = other.recv(&mut buf).unwrap_or_else(|e| {
            panic!("{name}: no answer within 1.5 s while the flood waits ({e})")
        });
        let r = parse(&buf[..n]).expect("well formed");
        assert_eq!((r.id, r.rcode), (id, NOERROR), "{name}");
        assert_eq!(r.addrs().len(), 1, "{name}");
    }
    // The flood itself is answered too, with SERVFAIL once its tries time out.
    flood
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let n = flood.recv(&mut buf).expect("the flood's SERVFAIL");
    assert_eq!(parse(&buf[..n]).expect("well formed").rcode, SERVFAIL);
}

/// c2sink forwarding over DoT (1.5 s timeout) to an upstream that never answers `slow*` names, with its
/// admin endpoint, configured in `dir`; the upstream, the server and the admin address.
fn slow_dot_with_admin(dir: &TempDir) -> (TlsUpstream, C2sink, SocketAddr) {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::DotSlowName, chain, key);
    dir.write("ca.pem", &ca);
    let cfg = dir.write(
        "c2sink.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\n\
             servers = [\"tls://{}#dns.test\"]\ntimeout_ms = 1500\nca_file = \"ca.pem\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            up.addr
        ),
    );
    let server = C2sink::start_file(&cfg);
    let admin = server.admin.expect("admin address logged");
    (up, server, admin)
}

/// `c2sink_upstream_failures_total` summed over upstreams (`/metrics`), checked to be the queries `up` got.
fn upstream_failures(up: &TlsUpstream, admin: SocketAddr) -> f64 {
    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    let failures = parse_metrics(&body)
        .iter()
        .filter(|(k, _)| k.starts_with("c2sink_upstream_failures_total"))
        .map(|(_, v)| v)
        .sum();
    // A try that waited for a connection and gave up unsent is no failure of the upstream's.
    assert_eq!(
        failures,
        up.queries.count() as f64,
        "failures are the queries sent"
    );
    failures
}

/// A query that spent its whole timeout waiting for a place in its own client's share never reached the
/// upstream: it is not one of the upstream's failures (which would push a healthy upstream behind the others
/// for everyone, and show an admin an outage that is one machine's flood). Only the tries that held a
/// connection, the share of 16, count.
#[test]
fn waiting_for_a_clients_own_share_is_not_an_upstream_failure() {
    let dir = TempDir::new("dot-share-failures");
    let (up, server, admin) = slow_dot_with_admin(&dir);
    let flood = udp_client("127.0.0.2", std::time::Duration::from_secs(10));
    for i in 0..100u16 {
        let q = query(0x5000 + i, &format!("slow{i}.dga.example"), TYPE_A);
        flood.send_to(&q, server.addr()).expect("send");
    }
    let mut buf = [0u8; 512];
    for _ in 0..100 {
        let n = flood.recv(&mut buf).expect("every flooded name answered");
        assert_eq!(parse(&buf[..n]).expect("well formed").rcode, SERVFAIL);
    }
    let failures = upstream_failures(&up, admin);
    // 16 tries held a connection and timed out (100 before); the rest waited behind them.
    assert!(
        (16.0..=20.0).contains(&failures),
        "{failures} upstream failures for 100 names from one client"
    );
    assert!(
        server.wait_for_log(
            "in the asking client's share",
            std::time::Duration::from_secs(1)
        ),
        "the SERVFAIL's log says why"
    );
}

/// Five machines flooding slow names at once: 80 places in their shares (16 each) for 64 connections, so 16
/// tries wait for a connection until their timeout is spent and give up unsent, as do the 20 past the
/// shares. Only the 64 tries that reached the upstream are its failures. (A try that gets a connection with
/// time left is sent, and its timeout is the upstream's.)
#[test]
fn waiting_for_a_busy_dot_connection_is_not_an_upstream_failure() {
    let dir = TempDir::new("dot-pool-failures");
    let (up, server, admin) = slow_dot_with_admin(&dir);
    let machines: Vec<_> = (0..5u16)
        .map(|m| {
            udp_client(
                &format!("127.0.0.{}", 2 + m),
                std::time::Duration::from_secs(10),
            )
        })
        .collect();
    for i in 0..20u16 {
        for (m, sock) in machines.iter().enumerate() {
            let q = query(
                0x5000 + m as u16 * 100 + i,
                &format!("slow{i}.m{m}.dga.example"),
                TYPE_A,
            );
            sock.send_to(&q, server.addr()).expect("send");
        }
    }
    let mut buf = [0u8; 512];
    for sock in &machines {
        for _ in 0..20 {
            let n = sock.recv(&mut buf).expect("every flooded name answered");
            assert_eq!(parse(&buf[..n]).expect("well formed").rcode, SERVFAIL);
        }
    }
    // Which tries are sent depends on timing (one that gets a connection with 100 ms or more left is sent,
    // and counts): what must hold is that the failures are the tries the upstream got, and never all.
    let failures = upstream_failures(&up, admin);
    assert!(
        (64.0..100.0).contains(&failures),
        "{failures} upstream failures for 100 names"
    );
    assert!(
        server.wait_for_log(
            "all busy (the server was not asked)",
            std::time::Duration::from_secs(1)
        ),
        "the SERVFAILs of the tries that found every connection busy say why"
    );
}

/// A forwarding router not listed in `[clients] edns_from` speaks for a whole LAN; an admin who gave it every
/// forward (`max_inflight_per_client = max_inflight`, as the hardening notes advise) gave it every DoT
/// connection too: 20 slow names from it do not hold up its next lookup.
#[test]
fn a_client_allowed_every_forward_may_use_every_dot_connection() {
    let (ca, chain, key) = pki("c2sink test CA", "dns.test");
    let up = TlsUpstream::start(Kind::DotSlowName, chain, key);
    let dir = TempDir::new("dot-share-router");
    dir.write("ca.pem", &ca);
    let cfg = dir.write(
        "c2sink.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\nmax_inflight = 4096\n\
             max_inflight_per_client = 4096\n[upstream]\nservers = [\"tls://{}#dns.test\"]\n\
             timeout_ms = 2000\nca_file = \"ca.pem\"\n",
            up.addr
        ),
    );
    let server = C2sink::start_file(&cfg);
    let router = udp_client("127.0.0.2", std::time::Duration::from_millis(1500));
    for i in 0..20u16 {
        let q = query(0x5000 + i, &format!("slow{i}.dga.example"), TYPE_A);
        router.send_to(&q, server.addr()).expect("send");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut buf = [0u8; 512];
    router
        .send_to(&query(0x6000, "a.example", TYPE_A), server.addr())
        .expect("send");
    // Answers to the slow names are SERVFAILs after 2 s: the first answer within 1.5 s is a.example's.
    let n = router
        .recv(&mut buf)
        .expect("a.example answered while 20 slow names are in flight");
    let r = parse(&buf[..n]).expect("well formed");
    assert_eq!((r.id, r.rcode), (0x6000, NOERROR));
}
