//! The durable event log against the real binary: a removed folder or a full disk never stops DNS answering
//! (dropped events are counted and logged once) and the log recovers; rotation with gzip and retention;
//! reopen on SIGHUP after logrotate; syslog; the optional full query log.

mod common;

use common::*;
use std::time::Duration;

const C2: &str = "akamaicontainer.com";

#[test]
fn a_removed_log_folder_keeps_dns_answering_and_the_log_recovers() {
    let dir = tempdir("removed");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let events = logs.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!("[log]\nevents = \"{}\"\n", events.display()),
    );
    c.udp("127.0.0.2", C2, 1);
    assert!(wait_lines(&events, 1));
    std::fs::remove_dir_all(&logs).unwrap();
    for _ in 0..20 {
        assert_eq!(rcode_and_answers(&c.udp("127.0.0.2", C2, 1)).0, 0);
        assert_eq!(
            rcode_and_answers(&c.udp("127.0.0.2", "example.org", 1)),
            (0, 1)
        );
    }
    assert!(c.wait_for_log("cannot write log", PATIENCE), "{}", c.log());
    assert_eq!(
        c.log().matches("cannot write log").count(),
        1,
        "logged once, not per query"
    );
    std::fs::create_dir_all(&logs).unwrap();
    c.udp("127.0.0.3", C2, 1);
    assert!(wait_lines(&events, 1), "the log is back once its folder is");
    assert!(c.wait_for_log("log writable again", PATIENCE));
    let stderr = c.stop();
    // Every blocked query while the folder was gone has a line in the new file, or is folded into one
    // (`[log] coalesce`), or is counted as dropped: none is lost silently.
    let e = json_lines(&events);
    assert!(e.iter().any(|l| l["client_ip"] == "127.0.0.3"), "{e:?}");
    let n =
        |key| total(&stderr, key).unwrap_or_else(|| panic!("{key} in the totals line: {stderr}"));
    let (blocked, written, dropped) = (n("blocked"), n("events_written"), n("events_dropped"));
    assert!(dropped >= 1, "{stderr}");
    assert_eq!(blocked, 22, "{stderr}");
    assert_eq!(
        written + dropped + n("events_coalesced"),
        blocked,
        "{stderr}"
    );
    // The first line went with the old folder; the rest are in the new file.
    assert_eq!(e.len() as u64, written - 1, "{e:?}");
}

