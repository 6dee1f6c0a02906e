//! Lists over the wire: formats, allowlists, per-list actions and hot reload, against the real c2sink binary
//! and a real (tiny) upstream DNS server on loopback.

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The address the test upstream gives to every A question.
const UPSTREAM_A: &str = "203.0.113.9";

/// What came back for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    rcode: ResponseCode,
    addrs: Vec<String>,
}

fn reply(rcode: ResponseCode, addrs: &[&str]) -> Reply {
    Reply {
        rcode,
        addrs: addrs.iter().map(|s| s.to_string()).collect(),
    }
}

/// Writes `config` after a listener, an upstream answering A with [`UPSTREAM_A`] (TTL 60, other types NODATA)
/// and no cache into `dir`, and starts c2sink on it (log level info).
fn start(dir: &TempDir, config: &str) -> C2sink {
    let ip: Ipv4Addr = UPSTREAM_A.parse().expect("ip");
    let up = Upstream::answering_a(ip, 60);
    let cfg = dir.write(
        "c2sink.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{}\"]\ntimeout_ms = {UPSTREAM_TIMEOUT_MS}\n\
             [cache]\nsize = 0\n{config}",
            up.addr
        ),
    );
    C2sink::launch(&cfg, INFO_ENV).keeping(up)
}

/// Asks one question over UDP (a few tries); `None` when nothing came back.
fn lookup(s: &C2sink, name: &str, qtype: RecordType) -> Option<Reply> {
    let r = ask_udp_retrying(s.addr(), name, qtype)?;
    let addrs = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    Some(Reply {
        rcode: r.metadata.response_code,
        addrs,
    })
}

/// The answer to an A question; panics when none came.
fn a(s: &C2sink, name: &str) -> Reply {
    lookup(s, name, RecordType::A).unwrap_or_else(|| panic!("no answer for {name}"))
}

/// Waits until `name` gets `want` (a reload is asynchronous); panics with the log after 15 s.
fn wait_answer(s: &C2sink, name: &str, want: &Reply) {
    let got = poll(
        PATIENCE,
        Duration::from_millis(100),
        || a(s, name),
        |got| got == want,
    );
    assert_eq!(&got, want, "{name}: still {got:?}; log:\n{}", s.log());
}

fn forwarded() -> Reply {
    reply(ResponseCode::NoError, &[UPSTREAM_A])
}

