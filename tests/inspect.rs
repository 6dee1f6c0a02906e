//! Looking inside answers: a C2 name hidden behind a CNAME chain or an HTTPS target is sinkholed too.

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use std::time::Duration;

#[test]
fn cname_chain_into_blocked_name_is_sinkholed_with_via_and_chain() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    for proto in [Proto::Udp, Proto::Tcp] {
        let m = ask_simple(srv.addr(), proto, "innocent.cname-c2.test", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            m.answers.len(),
            1,
            "{proto:?}: the whole answer replaced by the sinkhole answer"
        );
        assert_eq!(m.answers[0].data, RData::A("0.0.0.0".parse().expect("ip")));
        assert_eq!(m.answers[0].name.to_ascii(), "innocent.cname-c2.test.");
    }
    let ev = srv.events(2);
    assert_eq!(ev.len(), 2);
    let e = &ev[0];
    assert_eq!(e["qname"], "innocent.cname-c2.test");
    assert_eq!(e["via"], "cdn.msstorageazure.com");
    assert_eq!(e["rule"], "msstorageazure.com");
    assert_eq!(e["list"], "3cx");
    assert_eq!(
        e["chain"],
        serde_json::json!(["hop.cname-ok.test", "cdn.msstorageazure.com"])
    );
    // The second ask came from the cache, and was inspected there too.
    assert_eq!(up.count("innocent.cname-c2.test"), 1);
}

#[test]
fn https_record_targeting_blocked_name_is_sinkholed() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let m = ask_simple(
        srv.addr(),
        Proto::Udp,
        "svc.https-c2.test",
        RecordType::HTTPS,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "NODATA instead of the HTTPS record");
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    let ev = srv.events(1);
    assert_eq!(ev[0]["via"], "msstorageazure.com");
    assert_eq!(ev[0]["qtype"], "HTTPS");
}

#[test]
fn innocent_cname_chain_passes_through_untouched() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], "[cache]\nsize = 0\n"), &[]);
    let direct = ask_simple(up.addr, Proto::Udp, "app.cname-ok.test", RecordType::A);
    let mut via = ask_simple(srv.addr(), Proto::Udp, "app.cname-ok.test", RecordType::A);
    via.metadata.id = direct.metadata.id;
    assert_eq!(via, direct);
    assert_eq!(via.answers.len(), 2);
    assert!(srv.events(0).is_empty());
}

const C2_NETS: &str = "# C2 networks\n198.51.100.0/24\n2001:db8:bad::/48\n";

fn with_ip_list(up: &Upstream, ips: &str, extra: &str) -> C2sink {
    let cfg = config(
        &[up.addr],
        &format!("[[blocklists]]\nname = \"c2-ips\"\nkind = \"ip\"\npath = \"ips.txt\"\n{extra}"),
    );
    C2sink::start(
        &cfg,
        &[("ips.txt", ips), ("allow.txt", "trusted.c2addr.test\n")],
    )
}

#[test]
fn answer_with_listed_address_is_sinkholed_with_address_and_rule() {
    let up = Upstream::start();
    let srv = with_ip_list(&up, C2_NETS, "");
    let m = ask_simple(srv.addr(), Proto::Udp, "www.c2addr.test", RecordType::A);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].data, RData::A("0.0.0.0".parse().expect("ip")));
    let m = ask_simple(srv.addr6(), Proto::Tcp, "www.c2addr.test", RecordType::AAAA);
    assert_eq!(m.answers[0].data, RData::AAAA("::".parse().expect("ip")));
    let ev = srv.events(2);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["list"], "c2-ips");
    assert_eq!(ev[0]["rule"], "198.51.100.0/24");
    assert_eq!(ev[0]["via"], "198.51.100.7");
    assert_eq!(ev[1]["rule"], "2001:db8:bad::/48");
    assert_eq!(ev[1]["via"], "2001:db8:bad::7");
    // Addresses outside the lists pass.
    let m = ask_simple(srv.addr(), Proto::Udp, "www.example.test", RecordType::A);
    assert_eq!(
        m.answers[0].data,
        RData::A("192.0.2.1".parse().expect("ip"))
    );
}