/// A client asking for a C2 name again and again (a retry loop, a flood) gets its first query written at once
/// and the repeats of the next second (the shipped `[log] coalesce`) folded into one line with `count` and
/// `first_ts`; another protocol or type is a line of its own; the totals and the report still count every
/// blocked query.
#[test]
fn repeated_blocked_queries_are_folded_into_one_line_that_counts_them() {
    let dir = tempdir("coalesce");
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!("[log]\nevents = \"{}\"\n", events.display()),
    );
    let sent = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(rcode_and_answers(&c.udp("127.0.0.2", C2, 1)).0, 0);
    }
    assert_eq!(rcode_and_answers(&c.tcp("127.0.0.2", C2, 1)).0, 0);
    assert_eq!(rcode_and_answers(&c.udp("127.0.0.2", C2, 28)).0, 0);
    assert_eq!(rcode_and_answers(&c.udp("127.0.0.3", C2, 1)).0, 0);
    let inside = sent.elapsed() < Duration::from_millis(900);
    // The folded line comes when the window ends (the writer looks about every second when idle).
    let lines = poll(
        Duration::from_secs(15),
        Duration::from_millis(50),
        || json_lines(&events),
        |l| l.iter().any(|e| e.get("count").is_some()) || (!inside && l.len() >= 13),
    );
    let stderr = c.stop();
    let queries = |e: &serde_json::Value| e["count"].as_u64().unwrap_or(1);
    let of = |proto: &str, qtype: &str, ip: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|e| e["protocol"] == proto && e["qtype"] == qtype && e["client_ip"] == ip)
            .collect()
    };
    let udp_a = of("udp", "A", "127.0.0.2");
    assert_eq!(
        udp_a.iter().map(|e| queries(e)).sum::<u64>(),
        10,
        "{lines:?}"
    );
    if inside {
        // Sent within the window (on this machine, always): one line at once, one folded line after.
        assert_eq!(udp_a.len(), 2, "{udp_a:?}");
        assert!(udp_a[0].get("count").is_none(), "{udp_a:?}");
        let folded = udp_a[1];
        assert_eq!(folded["count"], 9, "{folded}");
        let (first, last) = (
            folded["first_ts"].as_str().unwrap(),
            folded["ts"].as_str().unwrap(),
        );
        assert!(
            udp_a[0]["ts"].as_str().unwrap() <= first && first <= last,
            "{udp_a:?}"
        );
        assert_eq!(folded["rule"], C2, "{folded}");
        assert_eq!(folded["list"], udp_a[0]["list"], "{folded}");
    }
    for (proto, qtype, ip) in [
        ("tcp", "A", "127.0.0.2"),
        ("udp", "AAAA", "127.0.0.2"),
        ("udp", "A", "127.0.0.3"),
    ] {
        let l = of(proto, qtype, ip);
        assert_eq!(l.len(), 1, "{proto} {qtype} {ip}: {lines:?}");
        assert!(l[0].get("count").is_none(), "{l:?}");
    }
    let n =
        |key| total(&stderr, key).unwrap_or_else(|| panic!("{key} in the totals line: {stderr}"));
    assert_eq!(n("blocked"), 13, "{stderr}");
    assert_eq!(n("events_written"), lines.len() as u64, "{stderr}");
    assert_eq!(
        n("events_written") + n("events_coalesced"),
        13,
        "every blocked query is a line or counted in one: {stderr}"
    );
    // The report counts queries, not lines.
    let (code, out, err) = run(&["report", "--format", "json", events.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["events"], 13, "{out}");
    let blocked: Vec<u64> = r["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["blocked"].as_u64().unwrap())
        .collect();
    assert_eq!(blocked, vec![12, 1], "{out}");
}

/// A flood of different names under one C2 domain (random labels: a DNS tunnel, a water-torture attack) is not
/// folded as repeats, since no name repeats; past `[log] coalesce_names` of a client's names under one rule in a
/// window, the rest become one line with `"fold":"names"` that counts them, and the totals and the report still
/// account for every blocked query.
#[test]
fn a_flood_of_random_names_under_one_rule_is_folded_past_the_cap() {
    let dir = tempdir("fold-names");
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\ncoalesce = \"30s\"\ncoalesce_names = 5\n",
            events.display()
        ),
    );
    for i in 0..40 {
        let name = format!("r{i}x.{C2}");
        assert_eq!(rcode_and_answers(&c.udp("127.0.0.2", &name, 1)), (0, 1));
    }
    assert_eq!(
        rcode_and_answers(&c.udp("127.0.0.3", &format!("other.{C2}"), 1)),
        (0, 1)
    );
    // The family's line is held until its window ends: at the latest at shutdown.
    let stderr = c.stop();
    let lines = json_lines(&events);
    let from = |ip: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|e| e["client_ip"] == ip).collect()
    };
    let a = from("127.0.0.2");
    assert_eq!(a.len(), 6, "five names, then one line for the rest: {a:?}");
    let plain: Vec<&str> = a
        .iter()
        .filter(|e| e.get("fold").is_none())
        .map(|e| e["qname"].as_str().unwrap())
        .collect();
    assert_eq!(
        plain,
        (0..5).map(|i| format!("r{i}x.{C2}")).collect::<Vec<_>>(),
        "{a:?}"
    );
    let folded = a
        .iter()
        .find(|e| e["fold"] == "names")
        .expect("a folded line");
    assert_eq!(folded["count"], 35, "{folded}");
    assert_eq!(
        folded["qname"],
        format!("r39x.{C2}"),
        "the last name: {folded}"
    );
    assert_eq!(folded["rule"], C2, "{folded}");
    assert!(folded["first_ts"].as_str().unwrap() <= folded["ts"].as_str().unwrap());
    assert_eq!(from("127.0.0.3").len(), 1, "another client is not capped");
    let n =
        |key| total(&stderr, key).unwrap_or_else(|| panic!("{key} in the totals line: {stderr}"));
    assert_eq!(n("blocked"), 41, "{stderr}");
    assert_eq!(n("events_written"), 7, "{stderr}");
    assert_eq!(n("events_written") + n("events_coalesced"), 41, "{stderr}");
    let (code, out, err) = run(&["report", "--format", "json", events.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["events"], 41, "{out}");
    assert!(
        out.contains(&format!("(names under {C2})")),
        "the report counts the folded names under their rule: {out}"
    );
}

#[test]
fn a_full_disk_keeps_dns_answering() {
    let dir = tempdir("full");
    let c = C2sink::start_in(&dir, C2, "[log]\nevents = \"/dev/full\"\n");
    for _ in 0..50 {
        assert_eq!(rcode_and_answers(&c.udp("127.0.0.2", C2, 1)), (0, 1));
    }
    assert_eq!(
        rcode_and_answers(&c.tcp("127.0.0.2", "example.org", 1)),
        (0, 1)
    );
    assert!(
        c.wait_for_log("No space left on device", PATIENCE),
        "{}",
        c.log()
    );
    let stderr = c.stop();
    assert_eq!(stderr.matches("cannot write log").count(), 1, "{stderr}");
}

