//! Raw packet in, reply out, through c2sink's own handler: admission, then `Pipeline::decide` (parse, protocol
//! rules, lists, sinkhole, cache). Every reply must be a well-formed DNS message answering the packet's ID.
#![no_main]

use c2sink::admission::{Admission, Admit};
use c2sink::blocklist::Lists;
use c2sink::config::{Config, EventSink};
use c2sink::events::{Events, Protocol};
use c2sink::pipeline::{Client, Decision, Pipeline};
use c2sink::wire;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::OnceLock;

struct Handler {
    admission: Admission,
    pipeline: Pipeline,
}

fn handler() -> &'static Handler {
    static H: OnceLock<Handler> = OnceLock::new();
    H.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("c2sink-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("list.txt"),
            "evil.example\nmsstorageazure.com\na.b\n",
        )
        .expect("list");
        let text = "[server]\nlisten = [\"127.0.0.1:0\"]\nrate_limit = 1000000\n\
                    [upstream]\nservers = [\"127.0.0.1:9\"]\n\
                    [[blocklists]]\nname = \"c2\"\npath = \"list.txt\"\n";
        let cfg = Config::parse(text, &dir.join("c2sink.toml")).expect("config");
        let lists = Lists::load(&cfg).expect("lists");
        let events = Events::start(&EventSink::File("/dev/null".into())).expect("events");
        Handler {
            admission: Admission::new(&cfg.server).expect("admission"),
            pipeline: Pipeline::new(&cfg, lists, events),
        }
    })
}

fn check_reply(raw: &[u8], reply: &[u8]) {
    let shape = wire::answer_shape(reply).expect("reply must be a well-formed message");
    assert!(shape.header.is_response());
    assert_eq!(&reply[..2], &raw[..2], "reply keeps the query's ID");
}

fuzz_target!(|data: &[u8]| {
    let h = handler();
    let src: SocketAddr = "127.0.0.1:5353".parse().expect("addr");
    match h.admission.check(src.ip(), data) {
        Admit::Pass => {}
        Admit::Reply(r) => return check_reply(data, &r),
        Admit::Drop => return,
    }
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        match h.pipeline.decide(
            data,
            &Client {
                addr: src,
                protocol,
                from_host: false,
            },
        ) {
            Decision::Reply(r) => {
                check_reply(data, &r);
                if protocol == Protocol::Udp {
                    let limit = wire::parse_query(data).map_or(512, |q| q.udp_limit());
                    assert!(
                        r.len() <= limit.max(512),
                        "UDP reply fits the client's buffer"
                    );
                }
            }
            Decision::Forward => {
                // What would go upstream must be a readable query; its SERVFAIL must be well formed.
                let q = wire::parse_query(data).expect("forwarded queries parse");
                check_reply(data, &h.pipeline.servfail(data, &q));
            }
            Decision::Drop => {}
        }
    }
});
