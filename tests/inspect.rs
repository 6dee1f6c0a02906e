//! Looking inside answers: a C2 name hidden behind a CNAME chain or an HTTPS target is sinkholed too.

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

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