#[test]
fn logs_rotate_gzip_and_reopen_on_sighup_and_report_reads_them_all() {
    let dir = tempdir("rotate");
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\nrotate_size = \"1KB\"\nkeep = 50\ngzip = true\n",
            events.display()
        ),
    );
    // About 300 bytes an event: several rotations. One event at a time, each from its own address: the next
    // is sent only once the last is in the live file, so each is written alone and the file rotates every
    // few events however busy the machine is (the writer coalesces events that arrive together, and a
    // rotation happens between writes).
    for i in 0..20 {
        let from = format!("127.0.0.{}", 10 + i);
        c.udp(&from, C2, 1);
        let tag = format!("\"client_ip\":\"{from}\"");
        let last_is_it = || {
            std::fs::read_to_string(&events).is_ok_and(|t| {
                t.ends_with('\n') && t.lines().last().is_some_and(|l| l.contains(&tag))
            })
        };
        let written = poll(PATIENCE, Duration::from_millis(5), last_is_it, |&w| w);
        assert!(written, "event from {from} never written");
    }
    // Wait until the writer has written all 20 (in the log and its rotated, gzipped files), so that what
    // logrotate moves below is complete.
    let reported = || {
        let files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path().display().to_string())
            .filter(|p| p.contains("events.log"))
            .collect();
        let mut args = vec!["report", "--format", "json"];
        args.extend(files.iter().map(String::as_str));
        let (code, out, _) = run(&args);
        (code == 0)
            .then(|| serde_json::from_str::<serde_json::Value>(&out).ok())
            .flatten()
            .map(|r| r["events"].clone())
    };
    let counted = poll(PATIENCE, Duration::from_millis(50), reported, |e| {
        *e == Some(20.into())
    });
    assert_eq!(
        counted,
        Some(20.into()),
        "the 20 events were never all written"
    );
    // logrotate moves the file away and sends SIGHUP.
    let moved = dir.join("moved-by-logrotate");
    std::fs::rename(&events, &moved).unwrap();
    c.signal("HUP");
    assert!(c.wait_for_log("reopening log", PATIENCE), "{}", c.log());
    c.udp("127.0.0.9", C2, 1);
    c.stop();
    assert_eq!(
        json_lines(&events).len(),
        1,
        "the event after SIGHUP went to a new file"
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.contains("events.log.") || p.contains("moved"))
        .collect();
    files.sort();
    let gz = files.iter().filter(|f| f.ends_with(".gz")).count();
    assert!(gz >= 3, "rotated files are gzipped: {files:?}");
    files.push(events.display().to_string());
    let mut args = vec!["report", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        r["events"], 21,
        "every event is in exactly one file: {files:?}"
    );
    assert_eq!(r["skipped_lines"], 0);
}

#[test]
fn events_go_to_syslog_as_rfc5424() {
    let dir = tempdir("syslog");
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\nsyslog = \"udp://{}\"\n",
            dir.join("events.log").display(),
            rx.local_addr().unwrap()
        ),
    );
    c.udp("127.0.0.2", &format!("x.{C2}"), 28);
    let mut buf = [0u8; 2048];
    let n = rx.recv(&mut buf).expect("a syslog datagram");
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(msg.starts_with("<132>1 20"), "{msg}");
    let json = msg
        .split_once(" block - ")
        .expect("MSGID block, no structured data")
        .1;
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["qname"], format!("x.{C2}"));
    assert_eq!(v["qtype"], "AAAA");
    // The header's TIMESTAMP is the event's own time.
    assert_eq!(msg.split(' ').nth(1), v["ts"].as_str(), "{msg}");
    c.stop();
}

