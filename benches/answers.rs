//! What looking inside answers costs (CNAME/HTTPS targets and addresses are collected once per upstream
//! answer and re-checked on cache hits): the shape walk and the cache hit for a plain A answer (the common
//! case, which must not get slower) against an answer with a CNAME chain.

use c2sink::cache::Cache;
use c2sink::config::CacheConfig;
use c2sink::wire;
use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::hint::black_box;
use std::str::FromStr;

fn name(s: &str) -> Name {
    Name::from_str(s).expect("name")
}

/// A query for `qname` A and the answer: `chain` CNAMEs, then an A record.
fn exchange(qname: &str, chain: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let mut q = Message::new(0x1234, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(name(qname), RecordType::A));
    let query = q.to_vec().expect("encode");
    let mut r = Message::new(0x1234, MessageType::Response, OpCode::Query);
    r.add_query(Query::query(name(qname), RecordType::A));
    let mut owner = name(qname);
    for t in chain {
        r.add_answer(Record::from_rdata(
            owner.clone(),
            300,
            RData::CNAME(CNAME(name(t))),
        ));
        owner = name(t);
    }
    r.add_answer(Record::from_rdata(
        owner,
        300,
        RData::A(A::new(192, 0, 2, 1)),
    ));
    (query, r.to_vec().expect("encode"))
}

fn bench(c: &mut Criterion) {
    let plain = exchange("www.example.com.", &[]);
    let cname = exchange(
        "www.example.com.",
        &["edge.cdn.example.net.", "a1.cdn.example.net."],
    );
    for (label, (query, answer)) in [("a_only", &plain), ("cname_chain", &cname)] {
        c.bench_function(&format!("answer_shape/{label}"), |b| {
            b.iter(|| black_box(wire::answer_shape(black_box(answer)).expect("shape")))
        });
        let cache = Cache::new(&CacheConfig::default()).expect("cache");
        let q = wire::parse_query(query).expect("query");
        let shape = wire::answer_shape(answer).expect("shape");
        assert!(cache.put(&q, answer, &shape));
        c.bench_function(&format!("cache_hit/{label}"), |b| {
            b.iter(|| {
                let q = wire::parse_query(black_box(query)).expect("query");
                black_box(cache.get(&q, query).expect("hit"))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
