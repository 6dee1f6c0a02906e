//! The wire readers on their own: query parsing, answer shape (what upstream answers pass through), the
//! lenient EDNS finder used for error replies, and the error replies built from any input.
#![no_main]

use c2sink::{protocol, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = wire::parse_query(data) {
        assert!(q.name.len() <= 4 * 255);
        assert!(q.question.len() >= 5);
        let _ = q.udp_limit();
    }
    if let Ok(shape) = wire::answer_shape(data) {
        // Every TTL offset must point inside the message, as the cache patches them.
        for &off in &shape.ttl_offsets {
            assert!((off as usize) + 4 <= data.len());
        }
    }
    // The addresses address lists check, SVCB/HTTPS hints among them.
    let _ = wire::answer_addresses(data);
    let _ = protocol::find_edns(data);
    if data.len() >= 12 {
        for rcode in [
            protocol::RCODE_FORMERR,
            protocol::RCODE_REFUSED,
            protocol::RCODE_BADVERS,
        ] {
            let r = protocol::error_reply(data, rcode);
            wire::answer_shape(&r).expect("error replies are well formed");
        }
    }
});
