//! What the event log costs: the query path's `record_block()` (enqueue only) and the writer's throughput to a
//! file with rotation. Run: cargo run --release --example events_cost   (temp files only; a few seconds)

use c2sink::clients::{Attribution, Mac};
use c2sink::config::Config;
use c2sink::events::{BlockView, Events, Protocol, RuleText};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

const N: u64 = 500_000;

fn main() {
    let dir = std::env::temp_dir().join(format!("c2sink-events-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n\
                    [log]\nevents = \"events.log\"\nrotate_size = \"50MB\"\nkeep = 3\n";
    let cfg = Config::parse(cfg_text, &dir.join("c2sink.toml")).unwrap();
    let mut events = Events::from_config(&cfg, None).unwrap();
    let list: Arc<str> = Arc::from("3cx");
    let who = Attribution {
        mac: Mac::parse("3c:52:82:11:22:33"),
        hostname: Some(Arc::from("reception-pc")),
        subnet: None,
    };
    let t = Instant::now();
    let mut enqueue_ns = 0u128;
    for i in 0..N {
        let ev = BlockView {
            time: SystemTime::now(),
            client: format!("10.0.{}.{}:5353", (i >> 8) as u8, i as u8)
                .parse()
                .unwrap(),
            protocol: Protocol::Udp,
            qname: "akamaicontainer.com",
            qtype: 1,
            list: &list,
            rule: RuleText {
                wildcard: false,
                name: "akamaicontainer.com",
            },
            action: "null",
            who: &who,
            via: None,
            chain: &[],
        };
        let e = Instant::now();
        events.record_block(ev);
        enqueue_ns += e.elapsed().as_nanos();
    }
    let stats = events.stats();
    events.close();
    let total = t.elapsed();
    let written = stats.written.load(Ordering::Relaxed);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    println!(
        "{N} events: record_block() {:.0} ns each on the caller; {written} written, {dropped} dropped (queue full) in {total:?} = {:.0} events/s",
        enqueue_ns as f64 / N as f64,
        written as f64 / total.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
