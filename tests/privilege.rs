//! `[server] user`: started as root, c2sink binds, then serves as the configured user with no capabilities.
//! These tests need root (as on the CI machine); elsewhere they say so and pass without checking.

mod common;

use common::*;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| status_field(&s, "Uid:").starts_with("0\t"))
        .unwrap_or(false)
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn serve_as(user: &str) -> (C2sink, String, TempDir) {
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    let dir = TempDir::new("priv");
    // The test folder must be reachable by the unprivileged user for nothing; everything is opened as root.
    let cfg = config_file(&dir, "127.0.0.1:0", &[up.addr], "");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        text.replace(
            "udp_sockets = 1\n",
            &format!("udp_sockets = 1\nuser = \"{user}\"\n"),
        ),
    )
    .expect("write config");
    // The upstream lives as long as the server (it answers the forwarded www.example below).
    let server = C2sink::start_file(&cfg).keeping(up);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("status");
    (server, status, dir)
}

#[test]
fn root_start_drops_to_numeric_user_after_binding() {
    if !is_root() {
        eprintln!("not root: privilege drop not exercised");
        return;
    }
    let (server, status, _dir) = serve_as("65534:65533");
    assert_eq!(status_field(&status, "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(&status, "Gid:"), "65533\t65533\t65533\t65533");
    assert_eq!(status_field(&status, "Groups:"), "65533");
    assert_eq!(status_field(&status, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(&status, "CapPrm:"), "0000000000000000");
    // Every thread (runtime workers, event writer), not just the main one.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).expect("tasks");
    let mut n = 0;
    for t in tasks {
        let s = std::fs::read_to_string(t.expect("task").path().join("status")).expect("status");
        assert_eq!(status_field(&s, "Uid:"), "65534\t65534\t65534\t65534");
        n += 1;
    }
    assert!(n > 1, "a multi-threaded server");
    // Still serves, over both transports, after the switch.
    let a = ask_udp(server.addr(), "evil.example", 1);
    assert_eq!(a.answers.len(), 1);
    let a = ask_tcp(server.addr(), "www.example", 1);
    assert_eq!(a.answers.len(), 1);
}

#[test]
fn root_start_drops_to_named_user() {
    if !is_root() {
        eprintln!("not root: privilege drop not exercised");
        return;
    }
    let (server, status, _dir) = serve_as("nobody");
    let uid = status_field(&status, "Uid:");
    assert!(!uid.starts_with('0'), "{uid}");
    assert_eq!(ask_udp(server.addr(), "evil.example", 1).answers.len(), 1);
}

#[test]
fn unknown_user_stops_the_start_with_a_clear_error() {
    if !is_root() {
        eprintln!("not root: privilege drop not exercised");
        return;
    }
    let dir = TempDir::new("priv-bad");
    let cfg = config_file(
        &dir,
        "127.0.0.1:0",
        &["127.0.0.1:9".parse().expect("addr")],
        "",
    );
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        text.replace(
            "udp_sockets = 1\n",
            "udp_sockets = 1\nuser = \"no-such-user-c2sink\"\n",
        ),
    )
    .expect("write");
    let (code, _, err) = run(&["serve", "--config", cfg.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(
        err.contains("server.user") && err.contains("no-such-user-c2sink"),
        "{err}"
    );
}

/// Logs in a folder the configured user cannot write (the lines go to a file opened as root; the rename
/// that rotates it fails as the user): c2sink says so once, not for every batch of lines (that flooded the
/// operational log, a warning and an `fdatasync` per write), and keeps appending every line.
#[test]
fn a_log_that_cannot_rotate_as_the_user_warns_once_and_keeps_every_line() {
    if !is_root() {
        eprintln!("not root: privilege drop not exercised");
        return;
    }
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    // The test folder is root's alone (mode 0700): `nobody` cannot rename in it.
    let dir = TempDir::new("priv-rotate");
    let cfg = config_file(
        &dir,
        "127.0.0.1:0",
        &[up.addr],
        "rotate_size = \"1KB\"\ncoalesce = \"0s\"\nlevel = \"info\"\n",
    );
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        text.replace("udp_sockets = 1\n", "udp_sockets = 1\nuser = \"nobody\"\n"),
    )
    .expect("write config");
    let server = C2sink::start_file(&cfg).keeping(up);
    // About four lines fill 1 KB: each later batch would be due for a rotation.
    const N: usize = 24;
    for i in 0..N {
        let a = ask_udp(server.addr(), &format!("n{i}.evil.example"), 1);
        assert_eq!(a.answers.len(), 1, "n{i}");
        // Let the writer take each line as a batch of its own.
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    let events = server.events(N);
    assert_eq!(events.len(), N, "every line appended to the live file");
    server.wait_log_count("cannot rotate log", 1);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let warnings: Vec<String> = server
        .stderr()
        .into_iter()
        .filter(|l| l.contains("cannot rotate"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, not one per batch: {warnings:#?}"
    );
}
