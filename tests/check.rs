//! `c2sink check`: what an admin runs before reloading a production resolver.

mod common;

fn check(config: &str, files: &[(&str, &str)], extra: &[&str]) -> (i32, String, String) {
    let dir = common::TempDir::new("check");
    for (n, t) in files {
        dir.write(n, t);
    }
    let cfg = dir.write("c2sink.toml", config);
    let mut args = vec!["check", "--config", cfg.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let (code, out, err) = common::run(&args);
    (
        code,
        out,
        err.replace(&dir.path().display().to_string(), "DIR"),
    )
}

const BASE: &str = "[server]\nlisten = [\"127.0.0.1:5353\", \"[::1]:5353\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n";

#[test]
fn shipped_config_checks_clean_with_summary() {
    let (code, s, err) = common::run(&[
        "check",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/c2sink.toml"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(s.contains("\nok: "), "{s}");
    assert!(
        s.contains("26 block rules") && s.contains("0 invalid"),
        "{s}"
    );
    assert!(s.contains("3cx=26"), "entries per list: {s}");
    assert!(s.contains("0.0.0.0:53"), "listen addresses: {s}");
    // Quad9 over DNS over TLS by default (plain DNS is an explicit opt-in).
    assert!(
        s.contains("tls://9.9.9.9:853#dns.quad9.net"),
        "upstreams: {s}"
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_not_with_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    // As `c2sink check | head -0`: the reader is gone before c2sink writes its summary.
    let mut child = Command::new(common::bin())
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/c2sink.toml"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn c2sink");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Ended by SIGPIPE as `cat` would be, or (had it written before the pipe closed) successfully.
    assert!(
        out.status.signal() == Some(13) || out.status.success(),
        "{:?}: {err}",
        out.status
    );
}

#[test]
fn unknown_key_is_an_error_naming_file_key_and_line() {
    let (code, _, err) = check(&format!("{BASE}[sinkhole]\nmod = \"null\"\n"), &[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("DIR/c2sink.toml"), "{err}");
    assert!(err.contains("sinkhole.mod"), "{err}");
    assert!(err.contains("unknown field"), "{err}");
    assert!(err.contains("line 6"), "{err}");
}

#[test]
fn wrong_type_and_bad_address_are_errors() {
    let (code, _, err) = check(
        "[server]\nlisten = [\"127.0.0.1:5353\"]\n[upstream]\nservers = [\"9.9.9.9:x53\"]\n",
        &[],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("upstream.servers"), "{err}");
    let (code, _, err) = check(&format!("{BASE}[sinkhole]\nttl = \"sixty\"\n"), &[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("sinkhole.ttl"), "{err}");
    let (code, _, err) = check(
        &format!("{BASE}[sinkhole]\nmode = \"blackhole\"\n"),
        &[],
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("sinkhole.mode") && err.contains("blackhole"),
        "{err}"
    );
}

/// What check passed but serve then failed on (exit 1 at start, or a log that went nowhere useful): each is
/// now a config error naming its key.
#[test]
fn what_serve_cannot_start_with_check_refuses_too() {
    let cases: &[(&str, &str, &str)] = &[
        ("[log]\nevents = \".\"\n", "log.events", "is a folder"),
        (
            "[log]\nqueries = \"stdout\"\n",
            "log.queries",
            "must be a file path",
        ),
        ("[log]\nqueries = \".\"\n", "log.queries", "is a folder"),
        (
            "[log]\nevents = \"ev.jsonl\"\nqueries = \"ev.jsonl\"\n",
            "log.queries",
            "is also log.events",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:5353\"\n",
            "admin.listen",
            "overlaps server.listen[0]",
        ),
        (
            "[trap]\nlisten = [\"127.0.0.1\"]\nports = [5353]\n",
            "trap.ports (127.0.0.1:5353)",
            "overlaps server.listen[0]",
        ),
        (
            "[sinkhole]\nttl = 4294967295\n",
            "sinkhole.ttl",
            "outside 0..=86400",
        ),
        (
            "[server]\nudp_sockets = 100000\n",
            "server.udp_sockets",
            "outside 0..=256",
        ),
        (
            "[server]\nuser = \"no-such-user-c2sink\"\n",
            "server.user",
            "no-such-user-c2sink",
        ),
    ];
    for (extra, key, what) in cases {
        let base = if extra.starts_with("[server]") {
            BASE.replacen("[server]\n", extra, 1)
        } else {
            format!("{BASE}{extra}")
        };
        let (code, out, err) = check(&base, &[], &[]);
        assert_eq!(code, 2, "{extra}: {out}{err}");
        assert!(err.contains(key) && err.contains(what), "{extra}: {err}");
    }
    // A wildcard DNS listener covers the admin port on every address.
    let (code, _, err) = check(
        "[server]\nlisten = [\"0.0.0.0:5353\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n\
         [admin]\nlisten = \"127.0.0.1:5353\"\n",
        &[],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("admin.listen") && err.contains("overlaps"),
        "{err}"
    );
}

/// An encrypted upstream that is c2sink's own DoT or DoH listener loops every forwarded query back, as a
/// plain one on `listen` does: each would wait out the timeout and end in SERVFAIL.
#[test]
fn c2sink_as_its_own_encrypted_upstream_is_an_error() {
    let (code, _, err) = check(
        "[server]\nlisten = [\"127.0.0.1:5353\"]\n\
         [upstream]\nservers = [\"tls://127.0.0.1:8853#dns.test\", \"https://127.0.0.1:8443/dns-query#dns.test\", \
         \"tls://127.0.0.1:8443#dns.test\"]\n\
         [tls_listen]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\ndot = [\"0.0.0.0:8853\"]\n\
         doh = [\"127.0.0.1:8443\"]\n",
        &[],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("upstream.servers[0]") && err.contains("c2sink's own tls_listen.dot[0]"),
        "{err}"
    );
    assert!(
        err.contains("upstream.servers[1]") && err.contains("c2sink's own tls_listen.doh[0]"),
        "{err}"
    );
    assert!(
        !err.contains("upstream.servers[2]"),
        "DoT to the DoH port is no loop: {err}"
    );
}

#[test]
fn overlapping_listen_addresses_and_c2sink_as_its_own_upstream_are_errors() {
    let (code, _, err) = check(
        "[server]\nlisten = [\"127.0.0.1:5353\", \"127.0.0.1:5353\", \"0.0.0.0:5354\", \"127.0.0.2:5354\", \"[::1]:5354\"]\n\
         [upstream]\nservers = [\"127.0.0.1:5353\", \"127.0.0.9:5354\", \"127.0.0.1:53\"]\n",
        &[],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("server.listen[1]") && err.contains("overlaps server.listen[0]"),
        "{err}"
    );
    assert!(
        err.contains("server.listen[3]") && err.contains("overlaps server.listen[2]"),
        "{err}"
    );
    assert!(
        !err.contains("server.listen[4]"),
        "IPv6 is another socket: {err}"
    );
    assert!(
        err.contains("upstream.servers[0]") && err.contains("c2sink's own server.listen[0]"),
        "{err}"
    );
    assert!(
        err.contains("upstream.servers[1]") && err.contains("c2sink's own server.listen[2]"),
        "a loopback address on a wildcard listener's port: {err}"
    );
    assert!(!err.contains("upstream.servers[2]"), "{err}");
}

#[test]
fn bad_forward_zones_are_errors() {
    let (code, _, err) = check(
        &format!(
            "{BASE}[[forward]]\nzone = \"corp example\"\nservers = [\"10.0.0.1:53\"]\n\
             [[forward]]\nzone = \"lan.\"\nservers = []\n\
             [[forward]]\nzone = \"LAN\"\nservers = [\"10.0.0.1:53\"]\n\
             [[forward]]\nzone = \"x.onion\"\nservers = [\"10.0.0.1:53\"]\n"
        ),
        &[],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    for key in [
        "forward[0].zone",
        "forward[1].servers",
        "forward[2].zone",
        "forward[3].zone",
    ] {
        assert!(err.contains(key), "{key}: {err}");
    }
    assert!(err.contains("lan is listed twice"), "{err}");
}

#[test]
fn every_problem_is_listed_at_once() {
    let (code, _, err) = check(
        "[server]\nlisten = []\n[upstream]\nservers = [\"127.0.0.1:53\"]\ntimeout_ms = 999999\n[sinkhole]\nmode = \"address\"\n[[blocklists]]\nname = \"missing\"\npath = \"nope.txt\"\n[[blocklists]]\nname = \"dir\"\npath = \".\"\n",
        &[],
        &[],
    );
    assert_ne!(code, 0);
    for key in [
        "server.listen",
        "upstream.timeout_ms",
        "sinkhole.mode",
        "blocklists[0].path",
        "blocklists[1].path",
    ] {
        assert!(err.contains(key), "{key} missing in:\n{err}");
    }
    assert!(err.contains("nope.txt"), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn bad_list_lines_are_reported_with_file_and_line() {
    let list = "# c2 list\nevil.example\n\nnot a domain\nhttp://x.example/\nok.example # fine\nbad..dots\n";
    let (code, out, err) = check(
        &format!("{BASE}[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n"),
        &[("c2.txt", list)],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(all.contains("c2.txt:4: invalid"), "{all}");
    assert!(all.contains("c2.txt:5: invalid"), "{all}");
    assert!(all.contains("c2.txt:7: invalid"), "{all}");
    assert!(all.contains("3 invalid"), "{all}");
    assert!(out.contains("problems: ") && out.contains("c2=2"), "{out}");
    // As a start-up gate (systemd's ExecStartPre): shown, but serve would start, so exit 0; a config
    // serve cannot use still fails.
    let (code, out, err) = check(
        &format!("{BASE}[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n"),
        &[("c2.txt", list)],
        &["--errors-only"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(format!("{out}{err}").contains("3 invalid"), "{out}{err}");
    let (code, _, err) = check("[server]\nlisten = 5\n", &[], &["--errors-only"]);
    assert_eq!(code, 2, "{err}");
}

/// The shipped systemd unit gates its start on `check --errors-only`: one bad line in a feed must not keep
/// a network without DNS at the next reboot.
#[test]
fn the_systemd_unit_gates_on_errors_only() {
    let unit = include_str!("../deploy/c2sink.service");
    let pre: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecStartPre="))
        .collect();
    assert_eq!(pre.len(), 1, "{pre:?}");
    assert!(pre[0].contains(" check --errors-only "), "{}", pre[0]);
}

/// An allow list with no rule yet (an exceptions file kept for the first false positive, as in the README's
/// quick start) exempts nothing: no problem, so `check` exits 0, where a block list with no rule is one.
#[test]
fn an_empty_allow_list_is_no_problem() {
    let (code, out, err) = check(
        &format!(
            "{BASE}[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n\
             [[blocklists]]\nname = \"ok\"\npath = \"allow.txt\"\nkind = \"allow\"\n"
        ),
        &[
            ("c2.txt", "evil.example\n"),
            ("allow.txt", "# false positives\n"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("holds no rule"), "{out}");
    assert!(out.contains("\nok: ") && out.contains("ok=0"), "{out}");
}

#[test]
fn a_list_with_no_rule_is_a_problem_not_silently_nothing() {
    for body in ["", "# comments only\n\n"] {
        let (code, out, err) = check(
            &format!("{BASE}[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n"),
            &[("c2.txt", body)],
            &[],
        );
        assert_eq!(code, 1, "{body:?}: {out}{err}");
        assert!(out.contains("c2.txt: holds no rule"), "{out}");
        assert!(out.contains("problems: ") && out.contains("c2=0"), "{out}");
    }
}

#[test]
fn explain_names_list_rule_and_line() {
    let (code, out, _) = check(
        &format!("{BASE}[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n"),
        &[("c2.txt", "# x\nevil.example\nsub.evil.example\n")],
        &["--explain", "A.Sub.Evil.Example."],
    );
    assert_eq!(code, 0);
    assert!(out.contains("a.sub.evil.example: BLOCKED"), "{out}");
    assert!(
        out.contains("by list \"c2\" rule \"sub.evil.example\" at "),
        "{out}"
    );
    assert!(out.contains("c2.txt:3"), "{out}");
    assert!(
        out.contains("also matches") && out.contains("c2.txt:2"),
        "{out}"
    );
    let (_, out, _) = check(
        &format!("{BASE}[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n"),
        &[("c2.txt", "evil.example\n")],
        &["--explain", "notevil.example"],
    );
    assert!(out.contains("not blocked"), "{out}");
    // a name that cannot be asked is a usage error, not an answer
    let (code, _, err) = check(
        &format!("{BASE}[[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n"),
        &[("c2.txt", "evil.example\n")],
        &["--explain", "not a name"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--explain: \"not a name\" is not a domain name"),
        "{err}"
    );
}

/// A bare upstream address is plain DNS on port 53, as Unbound's `forward-addr` takes it.
#[test]
fn a_bare_upstream_address_means_port_53() {
    let (code, out, err) = check(
        "[server]\nlisten = [\"127.0.0.1:5353\"]\n[upstream]\nservers = [\"127.0.0.1\", \"[::1]\"]\n",
        &[],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("upstreams 127.0.0.1:53,[::1]:53"), "{out}");
}

#[test]
fn serve_with_bad_config_exits_non_zero_with_message() {
    let dir = common::TempDir::new("check-serve");
    let cfg = dir.write("bad.toml", "[server]\nlisten = [\"127.0.0.1:0\"]\n");
    let (code, _, err) = common::run(&["serve", "--config", cfg.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(
        err.contains("bad.toml") && err.contains("upstream"),
        "{err}"
    );
}

#[test]
fn feed_without_a_copy_yet_is_noted_not_failed() {
    let (code, out, err) = check(
        &format!(
            "{BASE}[[blocklists]]\nname = \"intel\"\npath = \"intel.txt\"\nurl = \"http://127.0.0.1:9/intel.txt\"\n\
             [[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n"
        ),
        &[("c2.txt", "evil.example\n")],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("list \"intel\" (feed): no copy at"), "{out}");
    assert!(out.contains("ok: ") && out.contains("c2=1"), "{out}");
}

/// A zone as BIND dumps it: `$ORIGIN .`, the SOA owner naming the zone, then owners relative to each
/// `$ORIGIN`.
const BIND_DUMP: &str = "$ORIGIN .\n$TTL 300\nrpz.example IN SOA localhost. root.localhost. 1 3600 600 86400 60\n\
                         \x20           NS localhost.\n$ORIGIN rpz.example.\nc2 CNAME .\n$ORIGIN c2.rpz.example.\n\
                         * CNAME .\n$ORIGIN evil.rpz.example.\nwww CNAME .\n";

#[test]
fn rpz_owners_are_relative_to_the_current_origin_as_bind_dumps_them() {
    let config = format!("{BASE}[[blocklists]]\nname = \"dump\"\npath = \"dump.rpz\"\n");
    let files = [("dump.rpz", BIND_DUMP)];
    let (code, out, err) = check(&config, &files, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(rpz, block)") && out.contains("0 invalid"),
        "{out}"
    );
    for (name, blocked) in [
        ("c2", true),
        ("x.c2", true),
        ("www.evil", true),
        ("www", false),
        ("evil", false),
    ] {
        let (_, out, _) = check(&config, &files, &["--explain", name]);
        let want = if blocked {
            format!("{name}: BLOCKED")
        } else {
            format!("{name}: not blocked")
        };
        assert!(out.contains(&want), "{name}: {out}");
    }
    // The apex is the SOA owner, not the first `$ORIGIN`: an absolute owner outside it is reported where
    // it is.
    let outside = format!("{BIND_DUMP}x.other.example. CNAME .\n");
    let (code, out, err) = check(&config, &[("dump.rpz", &outside)], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "dump.rpz:11: invalid: \"x.other.example\" is outside the zone \"rpz.example\""
        ),
        "{out}"
    );
}

#[test]
fn auto_format_looks_past_a_long_comment_header() {
    // 501 comment lines (more than the 500-line sample), and a header over 64 KiB.
    let short = format!("{}0.0.0.0 hh1.example\n", "# comment\n".repeat(501));
    let long = format!(
        "{}0.0.0.0 hh2.example\n",
        format!("# {}\n", "c".repeat(98)).repeat(1000)
    );
    let (code, out, err) = check(
        &format!(
            "{BASE}[[blocklists]]\nname = \"short\"\npath = \"short.txt\"\n\
             [[blocklists]]\nname = \"long\"\npath = \"long.txt\"\n"
        ),
        &[("short.txt", &short), ("long.txt", &long)],
        &["--explain", "hh2.example"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("list \"short\" (hosts, block)"), "{out}");
    assert!(out.contains("list \"long\" (hosts, block)"), "{out}");
    assert!(out.contains("hh2.example: BLOCKED"), "{out}");
}

#[test]
fn adblock_important_block_is_skipped_and_reported_not_overridden() {
    // `$important` outranks exceptions in AdGuard syntax; c2sink cannot, so it says so instead of letting
    // the exception win silently.
    let list = "||imp.example^$important\n@@||imp.example^\n||plain.example^\n";
    let config =
        format!("{BASE}[[blocklists]]\nname = \"ads\"\npath = \"ads.txt\"\nformat = \"adblock\"\n");
    let (code, out, err) = check(&config, &[("ads.txt", list)], &["--explain", "imp.example"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ads.txt:1: skipped: \"||imp.example^$important\": option $important"),
        "{out}"
    );
    assert!(out.contains("1 block rules, 1 allow rules"), "{out}");
    assert!(!out.contains("overridden block"), "{out}");
}

/// `--explain` on a name no list blocks says where its query goes, as the running server sends it: the
/// special-use and private names c2sink answers itself were said to be "forwarded upstream", and a
/// `[[forward]]` zone's names went unnamed. Checked against a server with that config: the main upstream
/// and the zone's server see exactly the names `--explain` sends them.
#[test]
fn explain_says_where_an_unblocked_name_goes_as_the_server_does() {
    let main = common::Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 60);
    let lan = common::Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 2), 60);
    let dir = common::TempDir::new("check-route");
    dir.write("c2.txt", "evil.example\n");
    let cfg = dir.write(
        "c2sink.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{}\"]\n\
             [[forward]]\nzone = \"corp.example\"\nservers = [\"{}\"]\n\
             [[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n[log]\nevents = \"events.jsonl\"\n",
            main.addr, lan.addr
        ),
    );
    let c = cfg.to_str().expect("utf-8");
    let explain = |name: &str| {
        let (code, out, err) = common::run(&["check", "--config", c, "--explain", name]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no verdict for {name}: {out}"))
            .to_string()
    };
    let local = [
        "4.3.2.10.in-addr.arpa",
        "x.onion",
        "printer.home.arpa",
        "localhost",
    ];
    for name in local {
        let v = explain(name);
        assert!(
            v.contains("c2sink answers it itself") && !v.contains("forwarded"),
            "{v}"
        );
    }
    assert!(explain("x.localhost").contains("127.0.0.1 / ::1"));
    assert!(explain("x.onion").contains("NXDOMAIN, local zone onion"));
    let v = explain("pc.corp.example");
    assert!(
        v.contains(&format!(
            "forwarded to the servers of [[forward]] zone corp.example ({})",
            lan.addr
        )),
        "{v}"
    );
    assert!(
        explain("www.example.org").ends_with("it is forwarded upstream"),
        "forwarded upstream"
    );

    let server = common::C2sink::start_file(&cfg);
    for name in local.iter().chain(&["pc.corp.example", "www.example.org"]) {
        common::ask_udp(server.addr(), name, 1);
    }
    assert_eq!(main.names(), vec!["www.example.org".to_string()]);
    assert_eq!(lan.names(), vec!["pc.corp.example".to_string()]);
}

/// A log written over one of c2sink's own inputs destroys it: the query log appended to the config file left
/// one that no longer parsed (at the next reload and start), block events appended to a list turned it into
/// JSON lines. `check` said ok and `serve` ran with it; both refuse it now, naming the key.
#[test]
fn a_log_over_the_config_or_a_list_is_an_error_and_writes_nothing() {
    let dir = common::TempDir::new("check-log-over-input");
    dir.write("c2.txt", "evil.example\n");
    let sub = dir.path().join("lists");
    std::fs::create_dir(&sub).expect("folder");
    std::fs::write(sub.join("other.txt"), "c2.test\n").expect("list");
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n\
                [[blocklists]]\nname = \"c2\"\npath = \"c2.txt\"\n\
                [[blocklists]]\nname = \"other\"\npath = \"lists/other.txt\"\n\
                [log]\nevents = \"lists/../c2.txt\"\nqueries = \"c2sink.toml\"\n";
    let cfg = dir.write("c2sink.toml", text);
    let cfg_arg = cfg.to_str().expect("utf-8");
    for cmd in ["check", "serve"] {
        let (code, _, err) = common::run(&[cmd, "--config", cfg_arg]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("c2sink.toml: log.events: ")
                && err.contains(
                    "is blocklists[0].path, which c2sink reads: it must not write over it"
                ),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("c2sink.toml: log.queries: ") && err.contains("is the config file, which"),
            "{cmd}: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&cfg).expect("config"), text);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("c2.txt")).expect("list"),
        "evil.example\n"
    );
    // A log of its own, next to them, is fine.
    let fine = text
        .replace("lists/../c2.txt", "events.jsonl")
        .replace("queries = \"c2sink.toml\"", "queries = \"queries.jsonl\"");
    dir.write("c2sink.toml", &fine);
    let (code, out, err) = common::run(&["check", "--config", cfg_arg]);
    assert_eq!(code, 0, "{out}{err}");
    // A feed's download would replace another list, or the config.
    let feeds = format!(
        "{fine}[[blocklists]]\nname = \"feed\"\npath = \"lists/other.txt\"\nurl = \"http://127.0.0.1:9/x\"\n\
         [[blocklists]]\nname = \"feed2\"\npath = \"c2sink.toml\"\nurl = \"http://127.0.0.1:9/y\"\n"
    );
    dir.write("c2sink.toml", &feeds);
    let (code, _, err) = common::run(&["check", "--config", cfg_arg]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("blocklists[2].path: ") && err.contains("is blocklists[1].path, which"),
        "{err}"
    );
    assert!(
        err.contains("blocklists[3].path: ") && err.contains("is the config file, which"),
        "{err}"
    );
}

/// `check` says what `serve` warns at start about `allow`: an open resolver, or a list that refuses every
/// client; both are sometimes meant, so the exit status stays 0.
#[test]
fn check_warns_of_an_open_or_empty_allow_as_serve_does() {
    for (allow, warning) in [
        (
            "[\"0.0.0.0/0\"]",
            "warning: server.allow lets every address query: this is an OPEN RESOLVER",
        ),
        (
            "[]",
            "warning: server.allow is empty: every client is refused",
        ),
    ] {
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:5353\"]\nallow = {allow}\n[upstream]\nservers = [\"127.0.0.1:53\"]\n"
        );
        let (code, out, err) = check(&cfg, &[], &[]);
        assert_eq!(code, 0, "{allow}: {out}{err}");
        assert!(out.contains(warning), "{allow}: {out}");
    }
    let (code, out, _) = check(BASE, &[], &[]);
    assert_eq!(code, 0);
    assert!(!out.contains("warning:"), "{out}");
}

/// `log.queries` naming `log.events`' file by another path (through a folder and `..`, a symlink) is the
/// same file, which two writers would rotate under each other: refused as the same spelling is.
#[test]
fn the_query_log_is_not_the_event_log_by_another_path() {
    let dir = common::TempDir::new("check-same-log");
    std::fs::create_dir(dir.path().join("sub")).expect("folder");
    std::os::unix::fs::symlink(dir.path(), dir.path().join("here")).expect("symlink");
    for queries in ["sub/../ev.jsonl", "here/ev.jsonl"] {
        let cfg = dir.write(
            "c2sink.toml",
            &format!("{BASE}[log]\nevents = \"ev.jsonl\"\nqueries = \"{queries}\"\n"),
        );
        let (code, out, err) = common::run(&["check", "--config", cfg.to_str().expect("utf-8")]);
        assert_eq!(code, 2, "{queries}: {out}{err}");
        assert!(
            err.contains("log.queries: ") && err.contains("is also log.events"),
            "{queries}: {err}"
        );
    }
}
