//! Negative answers in the cache (RFC 2308): NXDOMAIN and NODATA, with or without a CNAME before them, are
//! kept and shown by their SOA's negative TTL, min(TTL, MINIMUM), within `negative_max_ttl`, and no longer
//! than any record in them.

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::time::Duration;

/// The type and TTL of each record of a section.
type Ttls = Vec<(RecordType, u32)>;

/// The TTLs of `m`'s answer records, then of its authority records.
fn ttls(m: &Message) -> (Ttls, Ttls) {
    let of =
        |rs: &[hickory_proto::rr::Record]| rs.iter().map(|r| (r.record_type(), r.ttl)).collect();
    (of(&m.answers), of(&m.authorities))
}

#[test]
fn nodata_behind_a_cname_is_kept_and_shown_as_a_negative_answer() {
    let up = Upstream::start();
    let cache = "[cache]\nmin_ttl = 60\nmax_ttl = 100\nnegative_max_ttl = 30\n";
    let srv = C2sink::start(&config(&[up.addr], cache), &[]);
    let name = "x.nodata-cname.test";
    // Upstream: CNAME (TTL 3600), SOA (TTL 3600, MINIMUM 5), no A. NODATA: `min_ttl` does not raise it.
    let first = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        ttls(&first),
        (vec![(RecordType::CNAME, 30)], vec![(RecordType::SOA, 5)]),
        "CNAME within negative_max_ttl, SOA by min(TTL, MINIMUM)"
    );
    let cached = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
    assert_eq!(up.count(name), 1, "from the cache");
    let (answer, authority) = ttls(&cached);
    assert!(answer[0].1 <= 30 && authority[0].1 <= 5, "{cached:?}");
    // Kept for the SOA's MINIMUM (5 s), not `min_ttl` (60 s).
    std::thread::sleep(Duration::from_secs(6));
    let again = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
    assert_eq!(up.count(name), 2, "asked upstream again once expired");
    assert_eq!(ttls(&again), ttls(&first));
}

#[test]
fn a_negative_answers_soa_is_shown_with_its_negative_ttl() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    // The test zone's SOA has TTL 300 and MINIMUM 120: a negative answer is kept 120 s, and said to be.
    for (name, qtype, rcode) in [
        ("x.nxdomain.test", RecordType::A, ResponseCode::NXDomain),
        ("x.nodata.test", RecordType::TXT, ResponseCode::NoError),
    ] {
        let first = ask_simple(srv.addr(), Proto::Udp, name, qtype);
        assert_eq!(first.metadata.response_code, rcode, "{name}");
        assert_eq!(
            ttls(&first),
            (vec![], vec![(RecordType::SOA, 120)]),
            "{name}: the first client"
        );
        let cached = ask_simple(srv.addr(), Proto::Udp, name, qtype);
        assert_eq!(up.count(name), 1, "{name}: from the cache");
        let soa = cached.authorities[0].ttl;
        assert!(
            (115..=120).contains(&soa),
            "{name}: counts down from 120: {soa}"
        );
    }
}

#[test]
fn a_cname_before_an_nxdomain_is_not_served_past_its_ttl() {
    let up = Upstream::start();
    let srv = C2sink::start(&config(&[up.addr], ""), &[]);
    let name = "x.nx-cname.test";
    // Upstream: CNAME (TTL 2) to a name that does not exist, SOA (TTL 300, MINIMUM 120).
    let first = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
    assert_eq!(first.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        ttls(&first),
        (vec![(RecordType::CNAME, 2)], vec![(RecordType::SOA, 120)])
    );
    let cached = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
    assert_eq!(cached.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.count(name), 1, "from the cache");
    // Once the CNAME's TTL is up the answer goes with it, not after the SOA's 120 s.
    std::thread::sleep(Duration::from_secs(3));
    let again = ask_simple(srv.addr(), Proto::Udp, name, RecordType::A);
    assert_eq!(
        up.count(name),
        2,
        "asked upstream again once the CNAME expired"
    );
    assert_eq!(
        ttls(&again),
        ttls(&first),
        "a fresh answer, not a CNAME with TTL 0"
    );
}