#[test]
fn the_query_log_records_every_query_with_outcome_and_latency() {
    let dir = tempdir("querylog");
    let queries = dir.join("queries.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\nqueries = \"queries.log\"\n[clients]\nnames = {{ \"127.0.0.2\" = \"desk-1\" }}\n",
            dir.join("events.log").display()
        ),
    );
    c.udp("127.0.0.2", C2, 1);
    c.udp("127.0.0.2", "example.org", 1);
    c.udp("127.0.0.2", "example.org", 1);
    c.tcp("127.0.0.3", "example.net", 1);
    c.stop();
    let q = json_lines(&queries);
    let got: Vec<(&str, &str, &str)> = q
        .iter()
        .map(|e| {
            (
                e["client_ip"].as_str().unwrap(),
                e["qname"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("127.0.0.2", C2, "blocked"),
            ("127.0.0.2", "example.org", "forwarded"),
            ("127.0.0.2", "example.org", "cached"),
            ("127.0.0.3", "example.net", "forwarded"),
        ]
    );
    for e in &q {
        assert_eq!(e["kind"], "query");
        assert!(e["latency_us"].as_u64().is_some());
    }
    assert_eq!(q[0]["client_hostname"], "desk-1");
    assert_eq!(json_lines(&dir.join("events.log")).len(), 1);
}

/// Whether `p` reaches `n` lines within 15 s (the event writer runs at low priority).
fn wait_lines(p: &std::path::Path, n: usize) -> bool {
    for _ in 0..750 {
        if std::fs::read_to_string(p).is_ok_and(|t| t.lines().count() >= n) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `[log] level` decides which operational lines reach stderr (a bare level is c2sink's own), and a RUST_LOG
/// that does not parse is said at start and ignored, so the config's level still applies rather than none.
#[test]
fn the_log_level_comes_from_the_config_and_a_bad_rust_log_is_reported() {
    let up = Upstream::start();
    up.set_mode(Mode::Silent);
    // (config level, RUST_LOG, whether the debug line of a failed upstream try is expected)
    for (level, rust_log, debug_shown) in [
        ("debug", None, true),
        ("info", None, false),
        ("debug", Some("c2sink=loud"), true),
        ("info", Some("c2sink=debug"), true),
        // tracing's bare target: everything c2sink logs.
        ("info", Some("c2sink"), true),
    ] {
        let dir = tempdir("level");
        let cfg = config_file(
            &dir,
            "127.0.0.1:0",
            &[up.addr],
            &format!("level = \"{level}\"\n"),
        );
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            &format!("timeout_ms = {UPSTREAM_TIMEOUT_MS}"),
            "timeout_ms = 200",
        );
        std::fs::write(&cfg, text).unwrap();
        let env: Vec<(&str, &str)> = rust_log.iter().map(|v| ("RUST_LOG", *v)).collect();
        let c = C2sink::launch(&cfg, &env);
        let tag = format!("level {level}, RUST_LOG {rust_log:?}");
        assert_eq!(
            c.log().contains("RUST_LOG ignored"),
            rust_log == Some("c2sink=loud"),
            "{tag}: {}",
            c.log()
        );
        // The silent upstream fails the try (logged at debug before the SERVFAIL is sent) ...
        assert_eq!(
            rcode_and_answers(&c.udp("127.0.0.2", "a.test", 1)).0,
            2,
            "{tag}"
        );
        // ... and an info line after it fences the stderr pipe: a debug line written before is read by now.
        c.signal("HUP");
        assert!(
            c.wait_for_log("reopening log", PATIENCE),
            "{tag}: {}",
            c.log()
        );
        assert_eq!(
            c.log().contains("upstream try failed"),
            debug_shown,
            "{tag}: {}",
            c.log()
        );
    }
}

/// The names in every file of the event log (the live one, rotated and gzipped ones), read through
/// `c2sink report` as an admin would, with the shell glob `events.log*`.
fn names_in_all_files(dir: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("events.log"))
        .collect();
    files.sort();
    let paths: Vec<String> = files
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let mut args = vec!["report", "--format", "json"];
    args.extend(paths.iter().map(String::as_str));
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names = r["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["qname"].as_str().unwrap().to_string())
        .collect();
    (files, names)
}

/// A burst of distinct blocked names against a small `rotate_size`: many rotations in each second. The
/// files retention keeps must be the newest: the names left are the last ones asked, none missing in
/// between. Meanwhile no file the log's glob matches is a gzip still being written.
#[test]
fn retention_keeps_the_newest_files_when_many_rotate_in_one_second() {
    let dir = tempdir("retention");
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            // Every one of the 2,000 names gets its line: no cap on one client's names under one rule.
            "[log]\nevents = \"{}\"\nrotate_size = \"20KB\"\nkeep = 3\ngzip = true\ncoalesce_names = 0\n",
            events.display()
        ),
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (dir, done) = (dir.to_path_buf(), done.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for e in std::fs::read_dir(&dir).unwrap().flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with("events.log") && n.ends_with(".tmp") {
                        seen.insert(n);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        })
    };
    const N: usize = 2000;
    let name = |i: usize| format!("n{i:04}.{C2}");
    for i in 0..N {
        c.udp("127.0.0.2", &name(i), 1);
    }
    // Stopping waits for the gzip threads: every file is complete and pruned.
    c.stop();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let temps = watcher.join().unwrap();
    assert!(
        temps.is_empty(),
        "half-written gzip files matched events.log*: {temps:?}"
    );
    let (files, mut names) = names_in_all_files(&dir);
    assert_eq!(files.len(), 4, "the live file and 3 rotated: {files:?}");
    names.sort();
    let first: usize = names[0][1..5].parse().unwrap();
    let want: Vec<String> = (first..N).map(name).collect();
    assert!(
        names.last() == Some(&name(N - 1)),
        "the newest events were deleted: {files:?}, last kept {:?}",
        names.last()
    );
    assert_eq!(
        names, want,
        "kept events are the newest, none missing: {files:?}"
    );
}

/// After a quiet spell longer than `rotate_every`, the next event goes into the (empty) live file: an empty
/// file is never rotated, so it never takes one of the `keep` places from a file with events.
#[test]
fn rotate_every_never_rotates_an_empty_file() {
    let dir = tempdir("rotate-every");
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\nrotate_every = \"1s\"\nkeep = 5\n",
            events.display()
        ),
    );
    let rotated = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("events.log."))
            })
            .collect()
    };
    c.udp("127.0.0.2", C2, 1);
    poll_until("the first file to rotate by age", || rotated().len() == 1);
    // Quiet for longer than rotate_every: the live file stays empty all that time.
    std::thread::sleep(Duration::from_millis(1500));
    c.udp("127.0.0.3", C2, 1);
    assert!(wait_lines(&events, 1) || rotated().len() > 1);
    c.stop();
    let files = rotated();
    for f in &files {
        assert!(
            std::fs::metadata(f).unwrap().len() > 0,
            "{} was rotated empty: {files:?}",
            f.display()
        );
    }
    let mut all: Vec<serde_json::Value> = files.iter().flat_map(|f| json_lines(f)).collect();
    all.extend(json_lines(&events));
    assert_eq!(all.len(), 2, "{all:?}");
}

