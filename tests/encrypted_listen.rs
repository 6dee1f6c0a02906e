//! DNS over TLS and over HTTPS from clients, asked with a real client (kdig, from
//! scripts/install-test-tools.sh): blocked names are sinkholed, others forwarded, and block events name the
//! protocol.

mod common;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::process::Command;
use std::time::Duration;

/// A throwaway CA and a server certificate for `dns.test`: (CA PEM, cert PEM, key PEM).
fn pki() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "c2sink listener test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["dns.test".to_string()]).expect("params");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca).expect("sign");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn kdig(args: &[&str]) -> String {
    let out = Command::new("kdig")
        .args(args)
        .output()
        .expect("kdig missing: run scripts/install-test-tools.sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kdig {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim().to_string()
}

/// kdig's output for `name A` asked of the encrypted listener at `addr` (trusting `ca`), with `extra` options
/// (`+tls`, `+https`, ...).
fn kdig_at(addr: std::net::SocketAddr, ca: &std::path::Path, extra: &[&str], name: &str) -> String {
    let (port, ca_arg) = (addr.port().to_string(), format!("+tls-ca={}", ca.display()));
    let mut args = vec!["@127.0.0.1", "-p", &port, &ca_arg, "+tls-hostname=dns.test"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[name, "A", "+time=3", "+retry=0"]);
    kdig(&args)
}

/// Writes a certificate, its CA and a config with `[tls_listen]` `listeners` into `dir`: (config, CA file).
fn tls_config(
    dir: &TempDir,
    upstream: std::net::SocketAddr,
    listeners: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (ca, cert, key) = pki();
    let ca_path = dir.write("ca.pem", &ca);
    dir.write("server.pem", &cert);
    dir.write("server.key", &key);
    let cfg = config_file(
        dir,
        "127.0.0.1:0",
        &[upstream],
        &format!(
            "\n[tls_listen]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\n{listeners}\n"
        ),
    );
    (cfg, ca_path)
}

/// Adds `keys` (lines) to the `[server]` table of the config at `cfg`.
fn set_server_keys(cfg: &std::path::Path, keys: &str) {
    let text = std::fs::read_to_string(cfg).expect("config");
    let text = text.replacen(
        "udp_sockets = 1\n",
        &format!("udp_sockets = 1\n{keys}\n"),
        1,
    );
    std::fs::write(cfg, text).expect("config");
}

/// A c2sink with a DoT and a DoH listener on loopback, its upstream answering A 192.0.2.1.
struct Encrypted {
    _up: Upstream,
    _server: C2sink,
    dir: TempDir,
    dot: std::net::SocketAddr,
    doh: std::net::SocketAddr,
    ca_path: std::path::PathBuf,
}

impl Encrypted {
    fn start(tag: &str) -> Encrypted {
        let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
        let dir = TempDir::new(tag);
        let listeners = "dot = [\"127.0.0.1:0\"]\ndoh = [\"127.0.0.1:0\"]";
        let (cfg, ca_path) = tls_config(&dir, up.addr, listeners);
        let server = C2sink::start_file(&cfg);
        let dot = server.listening("dot").expect("dot address logged");
        let doh = server.listening("doh").expect("doh address logged");
        Encrypted {
            _up: up,
            _server: server,
            dir,
            dot,
            doh,
            ca_path,
        }
    }
}

