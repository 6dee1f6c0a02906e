//! The resolver over the wire: every query checked, C2 names sinkholed and logged, the rest forwarded faithfully.

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TYPES: [RecordType; 6] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::TXT,
    RecordType::MX,
    RecordType::HTTPS,
    RecordType::ANY,
];

/// Checks a `null`-mode sinkhole answer for one question.
fn assert_null_sinkhole(m: &Message, qtype: RecordType, what: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{what}");
    match qtype {
        RecordType::A => {
            assert_eq!(m.answers.len(), 1, "{what}");
            assert_eq!(
                m.answers[0].data,
                RData::A("0.0.0.0".parse().expect("ip")),
                "{what}"
            );
        }
        RecordType::AAAA => {
            assert_eq!(m.answers.len(), 1, "{what}");
            assert_eq!(
                m.answers[0].data,
                RData::AAAA("::".parse().expect("ip")),
                "{what}"
            );
        }
        _ => {
            assert!(
                m.answers.is_empty(),
                "{what}: NODATA, never an address for {qtype}"
            );
            assert_eq!(m.authorities.len(), 1, "{what}: SOA for negative caching");
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{what}");
        }
    }
}

#[test]
fn every_shipped_3cx_domain_and_subdomain_is_sinkholed_and_never_forwarded() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let domains = shipped_3cx();
    assert_eq!(domains.len(), 26, "every blockable 3CX domain is shipped");
    let mut asked = 0;
    for (i, d) in domains.iter().enumerate() {
        for name in [
            d.clone(),
            format!("cdn.{d}"),
            format!("a.b.{}", d.to_uppercase()),
        ] {
            for (j, qtype) in TYPES.iter().enumerate() {
                // Spread protocols and address families over the matrix.
                let proto = if (i + j) % 2 == 0 {
                    Proto::Udp
                } else {
                    Proto::Tcp
                };
                let server = if (i + j) % 3 == 0 {
                    srv.addr6()
                } else {
                    srv.addr()
                };
                let raw = ask_raw(server, proto, &name, *qtype, &Ask::default());
                let m = Message::from_vec(&raw).expect("parses");
                assert_null_sinkhole(&m, *qtype, &format!("{name} {qtype} {proto:?} {server}"));
                assert_eq!(
                    raw_question_name(&raw),
                    name,
                    "question echoed as asked (case kept)"
                );
                asked += 1;
            }
        }
    }
    let events = srv.events(asked);
    assert_eq!(events.len(), asked, "one event per blocked query");
    for d in &domains {
        assert_eq!(up.count(d), 0, "{d} reached the upstream");
    }
    assert!(
        up.seen().is_empty(),
        "upstream saw blocked names: {:?}",
        up.seen()
    );
}

#[test]
fn lookalike_and_legitimate_names_are_forwarded() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    // Names that only look similar, and the intel's never-block rows.
    let names = [
        "notmsstorageazure.com",
        "msstorageazure.com.evil.test",
        "msstorageazure.co",
        "shilaerc20.com",
        "www.3cx.com",
        "3cx.cloud",
        "downloads-global.3cx.com",
        "raw.githubusercontent.com",
        "www.tradingtechnologies.com",
    ];
    for n in names {
        for proto in [Proto::Udp, Proto::Tcp] {
            let m = ask_simple(srv.addr(), proto, n, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{n}");
            assert_eq!(
                m.answers[0].data,
                RData::A("192.0.2.1".parse().expect("ip")),
                "{n} answered by the upstream"
            );
        }
        assert!(up.count(n) >= 1, "{n} was forwarded");
    }
    assert!(
        srv.events(0).is_empty(),
        "no block events for forwarded names"
    );
}

/// (thread id, voluntary context switches) of each of `pid`'s threads named `name`.
fn threads_named(pid: u32, name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let t = t.expect("task").path();
        if std::fs::read_to_string(t.join("comm"))
            .expect("comm")
            .trim()
            != name
        {
            continue;
        }
        let status = std::fs::read_to_string(t.join("status")).expect("status");
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("voluntary_ctxt_switches");
        let tid = t.file_name().expect("tid").to_string_lossy().into_owned();
        out.push((tid, switches));
    }
    out.sort();
    out
}

#[test]
fn each_udp_socket_is_served_by_its_own_thread_and_all_answer() {
    let up = Upstream::start();
    // config() asks for two UDP sockets per listen address.
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let sockets = 2 * srv.addrs.len();
    // A thread takes its name when it first runs, which on a busy machine can be just after "ready".
    let mut before = threads_named(srv.pid(), "c2sink-udp");
    for _ in 0..100 {
        if before.len() == sockets {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        before = threads_named(srv.pid(), "c2sink-udp");
    }
    assert_eq!(before.len(), sockets, "{before:?}");
    // Each query from a new port: the kernel spreads them over both sockets by address and port.
    for i in 0..40 {
        let name = format!("spread{i}.example.org");
        let m = ask_simple(srv.addr(), Proto::Udp, &name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(
            m.answers[0].data,
            RData::A("192.0.2.1".parse().expect("ip")),
            "{name} forwarded"
        );
        let blocked = format!("spread{i}.msstorageazure.com");
        let m = ask_simple(srv.addr(), Proto::Udp, &blocked, RecordType::A);
        assert_null_sinkhole(&m, RecordType::A, &blocked);
    }
    assert_eq!(srv.events(40).len(), 40, "one event per blocked query");
    let after = threads_named(srv.pid(), "c2sink-udp");
    assert_eq!(after.len(), before.len());
    // Both sockets of the queried address got queries (2^-39 odds that 40 random ports all hash to one), and
    // each woke a thread of its own.
    let woken = before.iter().zip(&after).filter(|(b, a)| a.1 > b.1).count();
    assert!(
        woken >= 2,
        "UDP threads woken: {woken}; {before:?} -> {after:?}"
    );
}

/// The system call each `c2sink-udp` thread of `pid` is in (x86_64 numbers from /proc/PID/task/TID/syscall;
/// "running" while it is on a CPU).
#[cfg(target_arch = "x86_64")]
fn udp_thread_syscalls(pid: u32) -> Vec<String> {
    threads_named(pid, "c2sink-udp")
        .iter()
        .map(|(tid, _)| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
                .expect("syscall file");
            s.split_whitespace().next().unwrap_or_default().to_string()
        })
        .collect()
}

/// Polls for up to [`PATIENCE`] until `ok` holds for the UDP threads' system calls; returns the last ones seen.
#[cfg(target_arch = "x86_64")]
fn wait_for_syscalls(pid: u32, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let syscalls = || udp_thread_syscalls(pid);
    poll(PATIENCE, Duration::from_millis(5), syscalls, |s| ok(s))
}

#[test]
#[cfg(target_arch = "x86_64")]
fn an_idle_udp_thread_waits_in_its_receive_and_one_awaiting_an_upstream_in_its_event_loop() {
    // The test's sockets are bound to one address each, so a burst is read with recvfrom (a wildcard
    // socket's with recvmmsg), and the idle wait is that call's.
    const RECVFROM: &str = "45";
    const EPOLL: [&str; 3] = ["232", "281", "441"]; // epoll_wait, epoll_pwait, epoll_pwait2
    let up = Upstream::start();
    // The silent query below waits 2 s for its upstream (inside the client's 3 s): time enough for this test
    // to see the wait even on a loaded machine.
    let srv = C2sink::start(&config_timing_out(&[up.addr], 2000, ""), &[]);
    let sinkholed = |name: &str| {
        let m = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
        assert_null_sinkhole(&m, RecordType::A, name);
    };
    sinkholed("idle.msstorageazure.com");
    let all_in_recv = |s: &[String]| !s.is_empty() && s.iter().all(|c| c == RECVFROM);
    let idle = wait_for_syscalls(srv.pid(), all_in_recv);
    assert!(
        all_in_recv(&idle),
        "idle UDP threads wait in recvfrom: {idle:?}"
    );

    // A query the upstream never answers: its thread waits for it in the event loop (the upstream socket
    // and the timeout need it), and still answers, with SERVFAIL once the upstream times out.
    let addr = srv.addr();
    let asking =
        std::thread::spawn(move || ask_simple(addr, Proto::Udp, "q.silent.test", RecordType::A));
    let in_loop = |s: &[String]| s.iter().any(|c| EPOLL.contains(&c.as_str()));
    let waiting = wait_for_syscalls(srv.pid(), in_loop);
    assert!(
        in_loop(&waiting),
        "a thread awaits the upstream in epoll: {waiting:?}"
    );
    let m = asking.join().expect("asking thread");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let after = wait_for_syscalls(srv.pid(), all_in_recv);
    assert!(
        all_in_recv(&after),
        "back to recvfrom once answered: {after:?}"
    );
    // Still serving from the kernel wait.
    sinkholed("again.msstorageazure.com");
}

#[test]
fn block_event_names_client_protocol_list_and_rule() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let q = query_msg("Beacon.SbMsa.Wiki.", RecordType::TXT, &Ask::default());
    let (_, local) =
        exchange_raw_from(srv.addr(), Proto::Tcp, &q.to_vec().expect("enc")).expect("answer");
    let q6 = query_msg("x.pbxsources.com", RecordType::A, &Ask::default());
    let (_, local6) =
        exchange_raw_from(srv.addr6(), Proto::Udp, &q6.to_vec().expect("enc")).expect("answer");
    let ev = srv.events(2);
    assert_eq!(ev.len(), 2);
    let e = &ev[0];
    assert_eq!(e["client_ip"], "127.0.0.1");
    assert_eq!(e["client_port"], local.port());
    assert_eq!(e["protocol"], "tcp");
    assert_eq!(e["qname"], "beacon.sbmsa.wiki");
    assert_eq!(e["qtype"], "TXT");
    assert_eq!(e["list"], "3cx");
    assert_eq!(e["rule"], "sbmsa.wiki");
    assert_eq!(e["action"], "null");
    let ts = e["ts"].as_str().expect("ts");
    assert!(
        ts.ends_with('Z') && ts.len() == 24,
        "RFC 3339 UTC with milliseconds: {ts}"
    );
    let e = &ev[1];
    assert_eq!(e["client_ip"], "::1");
    assert_eq!(e["client_port"], local6.port());
    assert_eq!(e["protocol"], "udp");
    assert_eq!(e["qtype"], "A");
    assert_eq!(e["rule"], "pbxsources.com");
}

