//! `c2sink healthcheck` against a real server: healthy while it runs (even with a dead upstream),
//! unhealthy once it is stopped, and never fooled by a DNS server that is not c2sink.

mod common;

use common::*;

#[test]
fn healthcheck_passes_while_running_and_fails_once_stopped() {
    let dir = TempDir::new("health");
    // The upstream is a closed port: health must not depend on it.
    let dead_upstream = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let port = free_port();
    let cfg = config_file(&dir, &format!("127.0.0.1:{port}"), &[dead_upstream], "");
    let cfg_s = cfg.to_str().expect("utf-8 path");
    let mut server = C2sink::start_file(&cfg);
    assert_eq!(server.addr().port(), port);

    // A generous bound: on a loaded machine the answer may be slow; only a failing check waits it out.
    let (code, out, err) = run(&["healthcheck", "--config", cfg_s, "--timeout", "10s"]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("healthy"), "{out}");

    server.kill();
    let (code, _, err) = run(&["healthcheck", "--config", cfg_s, "--timeout", "1s"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unhealthy"), "{err}");
}

#[test]
fn healthcheck_rejects_a_dns_server_that_is_not_c2sink() {
    let other = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    let (code, _, err) = run(&[
        "healthcheck",
        "--server",
        &other.addr.to_string(),
        "--timeout",
        "10s",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("wrong answer"), "{err}");
    assert!(!other.seen().is_empty());
}

#[test]
fn healthcheck_explains_a_bad_config() {
    let dir = TempDir::new("health-bad");
    let cfg = dir.write(
        "c2sink.toml",
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n",
    );
    let (code, _, err) = run(&["healthcheck", "--config", cfg.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("server.listen") && err.contains("--server"),
        "{err}"
    );
}

/// `allow` replaces the default, which held loopback: an admin who writes `allow = ["10.0.0.0/8"]` (only the
/// LAN) must still get a healthy container, or Docker restarts it forever. The host's own queries pass;
/// another loopback address, standing in for a machine outside `allow`, is still refused.
#[test]
fn healthcheck_passes_when_allow_names_only_the_lan() {
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    for listen in ["127.0.0.1", "0.0.0.0"] {
        let dir = TempDir::new("health-allow");
        dir.write("c2.txt", "evil.example\n");
        let port = free_port();
        let cfg = dir.write(
            "c2sink.toml",
            &format!(
                "[server]\nlisten = [\"{listen}:{port}\"]\nudp_sockets = 1\nallow = [\"10.0.0.0/8\"]\n\
                 [upstream]\nservers = [\"{}\"]\n[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n",
                up.addr
            ),
        );
        let _server = C2sink::start_file(&cfg);
        let cfg_s = cfg.to_str().expect("utf-8 path");
        let (code, out, err) = run(&["healthcheck", "--config", cfg_s, "--timeout", "10s"]);
        assert_eq!(code, 0, "{listen}: stdout: {out}\nstderr: {err}");
        let asked = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let r = udp_ask_from(
            "127.0.0.2",
            asked,
            &query(0x0a0a, "outside.example", TYPE_A),
            std::time::Duration::from_secs(5),
        )
        .expect("an answer");
        assert_eq!(rcode_and_answers(&r).0, 5, "{listen}: 127.0.0.2 is REFUSED");
        // Over TCP too (a truncated answer's retry, `dig +tcp` on the box): the host's own connection is
        // answered, another address is still refused.
        let own = tcp_from(asked, "127.0.0.1", "inside.example", TYPE_A);
        assert_eq!(rcode_and_answers(&own), (0, 1), "{listen}: own TCP query");
        let other = tcp_from(asked, "127.0.0.2", "outside.example", TYPE_A);
        assert_eq!(
            rcode_and_answers(&other).0,
            5,
            "{listen}: 127.0.0.2 over TCP"
        );
    }
}