#[test]
fn dot_and_doh_clients_are_served_by_the_pipeline() {
    // Bound whole: its upstream and server live to the end of the test.
    let tls = Encrypted::start("tls-listen");
    let (dir, dot, doh, ca_path) = (&tls.dir, tls.dot, tls.doh, &tls.ca_path);
    let ask = |addr: std::net::SocketAddr, extra: &[&str], name: &str| {
        let short: Vec<&str> = extra.iter().copied().chain(["+short"]).collect();
        kdig_at(addr, ca_path, &short, name)
    };
    assert_eq!(ask(dot, &[], "evil.example"), "0.0.0.0");
    assert_eq!(ask(dot, &[], "www.example"), "192.0.2.1");
    assert_eq!(ask(doh, &["+https"], "x.c2.test"), "0.0.0.0");
    assert_eq!(ask(doh, &["+https"], "www2.example"), "192.0.2.1");
    assert_eq!(ask(doh, &["+https-get"], "evil.example"), "0.0.0.0");
    assert_eq!(ask(doh, &["+https-get"], "www3.example"), "192.0.2.1");

    // Block events name how the client asked.
    let events = dir.path().join("events.jsonl");
    let read = || std::fs::read_to_string(&events).unwrap_or_default();
    let text = poll(PATIENCE, Duration::from_millis(50), read, |t| {
        t.lines().count() >= 3
    });
    let protocols: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split("\"protocol\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("protocol field")
        })
        .collect();
    assert_eq!(protocols, vec!["dot", "doh", "doh"], "{text}");
}