fn srv_with_mode(up: &Upstream, sinkhole: &str) -> C2sink {
    C2sink::start(
        &config(&[up.addr], &format!("[sinkhole]\n{sinkhole}\n")),
        &[],
    )
}

#[test]
fn nxdomain_mode_answers_nxdomain_with_soa_ttl() {
    let up = Upstream::start();
    let srv = srv_with_mode(&up, "mode = \"nxdomain\"\nttl = 123");
    for qtype in TYPES {
        let m = ask_simple(srv.addr(), Proto::Udp, "c2.msedgeupdate.net", qtype);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
        let soa = &m.authorities[0];
        assert_eq!(soa.record_type(), RecordType::SOA);
        assert_eq!(soa.ttl, 123);
        assert_eq!(
            soa.name.to_ascii(),
            "msedgeupdate.net.",
            "SOA owned by the blocked zone"
        );
        let RData::SOA(s) = &soa.data else {
            panic!("SOA data")
        };
        assert_eq!(s.minimum, 123);
    }
    let ev = srv.events(TYPES.len());
    assert!(ev.iter().all(|e| e["action"] == "nxdomain"));
}

#[test]
fn refused_mode_answers_refused() {
    let up = Upstream::start();
    let srv = srv_with_mode(&up, "mode = \"refused\"");
    let m = ask_simple(srv.addr(), Proto::Tcp, "journalide.org", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    assert_eq!(up.count("journalide.org"), 0);
}

#[test]
fn address_mode_answers_watched_host_for_a_and_aaaa_only() {
    let up = Upstream::start();
    let srv = srv_with_mode(
        &up,
        "mode = \"address\"\nipv4 = \"192.0.2.99\"\nipv6 = \"2001:db8::99\"",
    );
    let m = ask_simple(srv.addr(), Proto::Udp, "officeaddons.com", RecordType::A);
    assert_eq!(
        m.answers[0].data,
        RData::A("192.0.2.99".parse().expect("ip"))
    );
    assert_eq!(m.answers[0].ttl, 60, "default sinkhole TTL");
    let m = ask_simple(
        srv.addr6(),
        Proto::Tcp,
        "officeaddons.com",
        RecordType::AAAA,
    );
    assert_eq!(
        m.answers[0].data,
        RData::AAAA("2001:db8::99".parse().expect("ip"))
    );
    for qtype in [RecordType::TXT, RecordType::MX, RecordType::HTTPS] {
        let m = ask_simple(srv.addr(), Proto::Udp, "officeaddons.com", qtype);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty(), "{qtype}: NODATA");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }
    assert_eq!(srv.events(5)[0]["action"], "address");
}

#[test]
fn sinkhole_answer_keeps_edns_and_do_bit() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let opts = Ask {
        edns: true,
        dnssec_ok: true,
        ..Ask::default()
    };
    let m = ask(
        srv.addr(),
        Proto::Udp,
        "zacharryblogs.com",
        RecordType::A,
        &opts,
    );
    let e = m.edns.expect("OPT in answer to an EDNS query");
    assert!(e.flags().dnssec_ok, "DO echoed");
    assert!(m.metadata.recursion_available);
}

#[test]
fn an_edns_client_gets_an_opt_record_with_its_do_bit_when_the_upstream_sent_none() {
    // An upstream that answers without EDNS (an old router, a LAN server in a [[forward]] zone).
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 9), 300);
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    for (dnssec_ok, proto) in [(true, Proto::Udp), (false, Proto::Udp), (true, Proto::Tcp)] {
        let opts = Ask {
            edns: true,
            dnssec_ok,
            ..Ask::default()
        };
        // Twice: fetched, then from the cache.
        for _ in 0..2 {
            let m = ask(srv.addr(), proto, "plain.example", RecordType::A, &opts);
            assert_eq!(m.answers.len(), 1);
            let e = m
                .edns
                .expect("OPT in the answer to an EDNS query (RFC 6891 section 7)");
            assert_eq!(e.flags().dnssec_ok, dnssec_ok, "DO as asked (RFC 3225)");
            assert_eq!(e.max_payload(), 1232);
        }
    }
    // A client without EDNS still gets none.
    let m = ask_simple(srv.addr(), Proto::Udp, "plain.example", RecordType::A);
    assert!(m.edns.is_none());
}

/// Asks the upstream directly and through c2sink; the answers must be the same but for the ID.
fn assert_same_as_upstream(
    up: &Upstream,
    srv: &C2sink,
    name: &str,
    qtype: RecordType,
    opts: &Ask,
) -> Message {
    let direct = ask(up.addr, Proto::Udp, name, qtype, opts);
    let via = ask(srv.addr(), Proto::Udp, name, qtype, opts);
    let mut d = direct.clone();
    d.metadata.id = via.metadata.id;
    assert_eq!(
        via, d,
        "{name} {qtype}: c2sink's answer differs from the upstream's"
    );
    via
}

#[test]
fn forwarded_answers_match_the_upstream_rcode_flags_sections_and_edns() {
    let up = Upstream::start();
    // No cache, so every ask is a real forward.
    let srv = C2sink::start(&config(&[up.addr], "[cache]\nsize = 0\n"), &[]);
    let edns = Ask {
        edns: true,
        ..Ask::default()
    };
    let m = assert_same_as_upstream(
        &up,
        &srv,
        "www.example.test",
        RecordType::A,
        &Ask::default(),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let m = assert_same_as_upstream(&up, &srv, "x.nxdomain.test", RecordType::A, &edns);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = assert_same_as_upstream(&up, &srv, "x.servfail.test", RecordType::A, &edns);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let m = assert_same_as_upstream(&up, &srv, "x.refused.test", RecordType::A, &Ask::default());
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "REFUSED is not turned into SERVFAIL"
    );
    let m = assert_same_as_upstream(&up, &srv, "x.nodata.test", RecordType::TXT, &edns);
    assert!(m.answers.is_empty() && m.authorities.len() == 1);
    let m = assert_same_as_upstream(&up, &srv, "secure.ad.test", RecordType::A, &edns);
    assert!(m.metadata.authentic_data, "AD flag kept");
    let ede = m
        .edns
        .as_ref()
        .expect("edns")
        .options()
        .as_ref()
        .iter()
        .any(|(c, _)| u16::from(*c) == 15);
    assert!(ede, "upstream's EDNS option (EDE) reaches the client");
    assert_same_as_upstream(
        &up,
        &srv,
        "Mixed.Case.Example.Test",
        RecordType::MX,
        &Ask::default(),
    );
    let raw = ask_raw(
        srv.addr(),
        Proto::Tcp,
        "Mixed.Case.Example.Test",
        RecordType::MX,
        &Ask::default(),
    );
    assert_eq!(raw_question_name(&raw), "Mixed.Case.Example.Test");
}

