//! What client attribution costs: the per-query lookup, and the background re-read of big lease files.
//! Run: cargo run --release --example clients_cost
//! (Loopback/temp files only; a few seconds of one core.)

use c2sink::clients::{Clients, leases};
use c2sink::config::{Config, LeaseFormat};
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

const HOSTS: u32 = 20_000;

fn ip(i: u32) -> IpAddr {
    IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn mac(i: u32) -> String {
    format!(
        "aa:00:00:{:02x}:{:02x}:{:02x}",
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8
    )
}

fn main() {
    let dir = std::env::temp_dir().join(format!("c2sink-clients-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut arp = String::from(
        "IP address       HW type     Flags       HW address            Mask     Device\n",
    );
    let mut lease = String::new();
    for i in 0..HOSTS {
        arp.push_str(&format!("{} 0x1 0x2 {} * eth0\n", ip(i), mac(i)));
        lease.push_str(&format!("4000000000 {} {} host-{i} *\n", mac(i), ip(i)));
    }
    std::fs::write(dir.join("arp"), &arp).unwrap();
    std::fs::write(dir.join("leases"), &lease).unwrap();
    let cfg_text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n\
                    [clients]\narp = \"arp\"\nndp = false\nrefresh_ms = 3600000\n\
                    leases = [{ format = \"dnsmasq\", path = \"leases\" }]\n";
    let cfg = Config::parse(cfg_text, &dir.join("c2sink.toml")).unwrap();

    let t = Instant::now();
    let clients = Clients::start(&cfg);
    println!(
        "initial read of {HOSTS} ARP entries + {HOSTS} leases: {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let parsed = leases::parse(LeaseFormat::Dnsmasq, &lease, 0);
    println!(
        "parse {} dnsmasq leases: {:?}",
        parsed.leases.len(),
        t.elapsed()
    );

    let query = [0u8, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
    for (what, n) in [
        ("lookup (query log)", 2_000_000u32),
        ("attribute (block event)", 2_000_000),
    ] {
        let t = Instant::now();
        let mut found = 0usize;
        for k in 0..n {
            let a = ip(k % (HOSTS + 1000));
            if what.starts_with("lookup") {
                found += usize::from(black_box(clients.lookup(a)).hostname.is_some());
            } else {
                found += usize::from(black_box(clients.attribute(a, &query)).hostname.is_some());
            }
        }
        let per = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!("{what}: {per:.0} ns/query ({found} of {n} known)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