/// An HTTPS record's `ipv4hint`/`ipv6hint` (RFC 9460) lets a browser connect without asking for A or AAAA:
/// a listed address there is sinkholed like one in an A record.
#[test]
fn a_listed_address_in_an_https_hint_is_sinkholed() {
    let up = Upstream::start();
    let direct = ask_simple(
        up.addr,
        Proto::Udp,
        "www.https-hint.test",
        RecordType::HTTPS,
    );
    assert_eq!(direct.answers.len(), 1, "the upstream gives the hints");
    for (nets, rule, via) in [
        ("198.51.100.0/24\n", "198.51.100.0/24", "198.51.100.7"),
        (
            "2001:db8:bad::/48\n",
            "2001:db8:bad::/48",
            "2001:db8:bad::7",
        ),
    ] {
        let srv = with_ip_list(&up, nets, "");
        let m = ask_simple(
            srv.addr(),
            Proto::Udp,
            "www.https-hint.test",
            RecordType::HTTPS,
        );
        assert!(
            !m.answers
                .iter()
                .any(|r| r.record_type() == RecordType::HTTPS),
            "{rule}: the hints reached the client: {m:?}"
        );
        let ev = srv.events(1);
        assert_eq!(ev[0]["qname"], "www.https-hint.test");
        assert_eq!(ev[0]["list"], "c2-ips");
        assert_eq!(ev[0]["rule"], rule);
        assert_eq!(ev[0]["via"], via);
    }
    // Hints outside the lists pass, whole.
    let srv = with_ip_list(&up, "203.0.113.0/24\n", "");
    let mut m = ask_simple(
        srv.addr(),
        Proto::Udp,
        "www.https-hint.test",
        RecordType::HTTPS,
    );
    m.metadata.id = direct.metadata.id;
    assert_eq!(m.answers, direct.answers);
    assert!(srv.events(0).is_empty());
}

/// Asks for `name` until the answer is the sinkhole's 0.0.0.0 (a reload is asynchronous); panics after [`PATIENCE`].
fn wait_for_sinkhole(srv: &C2sink, proto: Proto, name: &str) {
    let sinkhole = RData::A("0.0.0.0".parse().expect("ip"));
    let answer = || {
        ask_simple(srv.addr(), proto, name, RecordType::A).answers[0]
            .data
            .clone()
    };
    let got = poll(PATIENCE, Duration::from_millis(100), answer, |a| {
        *a == sinkhole
    });
    assert_eq!(
        got, sinkhole,
        "{name}: the list change never applied to its cached answer"
    );
}

#[test]
fn address_list_changes_apply_to_cached_answers_at_once() {
    let up = Upstream::start();
    // Cached while the list does not have it ...
    let srv = with_ip_list(&up, "203.0.113.0/24\n", "");
    // (the second answer comes from the cache, which then remembers that these lists passed it)
    for _ in 0..2 {
        let m = ask_simple(srv.addr(), Proto::Udp, "cached.c2addr.test", RecordType::A);
        assert_eq!(
            m.answers[0].data,
            RData::A("198.51.100.7".parse().expect("ip"))
        );
    }
    // ... and blocked from the cache once it does.
    std::fs::write(srv.path("ips.txt"), "198.51.100.7\n").expect("write");
    srv.signal("HUP");
    wait_for_sinkhole(&srv, Proto::Udp, "cached.c2addr.test");
    assert_eq!(
        up.count("cached.c2addr.test"),
        1,
        "the second answer came from the cache"
    );
}

#[test]
fn a_name_listed_after_its_answer_was_cached_is_blocked_from_the_cache_at_once() {
    let up = Upstream::start();
    let cfg = config(
        &[up.addr],
        "[[blocklists]]\nname = \"late\"\npath = \"late.txt\"\n",
    );
    let srv = C2sink::start(&cfg, &[("late.txt", "other.example\n")]);
    // Forwarded once, then answered from the cache, which remembers that these lists passed it.
    for _ in 0..3 {
        let m = ask_simple(srv.addr(), Proto::Udp, "www.example.test", RecordType::A);
        assert_eq!(
            m.answers[0].data,
            RData::A("192.0.2.1".parse().expect("ip"))
        );
    }
    assert_eq!(up.count("www.example.test"), 1);
    // The new lists must not trust what the old ones passed.
    std::fs::write(srv.path("late.txt"), "example.test\n").expect("write");
    srv.signal("HUP");
    wait_for_sinkhole(&srv, Proto::Tcp, "www.example.test");
    let ev = srv.events(1);
    assert_eq!(ev[0]["qname"], "www.example.test");
    assert_eq!(ev[0]["list"], "late");
    assert_eq!(ev[0]["rule"], "example.test");
    assert_eq!(
        up.count("www.example.test"),
        1,
        "never asked upstream again"
    );
}