#[test]
fn client_do_bit_and_cd_bit_reach_the_upstream_but_not_its_edns_options() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let opts = Ask {
        edns: true,
        dnssec_ok: true,
        checking_disabled: true,
        options: vec![
            (65001, vec![0, 1, 2, 3, 4, 5]),
            (65050, vec![7, 7]),
            (10, vec![1, 2, 3, 4, 5, 6, 7, 8]),
            (12, vec![0; 16]),
            (8, vec![0, 1, 32, 0, 192, 168, 50, 23]),
        ],
        ..Ask::default()
    };
    let m = ask(
        srv.addr(),
        Proto::Udp,
        "dnssec.example.test",
        RecordType::A,
        &opts,
    );
    assert!(m.metadata.checking_disabled, "CD echoed");
    let seen = up.seen();
    let s = seen
        .iter()
        .find(|s| s.name == "dnssec.example.test")
        .expect("forwarded");
    assert!(s.dnssec_ok, "DO reached the upstream");
    // The OPT record is hop by hop (RFC 6891 6.1.1): the router's hints about the client (MAC, client
    // subnet), its cookie, padding and unknown options all stop at c2sink.
    assert_eq!(
        s.options,
        Vec::<u16>::new(),
        "no client option reaches the upstream"
    );
}

#[test]
fn client_hints_go_upstream_only_when_configured() {
    let up = Upstream::start();
    let cfg =
        config(&[up.addr], "").replace("[upstream]\n", "[upstream]\nsend_client_hints = true\n");
    let srv = C2sink::start(&cfg, &[]);
    let opts = Ask {
        edns: true,
        options: vec![
            (65001, vec![0, 1, 2, 3, 4, 5]),
            (10, vec![1, 2, 3, 4, 5, 6, 7, 8]),
            (8, vec![0, 1, 24, 0, 10, 1, 2]),
        ],
        ..Ask::default()
    };
    let m = ask(
        srv.addr(),
        Proto::Udp,
        "hints.example.test",
        RecordType::A,
        &opts,
    );
    assert_eq!(m.answers.len(), 1);
    let seen = up.seen();
    let s = seen
        .iter()
        .find(|s| s.name == "hints.example.test")
        .expect("forwarded");
    assert_eq!(
        s.options,
        vec![65001, 8],
        "the hints, and only they, sent on"
    );
    // The upstream may answer each device its own way: one device's answer is cached for it alone.
    let device = |mac: u8| Ask {
        edns: true,
        options: vec![(65001, vec![0, 1, 2, 3, 4, mac])],
        ..Ask::default()
    };
    let plain = Ask {
        edns: true,
        ..Ask::default()
    };
    for (opts, asked) in [
        (&device(1), 1),
        (&device(1), 1),
        (&device(2), 2),
        (&device(2), 2),
        (&plain, 3),
        (&plain, 3),
        (&device(1), 3),
    ] {
        let m = ask(
            srv.addr(),
            Proto::Udp,
            "per.device.test",
            RecordType::A,
            opts,
        );
        assert_eq!(m.answers.len(), 1);
        assert_eq!(up.count("per.device.test"), asked);
    }
}

#[test]
fn without_client_hints_sent_devices_share_the_cache() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    for mac in [1, 2, 3] {
        let opts = Ask {
            edns: true,
            options: vec![(65001, vec![0, 1, 2, 3, 4, mac])],
            ..Ask::default()
        };
        let m = ask(
            srv.addr(),
            Proto::Udp,
            "shared.device.test",
            RecordType::A,
            &opts,
        );
        assert_eq!(m.answers.len(), 1);
    }
    assert_eq!(up.count("shared.device.test"), 1);
}

#[test]
fn ad_flag_follows_each_clients_own_question_not_the_cached_one() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let with_ad = Ask {
        edns: true,
        authentic_data: true,
        ..Ask::default()
    };
    let without = Ask {
        edns: true,
        ..Ask::default()
    };
    // The upstream validates like Quad9: AD only for a query that had AD or DO (RFC 6840 5.7).
    for (first, second, name) in [
        (&with_ad, &without, "one.validated.test"),
        (&without, &with_ad, "two.validated.test"),
    ] {
        for opts in [first, second] {
            for round in 0..2 {
                let m = ask(srv.addr(), Proto::Udp, name, RecordType::A, opts);
                assert_eq!(m.answers.len(), 1, "{name}");
                assert_eq!(
                    m.metadata.authentic_data, opts.authentic_data,
                    "{name}: query AD={} (ask {round}) got AD={}",
                    opts.authentic_data, m.metadata.authentic_data
                );
            }
        }
        assert_eq!(
            up.count(name),
            2,
            "{name}: each AD variant asked upstream once, then cached"
        );
    }
}

#[test]
fn a_negative_answer_shows_no_ttl_above_negative_max_ttl() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], "[cache]\nnegative_max_ttl = 60\n"), &[]);
    let first = ask_simple(srv.addr(), Proto::Udp, "neg.nxdomain.test", RecordType::A);
    assert_eq!(first.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        first.authorities[0].ttl, 60,
        "the first client too (the upstream's SOA says 300)"
    );
    let cached = ask_simple(srv.addr(), Proto::Udp, "neg.nxdomain.test", RecordType::A);
    assert_eq!(up.count("neg.nxdomain.test"), 1, "from the cache");
    let ttl = cached.authorities[0].ttl;
    assert!(
        (58..=60).contains(&ttl),
        "the cache keeps it 60 s, so clients must not keep it longer: SOA TTL {ttl}"
    );
}

/// The TTLs of an A answer to `name` (asked over UDP), the first and then the cached one.
fn ttls_twice(srv: &C2sink, name: &str) -> [u32; 2] {
    [0, 1].map(|_| {
        let m = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
        assert_eq!(m.answers.len(), 1, "{name}");
        m.answers[0].ttl
    })
}

#[test]
fn every_client_sees_ttls_within_max_ttl_and_a_ttl_with_the_top_bit_as_zero() {
    // A month: far beyond `max_ttl`, for the first client as for the ones served from the cache.
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 9), 2_592_000);
    let srv = C2sink::start(&config(&[up.addr], "[cache]\nmax_ttl = 3600\n"), &[]);
    let [first, cached] = ttls_twice(&srv, "month.example");
    assert_eq!(first, 3600);
    assert!((3598..=3600).contains(&cached), "{cached}");
    assert_eq!(up.count("month.example"), 1, "the second from the cache");
    // 2^31: RFC 2181 section 8 reads a TTL with the top bit set as 0, so nobody may keep it.
    let up = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 9), 1 << 31);
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    assert_eq!(ttls_twice(&srv, "huge.example"), [0, 0]);
    assert_eq!(up.count("huge.example"), 2, "a TTL of 0 is not cached");
}

#[test]
fn an_answer_too_big_for_the_client_loses_its_optional_sections_before_it_gets_tc() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    // (payload offered, DO, over TCP) -> (authority records, additional records with the OPT) wanted.
    let cases = [
        // The whole answer (about 900 octets) fits 1232, and anything over TCP.
        ((Some(1232), false, false), (1, 41)),
        ((None, false, true), (1, 40)),
        // 512 octets: without the additional glue; the authority section still fits.
        ((None, false, false), (1, 0)),
        ((Some(512), false, false), (1, 1)),
        ((Some(512), true, false), (1, 1)),
    ];
    for (i, ((payload, dnssec_ok, tcp), want)) in cases.into_iter().enumerate() {
        let mut q = query(0x6100 + i as u16, &format!("c{i}.glue.test"), TYPE_A);
        if let Some(p) = payload {
            add_opt(&mut q, p, 0, dnssec_ok);
        }
        let proto = if tcp { Proto::Tcp } else { Proto::Udp };
        let raw = exchange_raw(srv.addr(), proto, &q).expect("an answer");
        let r = parse(&raw).expect("well formed");
        assert!(!r.truncated(), "case {i}: the asked record fits, so no TC");
        assert_eq!(
            r.addrs(),
            vec![std::net::Ipv4Addr::new(192, 0, 2, 1)],
            "case {i}"
        );
        assert_eq!((r.nscount, r.arcount), want, "case {i}");
        assert_eq!(r.opt.is_some(), payload.is_some(), "case {i}: OPT as asked");
        assert!(
            raw.len() <= payload.map_or(512, usize::from) || tcp,
            "case {i}"
        );
    }
}

/// An answer a stream cannot frame (an upstream's near-64 KiB answer plus the OPT c2sink adds for an EDNS
/// client) comes back with TC set, where it used to be dropped and the client waited for the idle timeout.
#[test]
fn an_answer_too_long_for_a_stream_comes_back_truncated() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let opts = Ask {
        edns: true,
        payload: 4096,
        ..Ask::default()
    };
    let m = ask(
        srv.addr(),
        Proto::Tcp,
        "a.huge.test",
        RecordType::TXT,
        &opts,
    );
    assert!(m.metadata.truncation, "TC: the records do not fit");
    assert!(m.answers.is_empty() && m.edns.is_some());
    assert_eq!(m.queries.len(), 1, "question echoed");
    // Without EDNS nothing is added: the upstream's answer comes whole.
    let raw = exchange_raw(
        srv.addr(),
        Proto::Tcp,
        &query_bytes("b.huge.test", RecordType::TXT, &Ask::default()).1,
    )
    .expect("an answer");
    assert_eq!(raw.len(), HUGE_ANSWER);
    let r = parse(&raw).expect("well formed");
    assert!(!r.truncated() && r.ancount > 200, "{}", r.ancount);
}

