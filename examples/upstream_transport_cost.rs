//! What an encrypted upstream costs compared with plain DNS: `Upstreams::forward` against a loopback upstream
//! over UDP, DNS over TLS and DNS over HTTPS (certificate from a throwaway CA), one query at a time and 32 at
//! once. Loopback only; a few seconds.
//!   cargo run --release --example upstream_transport_cost

#[path = "../tests/common/raw.rs"]
mod raw;

use bytes::Bytes;
use c2sink::config::Config;
use c2sink::upstream::Upstreams;
use c2sink::wire;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: usize = 4000;

/// Answer: the question echoed with one A record.
fn reply(q: &[u8]) -> Vec<u8> {
    raw::fixed_a(q, Ipv4Addr::new(192, 0, 2, 1), 300, false).unwrap_or_default()
}

fn query(i: usize) -> Vec<u8> {
    raw::query(i as u16, &format!("n{i}.example"), 1)
}

async fn run(ups: Arc<Upstreams>, concurrency: usize) -> f64 {
    let t = Instant::now();
    let per = N / concurrency;
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let ups = ups.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per {
                let raw = query(c * per + k);
                let q = wire::parse_query(&raw).unwrap();
                ups.forward(&raw, &q).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per * concurrency) as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    // Plain UDP upstream.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, src)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&reply(&buf[..n]), src).await;
        }
    });
    // TLS material.
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["dns.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server_cfg = |alpn: &[u8]| {
        let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        c.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(c))
    };
    // DoT upstream (one task per connection, answers in order).
    let dot = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dot_addr = dot.local_addr().unwrap();
    let acc = server_cfg(b"dot");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = dot.accept().await {
            let acc = acc.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut s) = acc.accept(tcp).await else {
                    return;
                };
                let mut l = [0u8; 2];
                while s.read_exact(&mut l).await.is_ok() {
                    let mut m = vec![0u8; usize::from(u16::from_be_bytes(l))];
                    if s.read_exact(&mut m).await.is_err() {
                        return;
                    }
                    let r = reply(&m);
                    let mut out = (r.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&r);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    // DoH upstream (HTTP/2).
    let doh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let doh_addr = doh.local_addr().unwrap();
    let acc = server_cfg(b"h2");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = doh.accept().await {
            let acc = acc.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acc.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        let mut msg = Vec::new();
                        while let Some(Ok(c)) = body.data().await {
                            let _ = body.flow_control().release_capacity(c.len());
                            msg.extend_from_slice(&c);
                        }
                        let resp = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/dns-message")
                            .body(())
                            .unwrap();
                        if let Ok(mut s) = respond.send_response(resp, false) {
                            let _ = s.send_data(Bytes::from(reply(&msg)), true);
                        }
                    });
                }
            });
        }
    });

    let dir = std::env::temp_dir().join(format!("c2sink-transport-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    println!("transport   qps (1 at a time)   qps (32 at once)   [{N} forwards each, loopback]");
    for (name, server) in [
        ("udp", udp_addr.to_string()),
        ("dot", format!("tls://{dot_addr}#dns.test")),
        ("doh", format!("https://{doh_addr}/dns-query#dns.test")),
    ] {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"{server}\"]\nca_file = \"ca.pem\"\n"
        );
        let cfg = Config::parse(&text, &dir.join("c2sink.toml")).unwrap();
        let ups = Arc::new(Upstreams::new(&cfg.upstream));
        let one = run(ups.clone(), 1).await;
        let many = run(ups, 32).await;
        println!("{name:<10} {one:>18.0} {many:>18.0}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
