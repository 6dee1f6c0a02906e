//! Alerts against the real binary with a webhook receiver on loopback: exactly one alert per new infected
//! machine, retried when the receiver fails, and a dead webhook never affects DNS.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const C2: &str = "akamaicontainer.com";

/// A loopback webhook that answers the first `fail_first` requests with 503, then 200, and keeps every body.
fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    receiver_with(fail_first, None)
}

/// The same webhook, over HTTPS when `tls` is given.
fn receiver_with(
    fail_first: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/hooks/c2sink", l.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keep = bodies.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let stream: Box<dyn ReadWrite> = match &tls {
                Some(cfg) => {
                    let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                    Box::new(rustls::StreamOwned::new(conn, s))
                }
                None => Box::new(s),
            };
            let mut r = BufReader::new(stream);
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue; // a client that gave up on the TLS handshake
            }
            assert!(line.starts_with("POST /hooks/c2sink HTTP/1.1"), "{line}");
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).unwrap();
            n += 1;
            let status = if n <= fail_first {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            keep.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let s = r.get_mut();
            let _ = s.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            let _ = s.flush();
        }
    });
    (url, bodies)
}

/// A byte stream in either direction (plain TCP or TLS over it).
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

fn wait_count(v: &Arc<Mutex<Vec<serde_json::Value>>>, n: usize, within: Duration) {
    let count = || v.lock().unwrap().len();
    poll(within, Duration::from_millis(20), count, |&c| c >= n);
}

#[test]
fn one_alert_per_new_infected_machine() {
    let dir = tempdir("alerts");
    let (url, bodies) = receiver(0);
    let c = C2sink::start_in(
        &dir,
        &format!("{C2}\n"),
        &format!(
            "[log]\nevents = \"{}\"\n[clients]\nnames = {{ \"127.0.0.2\" = \"laptop-a\" }}\n[alerts]\nwebhook = \"{url}\"\n",
            dir.join("events.log").display()
        ),
    );
    for _ in 0..5 {
        for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            c.udp(from, C2, 1);
            c.udp(from, &format!("www.{C2}"), 28);
        }
        c.tcp("127.0.0.3", C2, 1);
    }
    wait_count(&bodies, 3, PATIENCE);
    // Give a wrong extra alert time to show up.
    std::thread::sleep(Duration::from_millis(500));
    c.stop();
    let got = bodies.lock().unwrap().clone();
    let mut ips: Vec<&str> = got
        .iter()
        .map(|b| b["client_ip"].as_str().unwrap())
        .collect();
    ips.sort();
    assert_eq!(ips, vec!["127.0.0.2", "127.0.0.3", "127.0.0.4"], "{got:?}");
    let a = got.iter().find(|b| b["client_ip"] == "127.0.0.2").unwrap();
    let text = a["text"].as_str().unwrap();
    assert!(
        text.contains("laptop-a") && text.contains(C2) && text.contains("list 3cx"),
        "{text}"
    );
    assert_eq!(a["kind"], "alert");
}

#[test]
fn a_failing_webhook_is_retried_and_a_dead_one_never_affects_dns() {
    let dir = tempdir("alerts-retry");
    let (url, bodies) = receiver(1);
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\n[alerts]\nwebhook = \"{url}\"\n",
            dir.join("e.log").display()
        ),
    );
    c.udp("127.0.0.2", C2, 1);
    wait_count(&bodies, 2, PATIENCE);
    c.stop();
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "503 then retried once: {got:?}");
    assert_eq!(got[0], got[1]);

    // Nothing listens on the webhook port: DNS answers as always, the failure is logged once.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\n[alerts]\nwebhook = \"http://{dead}/x\"\nretries = 1\n",
            dir.join("e.log").display()
        ),
    );
    for i in 0..30 {
        let from = format!("127.0.0.{}", 2 + i % 10);
        assert_eq!(rcode_and_answers(&c.udp(&from, C2, 1)), (0, 1));
        assert_eq!(rcode_and_answers(&c.udp(&from, "example.org", 1)), (0, 1));
    }
    assert!(
        c.wait_for_log("cannot deliver alerts", PATIENCE),
        "{}",
        c.log()
    );
    let stderr = c.stop();
    assert_eq!(
        stderr.matches("cannot deliver alerts").count(),
        1,
        "{stderr}"
    );
}

/// A TLS server config for `127.0.0.1` signed by a throwaway CA named `ca`; returns it and the CA's PEM.
fn tls_for_loopback(ca: &str) -> (Arc<rustls::ServerConfig>, String) {
    let (ca_pem, chain, key) = pki(ca, "127.0.0.1");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    (Arc::new(cfg), ca_pem)
}