#[test]
fn truncated_udp_answer_is_retried_over_tcp() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    // The client offers 4096 bytes over UDP; the upstream truncates at 1232, so c2sink must use TCP. The
    // answer (over 1232 bytes) then goes back over UDP with TC, as Unbound's max-udp-size does: a datagram
    // that large would be fragmented on a real network. Over TCP the client gets all of it, from the cache.
    let opts = Ask {
        edns: true,
        payload: 4096,
        ..Ask::default()
    };
    let m = ask(
        srv.addr(),
        Proto::Udp,
        "txt.big.test",
        RecordType::TXT,
        &opts,
    );
    assert!(
        up.seen().iter().any(|s| s.name == "txt.big.test" && s.tcp),
        "upstream asked over TCP"
    );
    assert!(m.metadata.truncation, "no UDP answer above 1232 bytes");
    assert!(m.answers.is_empty() && m.edns.is_some());
    let m = ask(
        srv.addr(),
        Proto::Tcp,
        "txt.big.test",
        RecordType::TXT,
        &opts,
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40, "the whole answer, fetched over TCP");
    assert_eq!(up.count("txt.big.test"), 2, "UDP then TCP upstream, once");
    // A client without EDNS (512 bytes) gets TC and retries over TCP itself.
    let m = ask_simple(srv.addr(), Proto::Udp, "txt.big.test", RecordType::TXT);
    assert!(
        m.metadata.truncation,
        "TC to a client that cannot take the answer over UDP"
    );
    assert!(m.answers.is_empty() && m.edns.is_none());
    // An EDNS client with a small buffer gets TC with an OPT record.
    let small = Ask {
        edns: true,
        payload: 600,
        ..Ask::default()
    };
    let m = ask(
        srv.addr(),
        Proto::Udp,
        "txt.big.test",
        RecordType::TXT,
        &small,
    );
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some(), "OPT kept in the truncated answer");
    let m = ask_simple(srv.addr(), Proto::Tcp, "txt.big.test", RecordType::TXT);
    assert_eq!(m.answers.len(), 40);
}

#[test]
fn failover_to_second_upstream_and_dead_one_is_not_tried_first_again() {
    let dead = Blackhole::start();
    let up = Upstream::start();
    // Failover happens when the first upstream times out: after 1 s here, well inside the client's 3 s, and
    // time enough for the second one to answer on a loaded machine.
    let srv = C2sink::start(&config_timing_out(&[dead.addr, up.addr], 1000, ""), &[]);
    let m = ask_simple(srv.addr(), Proto::Udp, "one.example.test", RecordType::A);
    assert_eq!(m.answers.len(), 1, "answered by the second upstream");
    assert_eq!(dead.received.load(std::sync::atomic::Ordering::Relaxed), 1);
    let benched = Instant::now();
    for i in 0..5 {
        let m = ask_simple(
            srv.addr(),
            Proto::Udp,
            &format!("n{i}.example.test"),
            RecordType::A,
        );
        assert_eq!(m.answers.len(), 1);
    }
    // Benched for a second after each failure, then tried once again, which waits out its 1 s timeout: at
    // most one more try every 2 s, and one that may come early (its bench started before `benched`). A slow
    // machine may let seconds pass here. Tried first on every query, it would have had all 6, in about 5 s.
    let received = dead.received.load(std::sync::atomic::Ordering::Relaxed);
    let allowed = 2 + benched.elapsed().as_secs() as usize / 2;
    assert!(
        received <= allowed,
        "the failed upstream is benched, not tried first on every query: {received} queries in {:?}",
        benched.elapsed()
    );
}

#[test]
fn servfail_when_every_upstream_times_out_and_blocked_names_still_answered() {
    let dead1 = Blackhole::start();
    let dead2 = Blackhole::start();
    // Both time out, one after the other, inside the client's 3 s.
    let srv = C2sink::start(&config_timing_out(&[dead1.addr, dead2.addr], 400, ""), &[]);
    for proto in [Proto::Udp, Proto::Tcp] {
        let m = ask_simple(srv.addr(), proto, "www.example.test", RecordType::A);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "{proto:?}"
        );
    }
    let m = ask_simple(srv.addr(), Proto::Udp, "msstorageazure.com", RecordType::A);
    assert_null_sinkhole(&m, RecordType::A, "blocked while upstreams are down");
    let m = ask_simple(srv.addr(), Proto::Udp, "x.silent.test", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn second_ask_is_answered_from_cache_with_decreasing_ttl_and_client_case() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let asked = Instant::now();
    let first = ask_simple(srv.addr(), Proto::Udp, "cached.example.test", RecordType::A);
    assert_eq!(first.answers[0].ttl, 300);
    std::thread::sleep(Duration::from_millis(1100));
    let raw = ask_raw(
        srv.addr(),
        Proto::Tcp,
        "CACHED.example.TEST",
        RecordType::A,
        &Ask::default(),
    );
    assert_eq!(
        raw_question_name(&raw),
        "CACHED.example.TEST",
        "cached answer echoes this client's case"
    );
    let second = Message::from_vec(&raw).expect("parses");
    assert_eq!(
        up.count("cached.example.test"),
        1,
        "second ask not sent upstream"
    );
    assert_eq!(second.answers[0].data, first.answers[0].data);
    // At least a second has passed; no more than the test's own clock says (a loaded machine may stretch it).
    let most = u32::try_from(asked.elapsed().as_secs() + 1).expect("seconds");
    assert!(
        second.answers[0].ttl < 300 && second.answers[0].ttl >= 300 - most,
        "TTL counts down: {} after {:?}",
        second.answers[0].ttl,
        asked.elapsed()
    );
    // Negative answers are cached by their SOA.
    for _ in 0..3 {
        let m = ask_simple(srv.addr(), Proto::Udp, "gone.nxdomain.test", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(up.count("gone.nxdomain.test"), 1, "NXDOMAIN cached");
    // DO and non-DO clients do not share entries.
    let opts = Ask {
        edns: true,
        dnssec_ok: true,
        ..Ask::default()
    };
    ask(
        srv.addr(),
        Proto::Udp,
        "cached.example.test",
        RecordType::A,
        &opts,
    );
    assert_eq!(
        up.count("cached.example.test"),
        2,
        "DO query is a separate cache entry"
    );
    // Errors are not cached.
    for _ in 0..2 {
        ask_simple(srv.addr(), Proto::Udp, "x.servfail.test", RecordType::A);
    }
    assert_eq!(up.count("x.servfail.test"), 2, "SERVFAIL is not cached");
}

#[test]
fn expired_cache_entries_are_fetched_again() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let asked = Instant::now();
    ask_simple(srv.addr(), Proto::Udp, "a.short-ttl.test", RecordType::A);
    ask_simple(srv.addr(), Proto::Udp, "a.short-ttl.test", RecordType::A);
    // Within the 1 s TTL the second ask is a cache hit (unless a loaded machine took that long for both).
    if asked.elapsed() < Duration::from_millis(800) {
        assert_eq!(up.count("a.short-ttl.test"), 1);
    }
    let before = up.count("a.short-ttl.test");
    std::thread::sleep(Duration::from_millis(1200));
    ask_simple(srv.addr(), Proto::Udp, "a.short-ttl.test", RecordType::A);
    assert_eq!(up.count("a.short-ttl.test"), before + 1, "TTL 1 s honoured");
}

fn dig_args(tool: &str, server: SocketAddr, name: &str, qtype: &str, tcp: bool) -> Vec<String> {
    let mut a = vec![
        format!("@{}", server.ip()),
        "-p".into(),
        server.port().to_string(),
        name.into(),
        qtype.into(),
        if tool == "kdig" {
            "+retry=0"
        } else {
            "+tries=1"
        }
        .into(),
        "+time=3".into(),
    ];
    if tcp {
        a.push("+tcp".into());
    }
    a
}

#[test]
fn dig_and_kdig_see_sinkhole_and_forwarded_answers_over_udp_tcp_ipv4_ipv6() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    for tool in ["dig", "kdig"] {
        for server in [srv.addr(), srv.addr6()] {
            for tcp in [false, true] {
                let out = run_tool(
                    tool,
                    &dig_args(tool, server, "cdn.msstorageazure.com", "A", tcp),
                );
                assert!(
                    out.contains("status: NOERROR"),
                    "{tool} {server} tcp={tcp}:\n{out}"
                );
                assert!(out.contains("0.0.0.0"), "{tool}: sinkholed:\n{out}");
                let out = run_tool(
                    tool,
                    &dig_args(tool, server, "cdn.msstorageazure.com", "TXT", tcp),
                );
                assert!(
                    out.contains("c2sink.invalid"),
                    "{tool}: SOA in NODATA:\n{out}"
                );
                let out = run_tool(tool, &dig_args(tool, server, "www.example.test", "A", tcp));
                assert!(out.contains("192.0.2.1"), "{tool}: forwarded:\n{out}");
            }
        }
    }
    assert_eq!(up.count("cdn.msstorageazure.com"), 0);
    assert_eq!(srv.events(16).len(), 16, "one event per blocked query");
}