#[test]
fn one_client_cannot_take_every_encrypted_connection() {
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    let dir = TempDir::new("tls-per-client");
    let (cfg, ca_path) = tls_config(&dir, up.addr, "dot = [\"127.0.0.1:0\"]");
    set_server_keys(
        &cfg,
        "tcp_max_connections_per_client = 2\ntcp_idle_timeout_ms = 5000",
    );
    let server = C2sink::start_file(&cfg);
    let dot = server.listening("dot").expect("dot address logged");
    let ca_arg = format!("+tls-ca={}", ca_path.display());
    let port = dot.port().to_string();
    let ask = |from: &str| {
        Command::new("kdig")
            .args([
                "@127.0.0.1",
                "-b",
                from,
                "-p",
                &port,
                &ca_arg,
                "+tls-hostname=dns.test",
                "www.example",
                "A",
                "+short",
                "+time=2",
                "+retry=0",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .expect("kdig missing: run scripts/install-test-tools.sh")
    };
    assert_eq!(ask("127.0.0.1"), "192.0.2.1");
    // Two connections from 127.0.0.1 that never finish their handshake hold its two slots. On a loaded
    // machine the server may not yet have seen the first ask's connection close and refuse one of them
    // (rightly: that slot was still taken); such a one is replaced, so that two are held.
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    // Once the server has taken both, a third connection from the same address is closed.
    let hold_two_and_ask = || {
        held.retain_mut(|s| !closed_by_peer(s, Duration::from_millis(1)));
        while held.len() < 2 {
            held.push(std::net::TcpStream::connect(dot).expect("connect"));
        }
        ask("127.0.0.1")
    };
    let third = poll(
        PATIENCE,
        Duration::from_millis(100),
        hold_two_and_ask,
        |a| a.is_empty(),
    );
    assert_eq!(
        third, "",
        "a third connection from the same address is still served"
    );
    assert_eq!(ask("127.0.0.2"), "192.0.2.1", "another client is served");
    drop(held);
    // Its slots come back once the server has seen the two close.
    let again = poll(
        PATIENCE,
        Duration::from_millis(100),
        || ask("127.0.0.1"),
        |a| a == "192.0.2.1",
    );
    assert_eq!(
        again, "192.0.2.1",
        "its slots did not come back after it let go"
    );
}

#[test]
fn key_that_does_not_fit_the_certificate_fails_the_check() {
    let dir = TempDir::new("tls-listen-bad");
    let (_, cert, _) = pki();
    let (_, _, other_key) = pki();
    dir.write("server.pem", &cert);
    dir.write("server.key", &other_key);
    let cfg = config_file(
        &dir,
        "127.0.0.1:0",
        &["127.0.0.1:9".parse().expect("addr")],
        "\n[tls_listen]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\ndot = [\"127.0.0.1:0\"]\n",
    );
    let (code, out, err) = run(&["check", "--config", cfg.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("tls_listen.key_file"), "{err}");
}

/// POSTs each body to the DoH listener at `addr` (trusting `ca_pem`) on one HTTP/2 connection: each
/// response's status and body, or status 0 and the error if none came.
fn doh_post(
    addr: std::net::SocketAddr,
    ca_pem: &std::path::Path,
    bodies: &[Vec<u8>],
) -> Vec<(u16, Vec<u8>)> {
    use rustls::pki_types::pem::PemObject;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).expect("ca") {
            roots.add(c.expect("ca cert")).expect("add ca");
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect("dns.test".try_into().expect("name"), tcp)
            .await
            .expect("tls");
        let (mut send, conn) = h2::client::handshake(tls).await.expect("h2");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut statuses = Vec::new();
        for body in bodies {
            send = send.ready().await.expect("ready");
            let req = http::Request::post(format!("https://dns.test:{}/dns-query", addr.port()))
                .header("content-type", "application/dns-message")
                .body(())
                .expect("request");
            let (resp, mut out) = send.send_request(req, false).expect("send");
            // The body in pieces no larger than the server's window lets through before it reads.
            let mut rest = body.as_slice();
            while !rest.is_empty() {
                out.reserve_capacity(rest.len());
                let n = match std::future::poll_fn(|cx| out.poll_capacity(cx)).await {
                    Some(Ok(n)) => n.min(rest.len()),
                    _ => break,
                };
                if out
                    .send_data(bytes::Bytes::copy_from_slice(&rest[..n]), false)
                    .is_err()
                {
                    break;
                }
                rest = &rest[n..];
            }
            let _ = out.send_data(bytes::Bytes::new(), true);
            let resp = match resp.await {
                Ok(r) => r,
                Err(e) => {
                    statuses.push((0, e.to_string().into_bytes()));
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let mut stream = resp.into_body();
            let mut got = Vec::new();
            while let Some(chunk) = stream.data().await {
                let Ok(chunk) = chunk else { break };
                let _ = stream.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            statuses.push((status, got));
        }
        statuses
    })
}

#[test]
fn a_doh_body_larger_than_a_query_is_refused_before_it_is_held() {
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    let dir = TempDir::new("doh-size");
    let (cfg, ca_path) = tls_config(&dir, up.addr, "doh = [\"127.0.0.1:0\"]");
    let server = C2sink::start_file(&cfg);
    let doh = server.listening("doh").expect("doh address logged");
    // A well-formed query whose OPT carries a Padding option of `pad` octets.
    let padded = |pad: usize| {
        let mut q = query(1, "www.example", 1);
        q[11] = 1;
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        q.extend_from_slice(&((pad + 4) as u16).to_be_bytes());
        q.extend_from_slice(&12u16.to_be_bytes());
        q.extend_from_slice(&(pad as u16).to_be_bytes());
        q.resize(q.len() + pad, 0);
        q
    };
    let statuses: Vec<u16> = doh_post(doh, &ca_path, &[padded(400), padded(6000), padded(400)])
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(
        statuses,
        vec![200, 413, 200],
        "a small query, one too large, and the connection still serves"
    );
}

#[test]
fn a_doh_answer_slower_than_the_idle_timeout_still_arrives() {
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 7), 300);
    up.delay("slow.example", Duration::from_millis(1500));
    let dir = TempDir::new("doh-slow");
    let (cfg, ca_path) = tls_config(&dir, up.addr, "doh = [\"127.0.0.1:0\"]");
    set_server_keys(&cfg, "tcp_idle_timeout_ms = 500");
    let server = C2sink::start_file(&cfg);
    let doh = server.listening("doh").expect("doh address logged");
    // The upstream answers after 1.5 s (within its 2 s timeout), three idle timeouts after the request.
    let replies = doh_post(doh, &ca_path, &[query(0x5107, "slow.example", 1)]);
    assert_eq!(replies.len(), 1);
    let (status, body) = &replies[0];
    assert_eq!(*status, 200, "{}", String::from_utf8_lossy(body));
    let reply = parse(body).expect("a DNS answer");
    assert_eq!(reply.addrs(), vec![std::net::Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(up.count("slow.example"), 1);
}

#[test]
fn dot_on_an_ipv4_and_an_ipv6_address_may_share_a_port_as_listen_does() {
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    let dir = TempDir::new("tls-dual");
    let port = free_port();
    // `[::]` is IPv6 only here, as in `listen`: otherwise it would take IPv4 too and the first could not bind.
    let (cfg, ca_path) = tls_config(
        &dir,
        up.addr,
        &format!("dot = [\"127.0.0.1:{port}\", \"[::]:{port}\"]"),
    );
    let server = C2sink::start_file(&cfg);
    let ca_arg = format!("+tls-ca={}", ca_path.display());
    let port = port.to_string();
    for at in ["@127.0.0.1", "@::1"] {
        let args = [
            at,
            "-p",
            &port,
            &ca_arg,
            "+tls-hostname=dns.test",
            "www.example",
            "A",
            "+short",
            "+time=3",
            "+retry=0",
        ];
        assert_eq!(kdig(&args), "192.0.2.1", "{at}");
    }
    drop(server);
    // Two addresses of one port that do overlap are a config error, named by key, before anything binds.
    let (cfg, _) = tls_config(
        &dir,
        up.addr,
        &format!("dot = [\"0.0.0.0:{port}\"]\ndoh = [\"127.0.0.1:{port}\"]"),
    );
    let (code, out, err) = run(&["check", "--config", cfg.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("tls_listen.doh[0]") && err.contains("overlaps tls_listen.dot[0]"),
        "{err}"
    );
}

#[test]
fn a_doh_post_refused_before_its_body_ends_gets_its_status_not_a_stream_reset() {
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    let dir = TempDir::new("doh-415");
    let (cfg, ca_path) = tls_config(&dir, up.addr, "doh = [\"127.0.0.1:0\"]");
    let server = C2sink::start_file(&cfg);
    let doh = server.listening("doh").expect("doh address logged");
    let body = dir.path().join("q.bin");
    std::fs::write(&body, query(0x4150, "www.example", 1)).expect("query file");
    // curl sends the body after the headers, so c2sink refuses the type while the body is still to come.
    let resolve = format!("dns.test:{}:127.0.0.1", doh.port());
    let url = format!("https://dns.test:{}/dns-query", doh.port());
    let data = format!("@{}", body.display());
    let ca = ca_path.to_str().expect("utf-8");
    let statuses: Vec<String> = (0..20)
        .map(|_| {
            let out = Command::new("curl")
                .args(["-s", "--http2", "--cacert", ca, "--resolve", &resolve])
                .args(["-o", "/dev/null", "-w", "%{http_code}"])
                .args([
                    "-H",
                    "content-type: text/plain",
                    "--data-binary",
                    &data,
                    &url,
                ])
                .output()
                .expect("curl missing: run scripts/install-test-tools.sh");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    assert_eq!(statuses, vec!["415"; 20]);
}

#[test]
fn answers_to_padded_queries_over_dot_and_doh_are_padded() {
    let tls = Encrypted::start("tls-pad");
    let (dot, doh, ca_path) = (tls.dot, tls.doh, &tls.ca_path);
    // The size of kdig's answer ("Received N B"), asked with or without padding.
    let received = |addr: std::net::SocketAddr, extra: &[&str], name: &str| -> usize {
        let out = kdig_at(addr, ca_path, extra, name);
        out.split("Received ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no size in {out}"))
    };
    for (addr, how) in [(dot, "+tls"), (doh, "+https")] {
        for name in ["www.example", "a-much-longer-name.example", "evil.example"] {
            assert_eq!(
                received(addr, &[how, "+padding"], name),
                468,
                "{how} {name}"
            );
            let plain = received(addr, &[how, "+nopadding"], name);
            assert!(
                plain < 468,
                "{how} {name}: not padded unless asked ({plain})"
            );
        }
    }
}