#[test]
fn every_format_is_served_with_its_action() {
    let dir = tempdir("formats");
    std::fs::write(
        dir.join("hosts.txt"),
        "\u{feff}127.0.0.1 localhost\r\n0.0.0.0\tads.example  track.example # x\r\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("adblock.txt"),
        "[Adblock Plus 2.0]\n! c\n||adnet.example^\n@@||ok.adnet.example^\nexample.org##.banner\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("zone.rpz"),
        "$TTL 300\n$ORIGIN rpz.local.\n@ SOA ns.rpz.local. admin.rpz.local. ( 1 3600 600 86400 300 )\n  NS ns.rpz.local.\n\
         nx.example CNAME .\n*.nodata.example CNAME *.\nsink.example A 192.0.2.7\nsink.example A 192.0.2.8\n\
         drop.example CNAME rpz-drop.\n",
    )
    .unwrap();
    std::fs::write(dir.join("c2.txt"), "*.c2.example\nbücher.example\n").unwrap();
    let s = start(
        &dir,
        r#"
[[blocklists]]
name = "hosts"
path = "hosts.txt"
action = "nxdomain"
[[blocklists]]
name = "ads"
path = "adblock.txt"
[[blocklists]]
name = "rpz"
path = "zone.rpz"
[[blocklists]]
name = "c2"
path = "c2.txt"
action = "address"
ipv4 = "192.0.2.55"
[sinkhole]
mode = "null"
"#,
    );
    // hosts: list action nxdomain; localhost is never blocked (it is answered locally, RFC 6761).
    assert_eq!(a(&s, "track.example"), reply(ResponseCode::NXDomain, &[]));
    assert_eq!(a(&s, "www.ads.example"), reply(ResponseCode::NXDomain, &[]));
    assert_eq!(
        a(&s, "localhost"),
        reply(ResponseCode::NoError, &["127.0.0.1"])
    );
    // AdBlock: [sinkhole] mode null; the @@ exception is forwarded.
    assert_eq!(
        a(&s, "x.adnet.example"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
    assert_eq!(a(&s, "ok.adnet.example"), forwarded());
    // RPZ: per-rule actions.
    assert_eq!(a(&s, "nx.example"), reply(ResponseCode::NXDomain, &[]));
    assert_eq!(a(&s, "a.nx.example"), forwarded(), "RPZ owner is exact");
    assert_eq!(a(&s, "a.nodata.example"), reply(ResponseCode::NoError, &[]));
    assert_eq!(a(&s, "nodata.example"), forwarded(), "*.x does not cover x");
    let mut sink = a(&s, "sink.example");
    sink.addrs.sort();
    assert_eq!(
        sink,
        reply(ResponseCode::NoError, &["192.0.2.7", "192.0.2.8"])
    );
    assert_eq!(
        lookup(&s, "sink.example", RecordType::AAAA),
        Some(reply(ResponseCode::NoError, &[]))
    );
    assert_eq!(
        lookup(&s, "drop.example", RecordType::A),
        None,
        "rpz-drop: no answer"
    );
    // Wildcard and IDN in a plain list with its own address.
    assert_eq!(
        a(&s, "a.c2.example"),
        reply(ResponseCode::NoError, &["192.0.2.55"])
    );
    assert_eq!(a(&s, "c2.example"), forwarded());
    assert_eq!(
        a(&s, "xn--bcher-kva.example"),
        reply(ResponseCode::NoError, &["192.0.2.55"])
    );
}

/// RPZ local data is answered with the zone's TTL (the record's own, else `$TTL`), as BIND and Unbound answer
/// it, but never longer than `[sinkhole] ttl`, which bounds how long a name taken off a list stays blocked in
/// clients' caches. Other RPZ answers keep `[sinkhole] ttl`.
#[test]
fn rpz_local_data_answers_with_the_zones_ttl_up_to_the_sinkhole_ttl() {
    let dir = tempdir("rpz-ttl");
    std::fs::write(
        dir.join("zone.rpz"),
        "$TTL 30\n$ORIGIN rpz.local.\n@ SOA ns.rpz.local. admin.rpz.local. 1 3600 600 86400 300\n  NS ns.rpz.local.\n\
         zone-ttl.example A 192.0.2.1\nown-ttl.example 9 IN A 192.0.2.2\nown-ttl.example IN 7 A 192.0.2.3\n\
         long.example 1d A 192.0.2.4\nnx.example 5 CNAME .\n",
    )
    .unwrap();
    let s = start(
        &dir,
        "[[blocklists]]\nname = \"rpz\"\npath = \"zone.rpz\"\n[sinkhole]\nttl = 120\n",
    );
    // (answer TTLs, authority TTLs) over UDP, checked to be the same over TCP
    let ttls = |name: &str, qtype: u16| {
        let of = |m: hickory_proto::op::Message| {
            let t =
                |rs: &[hickory_proto::rr::Record]| rs.iter().map(|r| r.ttl).collect::<Vec<u32>>();
            (t(&m.answers), t(&m.authorities))
        };
        let udp = of(ask_udp(s.addr(), name, qtype));
        assert_eq!(udp, of(ask_tcp(s.addr(), name, qtype)), "{name} over TCP");
        udp
    };
    assert_eq!(ttls("zone-ttl.example", 1), (vec![30], vec![]));
    assert_eq!(
        ttls("own-ttl.example", 1),
        (vec![7, 7], vec![]),
        "the RRset's lowest"
    );
    assert_eq!(ttls("long.example", 1), (vec![120], vec![]), "capped");
    // NODATA for another type: the SOA carries the local data's TTL.
    assert_eq!(ttls("zone-ttl.example", 28), (vec![], vec![30]));
    assert_eq!(ttls("nx.example", 1), (vec![], vec![120]), "not local data");
}

#[test]
fn allow_list_beats_block_of_parent() {
    let dir = tempdir("allow");
    std::fs::write(dir.join("block.txt"), "example.com\n").unwrap();
    std::fs::write(dir.join("allow.txt"), "good.example.com\n").unwrap();
    let s = start(
        &dir,
        "[[blocklists]]\nname = \"block\"\npath = \"block.txt\"\n\
         [[blocklists]]\nname = \"exceptions\"\npath = \"allow.txt\"\nkind = \"allow\"\n",
    );
    assert_eq!(a(&s, "good.example.com"), forwarded());
    assert_eq!(a(&s, "www.good.example.com"), forwarded());
    assert_eq!(
        a(&s, "bad.example.com"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
    assert_eq!(
        a(&s, "example.com"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
}

#[test]
fn changed_list_file_is_applied_without_restart() {
    let dir = tempdir("watch");
    std::fs::write(dir.join("l.txt"), "one.example\n").unwrap();
    let s = start(
        &dir,
        "[reload]\ninterval_ms = 100\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\n",
    );
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    assert_eq!(a(&s, "one.example"), blocked);
    assert_eq!(a(&s, "two.example"), forwarded());
    // Atomic replace (rename over).
    dir.replace("l.txt", "two.example\n");
    wait_answer(&s, "two.example", &blocked);
    assert_eq!(a(&s, "one.example"), forwarded());
    // Truncate, then write in place.
    std::fs::write(dir.join("l.txt"), "").unwrap();
    std::fs::write(dir.join("l.txt"), "three.example\n").unwrap();
    wait_answer(&s, "three.example", &blocked);
    // The config file changes too: a new list and a new sinkhole mode.
    std::fs::write(dir.join("m.txt"), "four.example\n").unwrap();
    let cfg = std::fs::read_to_string(dir.join("c2sink.toml")).unwrap();
    dir.replace(
        "c2sink.toml",
        &format!(
            "{cfg}[[blocklists]]\nname = \"m\"\npath = \"m.txt\"\n[sinkhole]\nmode = \"nxdomain\"\n"
        ),
    );
    wait_answer(&s, "four.example", &reply(ResponseCode::NXDomain, &[]));
    assert_eq!(a(&s, "three.example"), reply(ResponseCode::NXDomain, &[]));
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let dir = tempdir("hup");
    std::fs::write(dir.join("l.txt"), "one.example\n").unwrap();
    let s = start(
        &dir,
        "[reload]\nwatch = false\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\n",
    );
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    dir.replace("l.txt", "two.example\n");
    // Not watching: nothing changes until SIGHUP.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a(&s, "two.example"), forwarded());
    s.signal("HUP");
    s.wait_log_count("reloaded", 1);
    assert_eq!(a(&s, "two.example"), blocked);
    assert_eq!(a(&s, "one.example"), forwarded());
    assert!(s.pid() > 0, "still running");
}

#[test]
fn bad_update_keeps_the_old_lists() {
    let dir = tempdir("bad");
    std::fs::write(dir.join("l.txt"), "evil.example\n").unwrap();
    let s = start(
        &dir,
        "[reload]\nwatch = false\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\nformat = \"domains\"\n",
    );
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    assert_eq!(a(&s, "evil.example"), blocked);
    // Garbage instead of a list.
    dir.replace(
        "l.txt",
        "<html><body>502 Bad Gateway</body></html>\n<p>x y</p>\n",
    );
    s.signal("HUP");
    s.wait_log_count("reload failed", 1);
    assert_eq!(a(&s, "evil.example"), blocked);
    // Emptied (`> l.txt`, a download cut short) or down to comments: far more often a failed write than a
    // wish to stop blocking, so the loaded list stays.
    for (n, emptied) in [(2, ""), (3, "# nothing left\n\n")] {
        dir.replace("l.txt", emptied);
        s.signal("HUP");
        s.wait_log_count("reload failed", n);
        assert_eq!(a(&s, "evil.example"), blocked, "{emptied:?}");
    }
    assert!(
        s.log()
            .contains("now holds no rule where the loaded list has 1")
    );
    // The list file disappears.
    std::fs::remove_file(dir.join("l.txt")).unwrap();
    s.signal("HUP");
    s.wait_log_count("reload failed", 4);
    assert_eq!(a(&s, "evil.example"), blocked);
    // The config is broken.
    std::fs::write(dir.join("l.txt"), "other.example\n").unwrap();
    let cfg = std::fs::read_to_string(dir.join("c2sink.toml")).unwrap();
    dir.replace(
        "c2sink.toml",
        &format!("{cfg}\n[sinkhole]\nmdoe = \"null\"\n"),
    );
    s.signal("HUP");
    s.wait_log_count("reload failed", 5);
    assert_eq!(a(&s, "evil.example"), blocked);
    assert_eq!(a(&s, "other.example"), forwarded());
    let log = s.log();
    assert!(log.contains("no valid entries"), "{log}");
    assert!(log.contains("sinkhole.mdoe"), "{log}");
    // Each failure says why on its own line (log shippers and `grep` take a line as one event).
    let failures: Vec<String> = s
        .stderr()
        .into_iter()
        .filter(|l| l.contains("reload failed"))
        .collect();
    let reasons = [
        "no valid entries",
        "no rule",
        "no rule",
        "l.txt",
        "sinkhole.mdoe",
    ];
    assert_eq!(failures.len(), reasons.len(), "{log}");
    for (line, why) in failures.iter().zip(reasons) {
        assert!(line.contains(why), "{why:?} not in {line:?}");
    }
    // Fixed: the next reload applies.
    dir.replace("c2sink.toml", &cfg);
    s.signal("HUP");
    wait_answer(&s, "other.example", &blocked);
    assert_eq!(a(&s, "evil.example"), forwarded());
}

#[test]
fn queries_during_reloads_are_all_answered() {
    let dir = tempdir("load");
    let body: String = (0..50_000).map(|i| format!("d{i}.example\n")).collect();
    std::fs::write(dir.join("big.txt"), &body).unwrap();
    let s = Arc::new(start(
        &dir,
        "[reload]\nwatch = false\n[[blocklists]]\nname = \"big\"\npath = \"big.txt\"\n",
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (s, stop, asked, wrong) = (s.clone(), stop.clone(), asked.clone(), wrong.clone());
            std::thread::spawn(move || {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    // d7 is in every version of the list; free.example in none.
                    let (name, want) = if i % 2 == 0 {
                        ("d7.example", reply(ResponseCode::NoError, &["0.0.0.0"]))
                    } else {
                        ("free.example", forwarded())
                    };
                    let got = lookup(&s, name, RecordType::A);
                    if got.as_ref() != Some(&want) {
                        wrong.lock().unwrap().push((name, got));
                    }
                    asked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for round in 1..=4 {
        let extra: String = (0..5_000)
            .map(|i| format!("r{round}-{i}.example\n"))
            .collect();
        dir.replace("big.txt", &format!("{body}{extra}"));
        s.signal("HUP");
        s.wait_log_count("reloaded", round);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(asked.load(Ordering::Relaxed) > 20);
    assert!(
        wrong.lock().unwrap().is_empty(),
        "{:?}",
        wrong.lock().unwrap()
    );
    assert_eq!(
        a(&s, "r4-1.example"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
    assert_eq!(a(&s, "r3-1.example"), forwarded());
}

/// Runs `c2sink check` on `config` written into `dir`; (exit code, stdout, stderr).
fn check(dir: &Path, config: &str, explain: Option<&str>) -> (i32, String, String) {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:5399\"]\n{config}"
    );
    std::fs::write(dir.join("c2sink.toml"), text).expect("write config");
    let cfg = dir.join("c2sink.toml");
    let mut args = vec!["check", "--config", cfg.to_str().expect("utf-8")];
    if let Some(n) = explain {
        args.extend(["--explain", n]);
    }
    run(&args)
}

#[test]
fn check_reports_counts_and_problems_with_file_and_line() {
    let dir = tempdir("check");
    let mut hostile = b"\xef\xbb\xbfevil.example\r\nEVIL.example\r\n".to_vec();
    hostile.extend(format!("{}.example\r\n", "a".repeat(300)).as_bytes());
    hostile.extend(b"\xff\xfe\nbad..name\nb\xc3\xbccher.example\n");
    std::fs::write(dir.join("h.txt"), hostile).unwrap();
    std::fs::write(dir.join("ok.txt"), "good.evil.example\n").unwrap();
    let cfg = "[[blocklists]]\nname = \"h\"\npath = \"h.txt\"\n\
               [[blocklists]]\nname = \"ok\"\npath = \"ok.txt\"\nkind = \"allow\"\n";
    let (code, out, _) = check(&dir, cfg, Some("www.evil.example"));
    assert_eq!(code, 1, "invalid lines make check fail: {out}");
    assert!(
        out.contains("list \"h\" (domains, block)")
            && out.contains("2 block rules")
            && out.contains("3 invalid")
            && out.contains("1 duplicates"),
        "{out}"
    );
    let h = dir.join("h.txt").display().to_string();
    assert!(out.contains(&format!("{h}:3: invalid:")), "{out}");
    assert!(
        out.contains(&format!("{h}:4: invalid: not valid UTF-8")),
        "{out}"
    );
    assert!(out.contains(&format!("{h}:5: invalid:")), "{out}");
    assert!(out.contains("www.evil.example: BLOCKED"), "{out}");
    assert!(out.contains(&format!("at {h}:1: evil.example")), "{out}");
    let (_, out, _) = check(&dir, cfg, Some("good.evil.example"));
    assert!(out.contains("good.evil.example: ALLOWED"), "{out}");
    assert!(out.contains("ok.txt:1: good.evil.example"), "{out}");
    // A directory as a list path is a config error naming the key.
    let (code, _, err) = check(&dir, "[[blocklists]]\nname = \"d\"\npath = \".\"\n", None);
    assert_eq!(code, 2);
    assert!(
        err.contains("blocklists[0].path") && err.contains("not a regular file"),
        "{err}"
    );
}

/// What the test feed server does.
#[derive(Clone)]
enum Feed {
    /// 200 with this body and ETag, 304 when the client already has the ETag.
    Serve(String, String),
    /// Close the connection without an answer.
    Down,
    /// Keep the connection open and never answer.
    Hang,
    /// Answer 200 with this much of a longer body, then keep the connection open.
    HangInBody(String),
}

/// A loopback HTTP server for feed tests; records the If-None-Match headers it gets.
fn start_feed_server(state: Arc<Mutex<Feed>>, seen: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind http");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut hung = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req).to_string();
            let inm = req
                .lines()
                .find_map(|l| {
                    l.strip_prefix("if-none-match: ")
                        .or(l.strip_prefix("If-None-Match: "))
                })
                .map(str::to_string);
            seen.lock().unwrap().push(inm.clone().unwrap_or_default());
            let feed = state.lock().unwrap().clone();
            let resp = match feed {
                Feed::Down => continue,
                Feed::Hang => {
                    hung.push(conn);
                    continue;
                }
                Feed::HangInBody(part) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{part}",
                        part.len() * 2
                    );
                    let _ = conn.write_all(head.as_bytes());
                    hung.push(conn);
                    continue;
                }
                Feed::Serve(_, etag) if inm.as_deref() == Some(etag.as_str()) => format!(
                    "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                Feed::Serve(body, etag) => format!(
                    "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
            };
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    addr
}

fn names(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix}{i}.example\n")).collect()
}

#[test]
fn feed_is_downloaded_refreshed_and_bad_downloads_keep_the_last_good_copy() {
    let dir = tempdir("feed");
    let state = Arc::new(Mutex::new(Feed::Serve(names("a", 100), "\"v1\"".into())));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let http = start_feed_server(state.clone(), seen.clone());
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[reload]\nwatch = false\n[[blocklists]]\nname = \"feed\"\npath = \"feed.txt\"\nurl = \"http://{http}/list.txt\"\nrefresh = \"1s\"\n"
    );
    // When the feed was last fetched or found unchanged: what a feed-age alert reads.
    let checked = |s: &C2sink| {
        let (_, body) = http_get(s.admin.expect("admin address logged"), "/metrics");
        parse_metrics(&body)
            .get("c2sink_feed_checked_timestamp_seconds{list=\"feed\"}")
            .copied()
    };
    // No copy yet: downloaded before serving.
    let s = start(&dir, &cfg);
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    assert_eq!(a(&s, "a1.example"), blocked);
    assert!(
        dir.join("feed.txt").is_file(),
        "last good copy kept on disk"
    );
    // Refreshes are conditional, and one that finds nothing new still counts as a check.
    s.wait_log_count("feed unchanged", 1);
    let first = checked(&s).expect("checked");
    s.wait_log_count("feed unchanged", 2);
    assert!(checked(&s).expect("checked") > first);
    assert!(
        seen.lock().unwrap().iter().any(|h| h == "\"v1\""),
        "{:?}",
        seen.lock().unwrap()
    );
    // New content is applied.
    *state.lock().unwrap() = Feed::Serve(
        format!("{}b-new.example\n", names("a", 100)),
        "\"v2\"".into(),
    );
    wait_answer(&s, "b-new.example", &blocked);
    // Garbage is rejected.
    *state.lock().unwrap() =
        Feed::Serve("<html><body>oops</body></html>\n".into(), "\"v3\"".into());
    s.wait_log_count("not a usable list", 1);
    assert_eq!(a(&s, "b-new.example"), blocked);
    // So is a page with no rule at all: the copy on disk (what the next start reads) keeps its names.
    *state.lock().unwrap() = Feed::Serve("# nothing today\n".into(), "\"v3b\"".into());
    s.wait_log_count("the download holds no rule", 1);
    let copy = std::fs::read_to_string(dir.join("feed.txt")).expect("copy");
    assert!(copy.contains("b-new.example"), "{copy}");
    assert_eq!(a(&s, "b-new.example"), blocked);
    // A list shrunk by more than half is rejected.
    *state.lock().unwrap() = Feed::Serve(names("a", 10), "\"v4\"".into());
    s.wait_log_count("shrinks by more than", 1);
    assert_eq!(a(&s, "a50.example"), blocked);
    // The server goes away.
    *state.lock().unwrap() = Feed::Down;
    s.wait_log_count("download failed", 1);
    assert_eq!(a(&s, "a50.example"), blocked);
    // The feed's age grows from its last good check: failures and a SIGHUP (logrotate's) do not reset it.
    let last_good = checked(&s);
    s.signal("HUP");
    s.wait_log_count("download failed", 2);
    assert_eq!(checked(&s), last_good);
    drop(s);

    // Restart with the network down: starts from the last good copy.
    let dir = tempdir("feed2");
    std::fs::write(dir.join("feed.txt"), names("a", 100)).unwrap();
    let s = start(&dir, &cfg);
    assert_eq!(a(&s, "a7.example"), blocked);
    s.wait_log_count("keeping the last good copy", 1);
}

#[test]
fn a_stop_signal_is_honoured_while_a_feed_download_hangs() {
    for hang in [Feed::Hang, Feed::HangInBody(names("part", 50))] {
        stop_while_a_download_hangs(hang);
    }
}

/// SIGTERM while the feed server does `hang`: c2sink stops at once and leaves no part-written download.
fn stop_while_a_download_hangs(hang: Feed) {
    let in_body = matches!(hang, Feed::HangInBody(_));
    let state = Arc::new(Mutex::new(hang));
    let http = start_feed_server(state, Arc::new(Mutex::new(Vec::new())));
    let feed = format!(
        "[[blocklists]]\nname = \"feed\"\npath = \"feed.txt\"\nurl = \"http://{http}/l.txt\"\n"
    );
    // Serving from the saved copy while the refresh hangs (its timeout is 120 s): SIGTERM stops it cleanly.
    let dir = tempdir("feed-hang");
    std::fs::write(dir.join("feed.txt"), names("a", 10)).unwrap();
    let mut s = start(&dir, &feed);
    assert_eq!(
        a(&s, "a3.example"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
    let part = dir.join("feed.txt.download");
    if in_body {
        poll_until("the refresh to write part of its download", || {
            part.exists()
        });
    }
    let (clean, log) = s.terminate();
    assert!(clean, "no clean exit within {PATIENCE:?}:\n{log}");
    assert!(!part.exists(), "a part-written download left behind");
    // No copy yet: the first download hangs before serving; SIGTERM ends that wait too.
    let dir = tempdir("feed-hang-boot");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:5399\"]\n{feed}"
    );
    std::fs::write(dir.join("c2sink.toml"), text).unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(dir.join("c2sink.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("downloading it before serving") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "c2sink ended before downloading");
    }
    let part = dir.join("feed.txt.download");
    if in_body {
        poll_until("the first download to write part of the list", || {
            part.exists()
        });
    }
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let exit = || child.try_wait().expect("wait");
    let status = poll(PATIENCE, Duration::from_millis(50), exit, Option::is_some);
    let Some(status) = status else {
        let _ = child.kill();
        panic!("c2sink kept waiting for the download after SIGTERM");
    };
    assert!(status.success(), "{status}");
    assert!(!dir.join("feed.txt").exists());
    assert!(!part.exists(), "a part-written first download left behind");
}

#[test]
fn feed_without_copy_or_with_wrong_pin_does_not_start() {
    let dir = tempdir("feed-boot");
    let state = Arc::new(Mutex::new(Feed::Serve(names("a", 10), "\"v1\"".into())));
    let http = start_feed_server(state.clone(), Arc::new(Mutex::new(Vec::new())));
    for (pin, want) in [
        (format!("sha256 = \"{}\"\n", "0".repeat(64)), "sha256 is"),
        (String::new(), "download failed"),
    ] {
        if want == "download failed" {
            *state.lock().unwrap() = Feed::Down;
        }
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:5399\"]\n\
             [[blocklists]]\nname = \"feed\"\npath = \"feed.txt\"\nurl = \"http://{http}/l.txt\"\n{pin}"
        );
        std::fs::write(dir.join("c2sink.toml"), text).unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(dir.join("c2sink.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let exit = || child.try_wait().expect("wait");
        let within = Duration::from_secs(20);
        let Some(status) = poll(within, Duration::from_millis(50), exit, Option::is_some) else {
            let _ = child.kill();
            panic!("c2sink kept running without a feed copy");
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success());
        assert!(err.contains("no saved copy") && err.contains(want), "{err}");
        assert!(
            !dir.join("feed.txt").exists(),
            "nothing is kept from a rejected download"
        );
    }
}

#[test]
fn a_change_that_needs_a_restart_is_reported_on_every_reload_until_then() {
    let dir = tempdir("restart");
    std::fs::write(dir.join("l.txt"), "one.example\n").unwrap();
    let s = start(
        &dir,
        "[reload]\nwatch = false\ninterval_ms = 100\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\n",
    );
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    // A [server] key changes: the lists are applied, the new limit waits for a restart.
    let cfg = std::fs::read_to_string(dir.join("c2sink.toml")).unwrap();
    dir.replace(
        "c2sink.toml",
        &cfg.replacen(
            "udp_sockets = 1\n",
            "udp_sockets = 1\nmax_inflight = 64\n",
            1,
        ),
    );
    s.signal("HUP");
    s.wait_log_count("reloaded", 1);
    s.wait_log_count("need a restart", 1);
    // A later reload for a list change alone still says so: the [server] change is still not in force.
    dir.replace("l.txt", "two.example\n");
    s.signal("HUP");
    s.wait_log_count("reloaded", 2);
    s.wait_log_count("need a restart", 2);
    assert_eq!(a(&s, "two.example"), blocked);
    // Turning watching on waits for a restart too: a list change is not picked up by itself.
    let cfg = std::fs::read_to_string(dir.join("c2sink.toml")).unwrap();
    dir.replace(
        "c2sink.toml",
        &cfg.replacen("watch = false", "watch = true", 1),
    );
    s.signal("HUP");
    s.wait_log_count("reloaded", 3);
    dir.replace("l.txt", "three.example\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        a(&s, "three.example"),
        forwarded(),
        "watching started without a restart"
    );
}

/// An allow list emptied (the last false positive taken out, the exception withdrawn) is applied: that blocks
/// more, never less. It was refused as "a failed write", so the withdrawn exception stayed in force until a
/// restart: a name the admin had just found malicious kept being forwarded. A block list emptied is still
/// refused (see `bad_update_keeps_the_old_lists`), and an empty allow list at start is no warning.
#[test]
fn an_allow_list_emptied_is_applied_and_blocks_again() {
    let dir = tempdir("allow-emptied");
    std::fs::write(
        dir.join("l.txt"),
        "evil.example
",
    )
    .unwrap();
    std::fs::write(
        dir.join("allow.txt"),
        "good.evil.example
",
    )
    .unwrap();
    std::fs::write(
        dir.join("allow2.txt"),
        "# no false positive yet
",
    )
    .unwrap();
    let s = start(
        &dir,
        "[reload]\nwatch = false\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\n\
         [[blocklists]]\nname = \"ok\"\npath = \"allow.txt\"\nkind = \"allow\"\n\
         [[blocklists]]\nname = \"ok2\"\npath = \"allow2.txt\"\nkind = \"allow\"\n",
    );
    assert!(!s.log().contains("holds no rule"), "{}", s.log());
    let blocked = reply(ResponseCode::NoError, &["0.0.0.0"]);
    assert_eq!(a(&s, "good.evil.example"), forwarded());
    for (n, emptied) in [(1, "# withdrawn: good.evil.example\n"), (2, "")] {
        dir.replace("allow.txt", "good.evil.example\n");
        s.signal("HUP");
        s.wait_log_count("reloaded", 2 * n - 1);
        assert_eq!(a(&s, "good.evil.example"), forwarded(), "{emptied:?}");
        dir.replace("allow.txt", emptied);
        s.signal("HUP");
        s.wait_log_count("reloaded", 2 * n);
        assert_eq!(a(&s, "good.evil.example"), blocked, "{emptied:?}");
    }
    assert!(!s.log().contains("reload failed"), "{}", s.log());
}

#[test]
fn a_list_missing_at_a_failed_reload_is_picked_up_when_it_appears() {
    let dir = tempdir("later-list");
    std::fs::write(dir.join("l.txt"), "one.example\n").unwrap();
    let lists = "[reload]\nwatch = true\ninterval_ms = 100\n[[blocklists]]\nname = \"l\"\npath = \"l.txt\"\n";
    let s = start(&dir, lists);
    // A new list whose file is not there yet: the reload fails and the old lists stay.
    let cfg = std::fs::read_to_string(dir.join("c2sink.toml")).unwrap();
    dir.replace(
        "c2sink.toml",
        &format!("{cfg}[[blocklists]]\nname = \"later\"\npath = \"later.txt\"\n"),
    );
    s.wait_log_count("reload failed", 1);
    assert_eq!(a(&s, "later-c2.example"), forwarded());
    // The file appears: the watcher notices it, as it would a change to a list in force.
    std::fs::write(dir.join("later.txt"), "later-c2.example\n").unwrap();
    wait_answer(
        &s,
        "later-c2.example",
        &reply(ResponseCode::NoError, &["0.0.0.0"]),
    );
    assert_eq!(
        a(&s, "one.example"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
}

#[test]
fn a_feed_update_reloads_once_with_the_watcher_on() {
    let dir = tempdir("feed-once");
    let state = Arc::new(Mutex::new(Feed::Serve(names("a", 20), "\"v1\"".into())));
    let http = start_feed_server(state.clone(), Arc::new(Mutex::new(Vec::new())));
    std::fs::write(dir.join("feed.txt"), names("a", 10)).unwrap();
    let cfg = format!(
        "[reload]\nwatch = true\ninterval_ms = 100\n[[blocklists]]\nname = \"feed\"\npath = \"feed.txt\"\n\
         url = \"http://{http}/list.txt\"\nrefresh = \"1h\"\n"
    );
    let s = start(&dir, &cfg);
    // The first look at the feed (at start) finds 20 names where the copy has 10: one reload.
    s.wait_log_count("trigger=\"feed feed updated\"", 1);
    wait_answer(
        &s,
        "a15.example",
        &reply(ResponseCode::NoError, &["0.0.0.0"]),
    );
    // The watcher sees the copy the feed wrote, but as the reload left it: no second reload. Time for
    // several of its looks (100 ms each, two to settle) before the log is read.
    std::thread::sleep(Duration::from_millis(1500));
    let log = s.log();
    assert_eq!(log.matches("reloaded").count(), 1, "{log}");
    assert!(!log.contains("file changed"), "{log}");
}

#[test]
fn an_empty_allow_feed_and_a_first_empty_download_are_served() {
    let dir = tempdir("feed-empty");
    let state = Arc::new(Mutex::new(Feed::Serve(
        "# exceptions: none at the moment\n".into(),
        "\"v1\"".into(),
    )));
    let http = start_feed_server(state, Arc::new(Mutex::new(Vec::new())));
    std::fs::write(dir.join("block.txt"), "blocked-here.example\n").unwrap();
    let cfg = format!(
        "[[blocklists]]\nname = \"block\"\npath = \"block.txt\"\n\
         [[blocklists]]\nname = \"exceptions\"\nkind = \"allow\"\npath = \"allow.txt\"\n\
         url = \"http://{http}/allow.txt\"\n"
    );
    // No copy of the allow list yet, and its feed has no rule: nothing to keep, nothing wrong; it serves.
    let s = start(&dir, &cfg);
    assert_eq!(
        a(&s, "blocked-here.example"),
        reply(ResponseCode::NoError, &["0.0.0.0"])
    );
    assert!(dir.join("allow.txt").is_file(), "the empty copy is kept");
}