#[test]
fn sigterm_stops_the_server_cleanly_and_events_are_flushed() {
    let up = Upstream::start();
    let mut srv = C2sink::start(&config(&[up.addr], ""), &[]);
    ask_simple(srv.addr(), Proto::Udp, "glcloudservice.com", RecordType::A);
    let events = srv.path("events.jsonl");
    let (ok, log) = srv.terminate();
    assert!(ok, "exit status not success:\n{log}");
    let text = std::fs::read_to_string(events).expect("events");
    assert_eq!(text.lines().count(), 1);
}

#[test]
fn blocked_name_with_unsupported_edns_version_gets_badvers_and_is_still_logged() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let (_, mut raw) = query_bytes(
        "cdn.msstorageazure.com",
        RecordType::A,
        &Ask {
            edns: true,
            ..Ask::default()
        },
    );
    // The OPT record is last (11 octets, no options): the second octet of its TTL field is the version.
    let n = raw.len();
    raw[n - 5] = 1;
    let answer = exchange_raw(srv.addr(), Proto::Udp, &raw).expect("answer");
    let m = Message::from_vec(&answer).expect("parses");
    // Extended RCODE 16 (BADVERS; hickory names the shared value BADSIG).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    let ev = srv.events(1);
    assert_eq!(
        ev.len(),
        1,
        "the beacon is evidence even when the answer is BADVERS"
    );
    assert_eq!(ev[0]["rule"], "msstorageazure.com");
    assert_eq!(up.count("cdn.msstorageazure.com"), 0);
}