#[test]
fn https_webhook_gets_the_alert_and_an_untrusted_certificate_is_refused() {
    let dir = tempdir("alerts-https");
    // Slack/Teams-style: an https:// incoming webhook, here with a private CA given in ca_file.
    let (tls, ca_pem) = tls_for_loopback("c2sink test CA");
    let (url, bodies) = receiver_with(0, Some(tls));
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\n[alerts]\nwebhook = \"{url}\"\nca_file = \"{}\"\n",
            dir.join("e.log").display(),
            dir.join("ca.pem").display()
        ),
    );
    c.udp("127.0.0.2", C2, 1);
    wait_count(&bodies, 1, Duration::from_secs(10));
    c.stop();
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["client_ip"], "127.0.0.2");
    assert!(
        got[0]["text"].as_str().is_some_and(|t| t.contains(C2)),
        "{got:?}"
    );

    // The same server, but c2sink trusts another CA: nothing is delivered, DNS is unaffected.
    let (tls, _) = tls_for_loopback("c2sink test CA");
    let (url, bodies) = receiver_with(0, Some(tls));
    let (_, other_ca) = tls_for_loopback("an impostor CA");
    std::fs::write(dir.join("other.pem"), &other_ca).unwrap();
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\n[alerts]\nwebhook = \"{url}\"\nca_file = \"{}\"\nretries = 0\n",
            dir.join("e2.log").display(),
            dir.join("other.pem").display()
        ),
    );
    assert_eq!(rcode_and_answers(&c.udp("127.0.0.2", C2, 1)), (0, 1));
    assert!(
        c.wait_for_log("cannot deliver alerts", PATIENCE),
        "{}",
        c.log()
    );
    c.stop();
    assert!(
        bodies.lock().unwrap().is_empty(),
        "no alert over an untrusted TLS connection"
    );
}

/// Names a client chooses (the query name, the hostname it gives DHCP) go into `text`, which Slack and Teams
/// read as markup: a `<!channel>` must not ping everyone, nor `<https://..|label>` or `[label](https://..)`
/// become a link. The alert's own fields keep the names as they were.
#[test]
fn names_in_the_alert_text_cannot_ping_or_link() {
    let dir = tempdir("alerts-markup");
    let (url, bodies) = receiver(0);
    std::fs::write(
        dir.join("dnsmasq.leases"),
        "4000000000 aa:00:00:00:00:03 127.0.0.3 <!here>&co *\n",
    )
    .unwrap();
    let c = C2sink::start_in(
        &dir,
        &format!("{C2}\n"),
        &format!(
            "[log]\nevents = \"{}\"\n[clients]\narp = \"\"\nndp = false\n\
             leases = [{{ format = \"dnsmasq\", path = \"dnsmasq.leases\" }}]\n[alerts]\nwebhook = \"{url}\"\n",
            dir.join("events.log").display()
        ),
    );
    let names = [
        ("127.0.0.2", format!("<!channel>.{C2}")),
        ("127.0.0.3", format!("<https://evil.example/x|update>.{C2}")),
        (
            "127.0.0.4",
            format!("[update](https://evil.example/x).{C2}"),
        ),
    ];
    for (from, name) in &names {
        assert_eq!(rcode_and_answers(&c.udp(from, name, 1)).0, 0);
    }
    wait_count(&bodies, 3, PATIENCE);
    c.stop();
    let got = bodies.lock().unwrap().clone();
    let by = |ip: &str| {
        got.iter()
            .find(|b| b["client_ip"] == ip)
            .unwrap_or_else(|| panic!("no alert for {ip}: {got:?}"))
    };
    for (from, name) in &names {
        let a = by(from);
        assert_eq!(a["qname"].as_str(), Some(name.as_str()), "{a}");
        let text = a["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(
            !text
                .replace("\\[", "")
                .replace("\\]", "")
                .contains(['[', ']']),
            "a bracket left for a Markdown link: {text}"
        );
    }
    assert!(
        by("127.0.0.2")["text"]
            .as_str()
            .unwrap()
            .contains(&format!("&lt;!channel&gt;.{C2}"))
    );
    let t3 = by("127.0.0.3")["text"].as_str().unwrap().to_string();
    assert!(t3.contains("&lt;!here&gt;&amp;co"), "{t3}");
    assert!(
        t3.contains(&format!("&lt;https://evil.example/x|update&gt;.{C2}")),
        "{t3}"
    );
    assert_eq!(by("127.0.0.3")["client_hostname"], "<!here>&co");
    assert!(
        by("127.0.0.4")["text"]
            .as_str()
            .unwrap()
            .contains(&format!("\\[update\\](https://evil.example/x).{C2}"))
    );
}