#[test]
fn allowed_question_is_not_blocked_by_its_answer() {
    let up = Upstream::start();
    let srv = with_ip_list(
        &up,
        C2_NETS,
        "[[blocklists]]\nname = \"ok\"\nkind = \"allow\"\npath = \"allow.txt\"\n",
    );
    let m = ask_simple(srv.addr(), Proto::Udp, "trusted.c2addr.test", RecordType::A);
    assert_eq!(
        m.answers[0].data,
        RData::A("198.51.100.7".parse().expect("ip"))
    );
    assert!(srv.events(0).is_empty());
}

#[test]
fn an_answer_dropped_by_an_rpz_rule_on_its_cname_target_is_logged_as_blocked() {
    let up = Upstream::start();
    let rpz = "$TTL 300\n$ORIGIN rpz.local.\n@ SOA ns.rpz.local. admin.rpz.local. 1 3600 600 86400 300\n\
               NS ns.rpz.local.\nwww.example.test CNAME rpz-drop.\n";
    let extra =
        "queries = \"queries.jsonl\"\n[[blocklists]]\nname = \"rpz\"\npath = \"drop.rpz\"\n";
    let srv = C2sink::start(&config(&[up.addr], extra), &[("drop.rpz", rpz)]);
    // `*.cname-ok.test` is a CNAME to www.example.test: the rule drops the answer (no reply at all).
    let q = query(0x4d01, "x.cname-ok.test", TYPE_A);
    assert_eq!(udp_ask(srv.addr(), &q), None, "rpz-drop: no answer");
    assert_eq!(up.count("x.cname-ok.test"), 1);
    let lines = poll(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || json_lines(&srv.path("queries.jsonl")),
        |l| !l.is_empty(),
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["qname"], "x.cname-ok.test");
    assert_eq!(lines[0]["outcome"], "blocked");
    let ev = srv.events(1);
    assert_eq!(ev[0]["list"], "rpz");
    assert_eq!(ev[0]["via"], "www.example.test");
}

/// A UDP listener whose recent queries were cache hits asks the cache before the lists (it is cheaper for a
/// stream of cached names); a list change must still apply to the cached answer at once. One client socket
/// keeps every query on the same listening socket, so its thread really is leaning to the cache.
#[test]
fn a_listener_that_asks_the_cache_first_still_blocks_a_newly_listed_name() {
    let up = Upstream::start();
    let cfg = config(
        &[up.addr],
        "[[blocklists]]\nname = \"late\"\npath = \"late.txt\"\n",
    );
    let srv = C2sink::start(&cfg, &[("late.txt", "other.example\n")]);
    let sock = udp_client("127.0.0.1", Duration::from_secs(3));
    let ask = |name: &str| -> Vec<std::net::Ipv4Addr> {
        let (_, raw) = query_bytes(name, RecordType::A, &Ask::default());
        sock.send_to(&raw, srv.addr()).expect("send");
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("an answer");
        assert_eq!(buf[..2], raw[..2], "the answer to this query");
        parse(&buf[..n]).expect("a DNS answer").addrs()
    };
    let real: Vec<std::net::Ipv4Addr> = vec!["192.0.2.1".parse().expect("ip")];
    // Forwarded once, then many cache hits: the listener's thread now leans to the cache.
    for _ in 0..12 {
        assert_eq!(ask("www.example.test"), real);
    }
    assert_eq!(up.count("www.example.test"), 1);
    std::fs::write(srv.path("late.txt"), "example.test\n").expect("write");
    srv.signal("HUP");
    let sinkhole: Vec<std::net::Ipv4Addr> = vec!["0.0.0.0".parse().expect("ip")];
    let got = poll(
        PATIENCE,
        Duration::from_millis(50),
        || ask("www.example.test"),
        |a| *a == sinkhole,
    );
    assert_eq!(got, sinkhole, "the cached answer outlived the list change");
    assert_eq!(
        up.count("www.example.test"),
        1,
        "never asked upstream again"
    );
    // Blocked names now come one after another: the thread turns back to the lists first, and a cached
    // name asked in between is still answered from the cache.
    for _ in 0..12 {
        assert_eq!(ask("x.example.test"), sinkhole);
    }
    assert_eq!(ask("cached.c2addr.test").len(), 1);
    assert_eq!(ask("cached.c2addr.test").len(), 1);
    assert_eq!(up.count("cached.c2addr.test"), 1);
}