#[test]
fn special_use_and_private_names_never_reach_the_upstream() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    for proto in [Proto::Udp, Proto::Tcp] {
        let m = ask_simple(srv.addr(), proto, "localhost", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            m.answers[0].data,
            RData::A(std::net::Ipv4Addr::LOCALHOST.into())
        );
        let m = ask_simple(srv.addr(), proto, "db.localhost", RecordType::AAAA);
        assert_eq!(
            m.answers[0].data,
            RData::AAAA(std::net::Ipv6Addr::LOCALHOST.into())
        );
        for (name, qtype) in [
            ("3.2.1.10.in-addr.arpa", RecordType::PTR),
            ("10.1.168.192.in-addr.arpa", RecordType::PTR),
            ("7.0.20.172.in-addr.arpa", RecordType::PTR),
            ("wpad.home.arpa", RecordType::A),
            (
                "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
                RecordType::A,
            ),
            ("bar.invalid", RecordType::A),
            // Reverse zones no server can answer (RFC 6303 4): loopback, "this" network, TEST-NET-1.
            ("5.5.5.127.in-addr.arpa", RecordType::PTR),
            ("1.0.0.0.in-addr.arpa", RecordType::PTR),
            ("7.2.0.192.in-addr.arpa", RecordType::PTR),
        ] {
            let m = ask_simple(srv.addr(), proto, name, qtype);
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert_eq!(m.authorities.len(), 1, "{name}: SOA for negative caching");
        }
        // A local zone's own name exists (it holds the SOA): NODATA for other types, as from Unbound.
        for name in [
            "10.in-addr.arpa",
            "home.arpa",
            "onion",
            "invalid",
            "0.in-addr.arpa",
        ] {
            for qtype in [RecordType::A, RecordType::NS, RecordType::PTR] {
                let m = ask_simple(srv.addr(), proto, name, qtype);
                assert_eq!(
                    m.metadata.response_code,
                    ResponseCode::NoError,
                    "{name} {qtype}"
                );
                assert_eq!(
                    (m.answers.len(), m.authorities.len()),
                    (0, 1),
                    "{name} {qtype}"
                );
                assert_eq!(m.authorities[0].name.to_ascii(), format!("{name}."));
            }
        }
        // The SOA asked at a local zone's own name, or at a blocked name's rule, is the answer itself.
        for name in ["10.in-addr.arpa", "msstorageazure.com"] {
            let m = ask_simple(srv.addr(), proto, name, RecordType::SOA);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert_eq!((m.answers.len(), m.authorities.len()), (1, 0), "{name}");
            assert_eq!(m.answers[0].record_type(), RecordType::SOA, "{name}");
        }
        // 127.0.0.1 and ::1 are localhost, as Unbound answers them.
        let ip6_loopback = format!("1.{}ip6.arpa", "0.".repeat(31));
        for name in ["1.0.0.127.in-addr.arpa", ip6_loopback.as_str()] {
            let m = ask_simple(srv.addr(), proto, name, RecordType::PTR);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            match m.answers.first().map(|r| &r.data) {
                Some(RData::PTR(p)) => assert_eq!(p.0.to_ascii(), "localhost.", "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
    // A public address's reverse name is forwarded as usual.
    let m = ask_simple(
        srv.addr(),
        Proto::Udp,
        "4.3.2.1.in-addr.arpa",
        RecordType::PTR,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let names = up.names();
    assert_eq!(
        names,
        vec!["4.3.2.1.in-addr.arpa"],
        "only the public name went upstream"
    );
}

#[test]
fn private_names_go_to_the_lans_own_server_when_configured() {
    let up = Upstream::start();
    let cfg =
        config(&[up.addr], "").replace("[upstream]\n", "[upstream]\nprivate_names = \"forward\"\n");
    let srv = C2sink::start(&cfg, &[]);
    for name in ["3.2.1.10.in-addr.arpa", "nas.home.arpa"] {
        let m = ask_simple(srv.addr(), Proto::Udp, name, RecordType::PTR);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(up.count(name), 1, "{name} forwarded");
    }
    // .onion never is (RFC 7686).
    let m = ask_simple(srv.addr(), Proto::Udp, "x.onion", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.count("x.onion"), 0);
}

#[test]
fn forward_zones_go_to_their_own_servers() {
    let public = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 1), 300);
    let lan = Upstream::answering_a(std::net::Ipv4Addr::new(10, 0, 0, 9), 300);
    let cfg = format!(
        "{}\n[[forward]]\nzone = \"Corp.Example.\"\nservers = [\"{}\"]\n\
         [[forward]]\nzone = \"168.192.in-addr.arpa\"\nservers = [\"{}\"]\n\
         [[forward]]\nzone = \"2.0.192.in-addr.arpa\"\nservers = [\"{}\"]\n",
        config(&[public.addr], ""),
        lan.addr,
        lan.addr,
        lan.addr
    );
    let srv = C2sink::start(&cfg, &[]);
    let a = |name: &str| {
        let m = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
        match m.answers.first().map(|r| &r.data) {
            Some(RData::A(a)) => a.0.to_string(),
            other => format!("{other:?}"),
        }
    };
    assert_eq!(a("pc1.corp.example"), "10.0.0.9");
    assert_eq!(a("corp.example"), "10.0.0.9");
    assert_eq!(a("xcorp.example"), "192.0.2.1", "not below the zone");
    assert_eq!(a("www.example.org"), "192.0.2.1");
    // A private reverse zone the admin forwards goes to that server instead of NXDOMAIN here.
    let m = ask_simple(
        srv.addr(),
        Proto::Udp,
        "7.1.168.192.in-addr.arpa",
        RecordType::PTR,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(lan.count("7.1.168.192.in-addr.arpa"), 1);
    // So does a zone c2sink would otherwise answer itself (a documentation range a lab's server holds).
    let m = ask_simple(
        srv.addr(),
        Proto::Udp,
        "7.2.0.192.in-addr.arpa",
        RecordType::PTR,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(lan.count("7.2.0.192.in-addr.arpa"), 1);
    // Other private zones are still answered here; blocked names are sinkholed whatever the zone.
    let m = ask_simple(
        srv.addr(),
        Proto::Udp,
        "3.2.1.10.in-addr.arpa",
        RecordType::PTR,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(lan.count("pc1.corp.example"), 1);
    assert_eq!(public.count("pc1.corp.example"), 0);
    assert_eq!(lan.count("www.example.org"), 0);
}

#[test]
fn answers_from_an_authoritative_upstream_read_as_a_resolvers() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let cd = Ask {
        checking_disabled: true,
        ..Ask::default()
    };
    let direct = ask(up.addr, Proto::Udp, "host.auth.test", RecordType::A, &cd);
    assert!(
        direct.metadata.authoritative
            && !direct.metadata.recursion_available
            && !direct.metadata.checking_disabled,
        "the test upstream answers as an authoritative server"
    );
    // The first ask is forwarded, the second comes from the cache; TCP too.
    for (i, proto) in [Proto::Udp, Proto::Udp, Proto::Tcp].into_iter().enumerate() {
        let via = ask(srv.addr(), proto, "host.auth.test", RecordType::A, &cd);
        assert!(!via.metadata.authoritative, "ask {i}: AA cleared");
        assert!(via.metadata.recursion_available, "ask {i}: RA set");
        assert!(via.metadata.checking_disabled, "ask {i}: CD echoed");
        assert_eq!(via.answers.len(), direct.answers.len(), "ask {i}");
        assert_eq!(via.answers[0].data, direct.answers[0].data, "ask {i}");
    }
    assert_eq!(
        up.count("host.auth.test"),
        2,
        "one UDP forward, then cached"
    );
}

#[test]
fn zone_transfers_are_refused_and_meta_types_get_formerr_without_reaching_the_upstream() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    // AXFR 252, IXFR 251: REFUSED; OPT 41, TSIG 250, TKEY 249, MAILA 254, 200 (meta range): FORMERR.
    let cases = [
        (252u16, 5u8),
        (251, 5),
        (41, 1),
        (250, 1),
        (249, 1),
        (254, 1),
        (200, 1),
    ];
    for proto in [Proto::Udp, Proto::Tcp] {
        for (qtype, rcode) in cases {
            let q = query(next_id(), "www.example.test", qtype);
            let r = exchange_raw(srv.addr(), proto, &q).expect("an answer");
            let (got, answers) = rcode_and_answers(&r);
            assert_eq!((got, answers), (rcode, 0), "type {qtype} over {proto:?}");
            assert_eq!(&r[..2], &q[..2], "ID echoed");
        }
    }
    // Classes other than IN, CH and ANY (HS; NONE, which belongs to UPDATE): REFUSED, as Unbound answers
    // them. A query with a record in its answer section: FORMERR.
    // A record in the answer (byte 7) or additional (byte 11, not an OPT: say a TSIG) section: FORMERR.
    for (qclass, count_at, rcode) in [(4u16, 0usize, 5u8), (254, 0, 5), (1, 7, 1), (1, 11, 1)] {
        let mut q = query(next_id(), "www.example.test", 1);
        let n = q.len();
        q[n - 2..].copy_from_slice(&qclass.to_be_bytes());
        if count_at > 0 {
            q.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
            q[count_at] = 1;
        }
        let r = exchange_raw(srv.addr(), Proto::Udp, &q).expect("an answer");
        assert_eq!(
            rcode_and_answers(&r),
            (rcode, 0),
            "class {qclass}, a record counted at byte {count_at}"
        );
    }
    // Ordinary types still go upstream; the ones above never did.
    let m = ask_simple(srv.addr(), Proto::Udp, "www.example.test", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(up.count("www.example.test"), 1);
    // A zone transfer of a C2 name is still a beacon worth logging.
    let q = query(next_id(), "cdn.msstorageazure.com", 252);
    let r = exchange_raw(srv.addr(), Proto::Tcp, &q).expect("an answer");
    assert_eq!(rcode_and_answers(&r), (5, 0));
    // And one with an EDNS version c2sink does not speak (BADVERS, extended RCODE 16).
    let mut q = query(next_id(), "cdn.msstorageazure.com", 1);
    q[11] = 1;
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 1, 0x80, 0, 0, 0]);
    let r = parse(&exchange_raw(srv.addr(), Proto::Udp, &q).expect("an answer")).expect("parse");
    assert_eq!((r.rcode, r.ancount), (16, 0), "BADVERS");
    // An IXFR (REFUSED) and meta types (FORMERR): the event names the type as dig does, as for AXFR.
    for qtype in [251u16, 250, 249, 253, 254] {
        let q = query(next_id(), "cdn.msstorageazure.com", qtype);
        exchange_raw(srv.addr(), Proto::Udp, &q).expect("an answer");
    }
    let ev = srv.events(7);
    assert_eq!(ev.len(), 7);
    assert_eq!(ev[0]["rule"], "msstorageazure.com");
    // The event says the answer the client got, not the sinkhole's it did not get.
    assert_eq!(ev[0]["action"], "refused");
    assert_eq!(ev[0]["qtype"], "AXFR");
    assert_eq!(ev[1]["action"], "badvers");
    let got: Vec<(&str, &str)> = ev[2..]
        .iter()
        .map(|e| (e["qtype"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("IXFR", "refused"),
            ("TSIG", "formerr"),
            ("TKEY", "formerr"),
            ("MAILB", "formerr"),
            ("MAILA", "formerr")
        ]
    );
}

#[test]
fn a_blocked_name_asked_in_class_ch_is_refused_and_still_logged() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    for proto in [Proto::Udp, Proto::Tcp] {
        let mut q = query(next_id(), "cdn.msstorageazure.com", 16);
        let n = q.len();
        q[n - 2..].copy_from_slice(&3u16.to_be_bytes());
        let r = exchange_raw(srv.addr(), proto, &q).expect("an answer");
        assert_eq!(
            rcode_and_answers(&r),
            (5, 0),
            "{proto:?}: REFUSED, as Unbound"
        );
    }
    let ev = srv.events(2);
    assert_eq!(ev.len(), 2, "the beacon is evidence whatever the class");
    assert_eq!(ev[0]["rule"], "msstorageazure.com");
    assert_eq!(ev[0]["action"], "refused");
    assert_eq!(up.count("cdn.msstorageazure.com"), 0);
}

#[test]
fn chaos_identity_questions_are_answered_by_c2sink_not_forwarded() {
    use hickory_proto::rr::{DNSClass, RData};
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let ch = |name: &str, qtype: u16| {
        let mut q = query(next_id(), name, qtype);
        let n = q.len();
        q[n - 2..].copy_from_slice(&3u16.to_be_bytes());
        q
    };
    for proto in [Proto::Udp, Proto::Tcp] {
        for name in ["version.bind", "VERSION.server"] {
            let r = exchange_raw(srv.addr(), proto, &ch(name, 16)).expect("an answer");
            let m = Message::from_vec(&r).expect("parses");
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{name} {proto:?}"
            );
            assert!(m.metadata.authoritative, "{name} {proto:?}");
            assert_eq!(m.answers.len(), 1, "{name} {proto:?}");
            assert_eq!(m.answers[0].dns_class, DNSClass::CH);
            let RData::TXT(txt) = &m.answers[0].data else {
                panic!("{name}: not a TXT answer: {:?}", m.answers[0]);
            };
            assert_eq!(txt.to_string(), "c2sink", "{name} {proto:?}");
            // The question comes back as asked, letter case included.
            assert_eq!(m.queries[0].name().to_ascii(), format!("{name}."));
        }
        for name in ["id.server", "hostname.bind"] {
            let r = exchange_raw(srv.addr(), proto, &ch(name, 16)).expect("an answer");
            assert_eq!(rcode_and_answers(&r), (5, 0), "{name} {proto:?}");
        }
    }
    for name in [
        "version.bind",
        "version.server",
        "id.server",
        "hostname.bind",
    ] {
        assert_eq!(up.count(name), 0, "{name} went upstream");
    }
    // Any other question in class CH is refused, as Unbound refuses it, and not forwarded.
    for (name, qtype) in [
        ("authors.bind", 16),
        ("version.bind", 1),
        ("www.example.test", 16),
    ] {
        let q = ch(name, qtype);
        let r = exchange_raw(srv.addr(), Proto::Udp, &q).expect("an answer");
        assert_eq!(&r[..2], &q[..2], "ID echoed");
        assert_eq!(rcode_and_answers(&r), (5, 0), "{name} {qtype}");
        assert_eq!(up.count(name), 0, "{name} went upstream");
    }
    // The same question in class IN goes upstream as ever.
    let m = ask_simple(srv.addr(), Proto::Udp, "www.example.test", RecordType::TXT);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(up.count("www.example.test"), 1);
}

#[test]
fn expired_answers_are_served_stale_while_no_upstream_answers() {
    let mut up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let off = C2sink::start(&config(&[up.addr], "[cache]\nserve_stale = 0\n"), &[]);
    let a = |s: &C2sink, proto| ask_simple(s.addr(), proto, "a.short-ttl.test", RecordType::A);
    let fresh = a(&srv, Proto::Udp);
    assert_eq!(fresh.answers.len(), 1);
    assert_eq!(fresh.answers[0].ttl, 1, "the upstream's TTL");
    assert_eq!(a(&off, Proto::Udp).answers.len(), 1);
    up.stop();
    std::thread::sleep(Duration::from_millis(1200));
    for proto in [Proto::Udp, Proto::Tcp] {
        let m = a(&srv, proto);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto:?}");
        assert_eq!(m.answers.len(), 1, "{proto:?}");
        assert_eq!(m.answers[0].data, fresh.answers[0].data, "{proto:?}");
        assert_eq!(m.answers[0].ttl, 30, "{proto:?}: RFC 8767's stale TTL");
    }
    // Nothing cached, nothing to serve; and serve_stale = 0 turns it off.
    let m = ask_simple(srv.addr(), Proto::Udp, "b.short-ttl.test", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        a(&off, Proto::Udp).metadata.response_code,
        ResponseCode::ServFail
    );
}