/// `report` and `hunt` are given a file list the shell expanded (`events.log*`); a file gone by the time
/// they open it (a rotated file compressed or pruned meanwhile) is skipped with a note, not fatal. When no
/// file at all can be read, it stays an error.
#[test]
fn report_and_hunt_skip_a_file_that_vanished_after_listing() {
    let dir = tempdir("vanished");
    let events = dir.write(
        "events.log",
        &format!(
            "{{\"ts\":\"2026-11-29T10:00:00.000Z\",\"kind\":\"block\",\"client_ip\":\"127.0.0.2\",\"client_port\":5353,\"client_mac\":null,\"client_hostname\":null,\"protocol\":\"udp\",\"qname\":\"{C2}\",\"qtype\":\"A\",\"list\":\"3cx\",\"rule\":\"{C2}\",\"action\":\"null\"}}\n"
        ),
    );
    let gone = dir.join("events.log.2026-11-29T100000Z.gz");
    let list = dir.write("ioc.txt", &format!("{C2}\n"));
    let (e, g, l) = (
        events.to_str().unwrap(),
        gone.to_str().unwrap(),
        list.to_str().unwrap(),
    );
    let (code, out, err) = run(&["report", "--format", "json", g, e]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(g) && err.contains("skipped"), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["events"], 1, "{out}");
    let (code, out, err) = run(&["hunt", "--list", l, g, e]);
    assert_eq!(code, 0, "found: {err}");
    assert!(err.contains(g) && err.contains("skipped"), "{err}");
    assert!(out.starts_with("hunt: 1 hit from 1 client"), "{out}");
    for cmd in [vec!["report", g], vec!["hunt", "--list", l, g]] {
        let (code, _, err) = run(&cmd);
        assert_eq!(code, 2, "{cmd:?}: nothing readable: {err}");
        assert!(err.contains(g), "{err}");
    }
}

/// A syslog target that cannot be reached is named in the error, with the OS's reason, once (not per event).
#[test]
fn a_failing_syslog_is_named_with_its_error_once() {
    let dir = tempdir("syslog-fail");
    let sock = dir.join("no-such-socket");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\nsyslog = \"unix://{}\"\n",
            dir.join("events.log").display(),
            sock.display()
        ),
    );
    c.udp("127.0.0.2", C2, 1);
    c.udp("127.0.0.3", C2, 1);
    assert!(wait_lines(&dir.join("events.log"), 2));
    let log = c.stop();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot send events to syslog"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(&format!("unix://{}", sock.display())) && lines[0].contains("os error"),
        "{}",
        lines[0]
    );
}