#[test]
fn a_slow_upstream_lets_the_expired_answer_go_at_the_client_timer_and_still_refreshes_it() {
    use std::net::Ipv4Addr;
    let (old, new) = (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 20));
    let first = Upstream::answering_a(old, 1);
    let up = first.addr;
    // A try may take 3 s here, so that only the client timer decides what the slow name gets.
    let cfg = |extra: &str| config_timing_out(&[up], 3000, extra);
    let srv = C2sink::start(&cfg("[cache]\nserve_stale_after_ms = 50\n"), &[]);
    let off = C2sink::start(&cfg("[cache]\nserve_stale_after_ms = 0\n"), &[]);
    let ask = |s: &C2sink| ask_simple(s.addr(), Proto::Udp, "slow.example.test", RecordType::A);
    let a_of = |m: &Message| match m.answers.first().map(|r| &r.data) {
        Some(RData::A(a)) => Some((a.0, m.answers[0].ttl)),
        _ => None,
    };
    for s in [&srv, &off] {
        assert_eq!(a_of(&ask(s)), Some((old, 1)));
    }
    // The upstream now has a new address for the name, and takes 800 ms to give it.
    drop(first);
    let second = Upstream::with_zone(
        up,
        Zone::FixedA {
            addr: new,
            ttl: 300,
            a_only: true,
        },
    );
    second.delay("slow.example.test", Duration::from_millis(800));
    std::thread::sleep(Duration::from_millis(1200));
    // Past its TTL: with the timer, the expired answer with RFC 8767's TTL, without waiting for the upstream;
    // without it, the upstream's answer when it comes.
    assert_eq!(a_of(&ask(&srv)), Some((old, 30)));
    assert_eq!(a_of(&ask(&off)).map(|(a, _)| a), Some(new));
    // The fetch the stale answer left behind went on and was cached: the next query gets the new address
    // from the cache, and the upstream saw one query from each server, no more.
    // (Asks while it is still in flight get the stale answer again and join that fetch.)
    poll_until("the refreshed answer in the cache", || {
        a_of(&ask(&srv)).map(|(a, _)| a) == Some(new)
    });
    assert_eq!(second.count("slow.example.test"), 2);
}

/// A c2sink (its config plus `extra`) that cached `name` with TTL 1 from an upstream since replaced, on the
/// same address, by one serving the test zone; returned once that cached answer has expired.
fn with_expired_answer(name: &str, extra: &str) -> (C2sink, Upstream) {
    let first = Upstream::answering_a(std::net::Ipv4Addr::new(192, 0, 2, 10), 1);
    let up = first.addr;
    let srv = C2sink::start(&config(&[up], extra), &[]);
    let m = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
    assert_eq!(
        m.answers.first().map(|r| r.ttl),
        Some(1),
        "{name} cached with TTL 1"
    );
    drop(first);
    let second = Upstream::with_zone(up, Zone::Test);
    std::thread::sleep(Duration::from_millis(1200));
    (srv, second)
}

#[test]
fn an_upstream_servfail_for_an_expired_name_gets_the_stale_answer() {
    // The upstream is up, but now fails the name at once (its own servers down, say).
    let (srv, second) = with_expired_answer("x.servfail.test", "");
    let m = ask_simple(srv.addr(), Proto::Udp, "x.servfail.test", RecordType::A);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "RFC 8767: stale, not SERVFAIL"
    );
    assert_eq!(m.answers.first().map(|r| r.ttl), Some(30));
    assert_eq!(second.count("x.servfail.test"), 1);
    // Another name the upstream fails, with nothing cached: the upstream's SERVFAIL.
    let m = ask_simple(srv.addr(), Proto::Udp, "y.servfail.test", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn after_a_failed_refresh_the_stale_answer_comes_at_once_without_asking_again() {
    // The upstream now never answers the name (and, answering others, is not marked down).
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (srv, second) = with_expired_answer(
        "x.silent.test",
        &format!("[cache]\nserve_stale_after_ms = 50\n[admin]\nlisten = \"{admin}\"\n"),
    );
    let ask = || ask_simple(srv.addr(), Proto::Udp, "x.silent.test", RecordType::A);
    assert_eq!(ask().answers.first().map(|r| r.ttl), Some(30));
    // The refresh left running times out (after 2 s): from then on, for 30 s, the name is served stale
    // without a try.
    poll_until("the refresh to time out", || {
        srv.stderr()
            .iter()
            .any(|l| l.contains("upstream try failed") && l.contains("x.silent.test"))
    });
    for _ in 0..3 {
        assert_eq!(ask().answers.first().map(|r| r.ttl), Some(30));
    }
    assert_eq!(
        second.count("x.silent.test"),
        1,
        "asked again within the recheck period"
    );
    // Misses are queries that went upstream: the first (cached) and the refresh, not the stale answers
    // given at once; each stale answer is a hit.
    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    let m = parse_metrics(&body);
    assert_eq!(m.get("c2sink_cache_misses_total"), Some(&2.0), "{body}");
    assert_eq!(m.get("c2sink_cache_hits_total"), Some(&4.0), "{body}");
    let m = ask_simple(srv.addr(), Proto::Udp, "www.example.test", RecordType::A);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "the upstream still serves others"
    );
}

#[test]
fn an_upstream_error_without_the_question_reaches_the_client_with_its_question() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    for proto in [Proto::Udp, Proto::Tcp] {
        let name = format!("x-{proto:?}.bare-refused.test").to_lowercase();
        let (sent, raw) = query_bytes(&name, RecordType::A, &Ask::default());
        let r = exchange_raw(srv.addr(), proto, &raw).expect("an answer");
        let m = Message::from_vec(&r).expect("parses");
        assert_eq!(m.metadata.id, sent.metadata.id, "{proto:?}");
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::Refused,
            "{proto:?}: the upstream's error, not SERVFAIL"
        );
        assert_eq!(m.queries.len(), 1, "{proto:?}: the client's question");
        assert_eq!(raw_question_name(&r), name, "{proto:?}");
    }
    // The upstream answered, so it is not held against it: the next query is forwarded and answered.
    let m = ask_simple(srv.addr(), Proto::Udp, "www.example.test", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn the_upstreams_cookie_and_nsid_reach_no_client_and_its_ede_does() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let codes = |m: &Message| -> Vec<u16> {
        m.edns
            .as_ref()
            .map(|e| {
                e.options()
                    .as_ref()
                    .iter()
                    .map(|(c, _)| u16::from(*c))
                    .collect()
            })
            .unwrap_or_default()
    };
    let client = |cookie: u8| Ask {
        edns: true,
        options: vec![(10, vec![cookie; 8])],
        ..Ask::default()
    };
    let direct = ask(
        up.addr,
        Proto::Udp,
        "a.chatty.test",
        RecordType::A,
        &client(1),
    );
    assert_eq!(
        codes(&direct),
        vec![3, 10],
        "the upstream sends its NSID and a cookie"
    );
    // The first client's answer is forwarded, the second's comes from the cache.
    for (i, cookie) in [1u8, 2].into_iter().enumerate() {
        let m = ask(
            srv.addr(),
            Proto::Udp,
            "a.chatty.test",
            RecordType::A,
            &client(cookie),
        );
        assert_eq!(m.answers.len(), 1, "client {i}");
        assert_eq!(
            codes(&m),
            Vec::<u16>::new(),
            "client {i}: no option of the upstream's"
        );
        assert_eq!(
            m.edns.as_ref().map(|e| e.max_payload()),
            Some(1232),
            "client {i}"
        );
    }
    assert_eq!(up.count("a.chatty.test"), 2, "one direct ask, one forward");
    // Extended DNS Errors are about the answer, and stay with it.
    let edns = Ask {
        edns: true,
        ..Ask::default()
    };
    let m = ask(srv.addr(), Proto::Udp, "x.ad.test", RecordType::A, &edns);
    assert_eq!(codes(&m), vec![15]);
}

#[test]
fn clients_asking_the_same_question_at_once_share_one_upstream_query() {
    let up = Upstream::start();
    // No cache: what is shared is the fetch in flight, not a stored answer. The upstream answers after 1.5 s,
    // well inside c2sink's 5 s timeout and the clients' 3 s, so that all eight, let go at once, are asking
    // before it answers even on a loaded machine.
    let srv = C2sink::start(
        &config_timing_out(&[up.addr], 5000, "[cache]\nsize = 0\n"),
        &[],
    );
    up.delay("slow.example.test", Duration::from_millis(1500));
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let asks: Vec<_> = (0..8u16)
        .map(|i| {
            let addr = srv.addr();
            let start = start.clone();
            let name = if i % 2 == 0 {
                "Slow.Example.Test"
            } else {
                "slow.example.TEST"
            };
            let proto = if i < 6 { Proto::Udp } else { Proto::Tcp };
            std::thread::spawn(move || {
                let q = query(0x5100 + i, name, 1);
                start.wait();
                (q.clone(), name, exchange_raw(addr, proto, &q))
            })
        })
        .collect();
    for h in asks {
        let (q, name, r) = h.join().expect("thread");
        let r = r.expect("an answer");
        assert_eq!(&r[..2], &q[..2], "{name}: its own ID");
        assert_eq!(rcode_and_answers(&r), (0, 1), "{name}");
        assert_eq!(raw_question_name(&r), name, "its own letter case");
    }
    assert_eq!(
        up.count("slow.example.test"),
        1,
        "one upstream query for all eight"
    );
    // Another type is another question.
    let m = ask_simple(
        srv.addr(),
        Proto::Udp,
        "slow.example.test",
        RecordType::AAAA,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(up.count("slow.example.test"), 2);
}

#[test]
fn a_questionless_nxdomain_is_not_taken_for_an_answer_nor_cached() {
    let up = Upstream::start();
    // The questionless answer is not taken: each ask waits out the (short) timeout for a real one.
    let srv = C2sink::start(&config_timing_out(&[up.addr], 400, ""), &[]);
    // Twice: the second ask would come from the cache, with its question written over the SOA.
    for i in 0..2 {
        let q = query(next_id(), "www.bare-nxdomain.test", 1);
        let r = exchange_raw(srv.addr(), Proto::Udp, &q).expect("an answer");
        let m = Message::from_vec(&r).expect("a well-formed answer");
        assert_eq!(m.queries.len(), 1, "ask {i}");
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "ask {i}: no answer to the question came"
        );
    }
    assert_eq!(
        up.count("www.bare-nxdomain.test"),
        2,
        "nothing was cached: both asks went upstream"
    );
}

#[test]
fn a_non_recursive_client_does_not_decide_what_others_asking_the_same_get() {
    let up = Upstream::start();
    let srv = C2sink::start(
        &config_timing_out(&[up.addr], 5000, "[cache]\nsize = 0\n"),
        &[],
    );
    up.delay("x.norec.test", Duration::from_millis(1500));
    let addr = srv.addr();
    let norec = std::thread::spawn(move || {
        let mut q = query(0x7001, "x.norec.test", 1);
        q[2] &= !0x01; // RD = 0
        exchange_raw(addr, Proto::Udp, &q)
    });
    // The RD=0 query's fetch is in flight (held 1.5 s by the upstream) before the recursive client asks.
    poll_until("the RD=0 query to reach the upstream", || {
        up.count("x.norec.test") > 0
    });
    let r = exchange_raw(addr, Proto::Udp, &query(0x7002, "x.norec.test", 1)).expect("an answer");
    assert_eq!(
        rcode_and_answers(&r),
        (0, 1),
        "the recursive client's answer"
    );
    let r0 = norec.join().expect("thread").expect("an answer");
    assert_eq!(
        rcode_and_answers(&r0),
        (0, 1),
        "c2sink asks its upstream for recursion"
    );
    assert_eq!(r0[2] & 0x01, 0, "the RD=0 client's own RD is echoed");
    assert!(
        up.seen().iter().all(|s| s.name != "x.norec.test" || s.rd),
        "every upstream query had RD"
    );
}

#[test]
fn any_is_answered_from_what_the_cache_knows_of_the_name() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let first_type = |m: &Message| m.answers.first().map(|r| r.record_type());
    // Nothing known of the name: the RFC 8482 HINFO.
    let m = ask_simple(
        srv.addr(),
        Proto::Udp,
        "fresh.example.test",
        RecordType::ANY,
    );
    assert_eq!(first_type(&m), Some(RecordType::HINFO));
    // A name known not to exist stays so, and a CNAME owner shows its CNAME, not a made-up HINFO.
    for (name, rcode, want) in [
        ("x.nxdomain.test", ResponseCode::NXDomain, None),
        (
            "a.cname-ok.test",
            ResponseCode::NoError,
            Some(RecordType::CNAME),
        ),
    ] {
        ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
        for proto in [Proto::Udp, Proto::Tcp] {
            let m = ask_simple(srv.addr(), proto, name, RecordType::ANY);
            assert_eq!(m.metadata.response_code, rcode, "{name} {proto:?}");
            assert_eq!(first_type(&m), want, "{name} {proto:?}");
            assert_eq!(
                m.queries[0].query_type(),
                RecordType::ANY,
                "{name}: the question as asked"
            );
        }
    }
    assert!(
        up.seen().iter().all(|s| s.qtype != RecordType::ANY),
        "ANY never goes upstream"
    );
}

/// Asks c2sink at `asked` from a client on `from`; returns where the answer came from and its
/// A addresses.
fn ask_and_see_source(
    from: &str,
    asked: SocketAddr,
    name: &str,
) -> (SocketAddr, Vec<std::net::Ipv4Addr>) {
    let s = udp_client(from, Duration::from_secs(5));
    let id = 0x5151;
    s.send_to(&query(id, name, TYPE_A), asked).expect("send");
    let mut buf = [0u8; 4096];
    let (n, source) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no answer for {name} via {asked}: {e}"));
    let r = parse(&buf[..n]).expect("well formed");
    assert_eq!((r.id, r.rcode), (id, 0), "{name}");
    (source, r.addrs())
}

/// c2sink's shipped listen addresses are wildcards (0.0.0.0:53, [::]:53). On a host with several addresses
/// (a LAN address and a VIP, or IPv6's many), a client asks one of them and drops an answer from another, so
/// every answer must leave from the address that was asked. (127.0.0.3 is one of this host's addresses; the
/// kernel's own choice of source back to 127.0.0.1 would be 127.0.0.1.) The wildcard socket listens on an
/// ephemeral port only for this test, and all traffic stays on loopback.
#[test]
fn a_wildcard_listener_answers_from_the_address_that_was_asked() {
    let up = Upstream::answering(std::net::Ipv4Addr::new(192, 0, 2, 7));
    let dir = TempDir::new("wildcard");
    let c = C2sink::start_file(&config_file(&dir, "0.0.0.0:0", &[up.addr], ""));
    let port = c.addr().port();
    let asked = SocketAddr::from(([127, 0, 0, 3], port));
    let sinkhole = vec![std::net::Ipv4Addr::UNSPECIFIED];
    let forwarded = vec![std::net::Ipv4Addr::new(192, 0, 2, 7)];
    // Sinkholed (answered in the receive loop's batch), forwarded (answered later, when the upstream
    // replies), then the same name from the cache.
    for (name, want) in [
        ("evil.example", &sinkhole),
        ("www.allowed.example", &forwarded),
        ("www.allowed.example", &forwarded),
    ] {
        assert_eq!(
            ask_and_see_source("127.0.0.1", asked, name),
            (asked, want.clone()),
            "{name}"
        );
    }
    assert_eq!(up.seen().len(), 1, "the second ask came from the cache");
}

#[test]
fn a_wildcard_ipv6_listener_answers_over_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        return; // no IPv6 loopback on this machine
    }
    let up = Upstream::answering(std::net::Ipv4Addr::new(192, 0, 2, 7));
    let dir = TempDir::new("wildcard6");
    let c = C2sink::start_file(&config_file(&dir, "[::]:0", &[up.addr], ""));
    let asked = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, c.addr().port()));
    for (name, want) in [
        ("evil.example", std::net::Ipv4Addr::UNSPECIFIED),
        ("www.allowed.example", std::net::Ipv4Addr::new(192, 0, 2, 7)),
    ] {
        assert_eq!(
            ask_and_see_source("::1", asked, name),
            (asked, vec![want]),
            "{name}"
        );
    }
}

#[test]
fn an_upstream_opt_that_is_not_the_last_record_keeps_none_of_its_options() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    for (name, edns) in [
        ("plain.opt-first.test", false),
        ("edns.opt-first.test", true),
    ] {
        let opts = Ask {
            edns,
            ..Ask::default()
        };
        let raw = ask_raw(srv.addr(), Proto::Udp, name, RecordType::A, &opts);
        assert!(
            !raw.windows(7).any(|w| w == b"up-nsid"),
            "{name}: the upstream's NSID reached the client"
        );
        let m = Message::from_vec(&raw).expect("still a message");
        assert_eq!(m.answers.len(), 1, "{name}");
        assert_eq!(
            m.additionals.first().map(|r| r.name.to_ascii()),
            Some(format!("{name}.")),
            "{name}: the record after the OPT still names the question"
        );
    }
}
