//! Retro-hunt: names queried before anyone listed them are found in the query log once a new list names them.

mod common;

use common::*;

#[test]
fn hunt_finds_earlier_queries_for_newly_published_indicators() {
    let dir = tempdir("hunt");
    let c = C2sink::start_in(
        &dir,
        "akamaicontainer.com\n",
        &format!(
            "[log]\nevents = \"{}\"\nqueries = \"queries.log\"\n[clients]\nnames = {{ \"127.0.0.2\" = \"laptop-a\" }}\n",
            dir.join("events.log").display()
        ),
    );
    // Weeks ago (in the test: now), before the indicator was known: forwarded as normal traffic.
    c.udp("127.0.0.2", "update.evil-new.example", 1);
    c.udp("127.0.0.2", "update.evil-new.example", 28);
    c.tcp("127.0.0.3", "evil-new.example", 1);
    c.udp("127.0.0.4", "example.org", 1);
    // A C2 name asked five times at once: the event log folds the last four into one line with `count`.
    for _ in 0..5 {
        c.udp("127.0.0.5", "akamaicontainer.com", 1);
    }
    c.stop();
    let queries = dir.join("queries.log");
    assert_eq!(json_lines(&queries).len(), 9);
    assert_eq!(json_lines(&dir.join("events.log")).len(), 2);

    let list = dir.join("published-today.txt");
    std::fs::write(&list, "# new indicators\nevil-new.example\nnot a domain!\n").unwrap();
    let (code, out, err) = run(&[
        "hunt",
        "--list",
        list.to_str().unwrap(),
        "--format",
        "json",
        queries.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("published-today.txt:3:"),
        "bad list lines are named: {err}"
    );
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["hits"], 3);
    let clients = h["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2, "{out}");
    let a = clients.iter().find(|c| c["id"] == "laptop-a").unwrap();
    assert_eq!(a["hits"], 2);
    assert_eq!(a["names"][0]["qname"], "update.evil-new.example");
    assert_eq!(a["names"][0]["rule"], "evil-new.example");
    assert_eq!(a["names"][0]["outcomes"], serde_json::json!(["forwarded"]));
    let b = clients.iter().find(|c| c["id"] == "127.0.0.3").unwrap();
    assert_eq!(b["hits"], 1);

    // The table names the machine; event logs can be hunted too.
    let (code, table, _) = run(&[
        "hunt",
        "--list",
        list.to_str().unwrap(),
        queries.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(table.starts_with("hunt: 3 hits from 2 clients"), "{table}");
    assert!(table.contains("laptop-a"), "{table}");
    let old = dir.join("old.txt");
    std::fs::write(&old, "akamaicontainer.com\n").unwrap();
    let hunt = |logs: &[&std::path::Path]| -> serde_json::Value {
        let mut args = vec!["hunt", "--list", old.to_str().unwrap(), "--format", "json"];
        args.extend(logs.iter().map(|p| p.to_str().unwrap()));
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let events = dir.join("events.log");
    let h = hunt(&[&events]);
    assert_eq!(
        h["clients"][0]["names"][0]["outcomes"],
        serde_json::json!(["blocked"])
    );
    assert_eq!(h["hits"], 5, "the folded line counts its queries: {h}");
    // A blocked query is in both logs; hunted in both (in either order), it is still one hit.
    for logs in [
        [queries.as_path(), events.as_path()],
        [events.as_path(), queries.as_path()],
    ] {
        let h = hunt(&logs);
        assert_eq!(h["hits"], 5, "{logs:?}: {h}");
        assert_eq!(h["clients"][0]["names"][0]["hits"], 5, "{logs:?}: {h}");
    }

    // Nothing found: exit 1, like grep. Unreadable list: exit 2 naming it.
    std::fs::write(&old, "never-seen.example\n").unwrap();
    assert_eq!(
        run(&[
            "hunt",
            "--list",
            old.to_str().unwrap(),
            queries.to_str().unwrap()
        ])
        .0,
        1
    );
    let (code, _, err) = run(&[
        "hunt",
        "--list",
        "/nonexistent/list.txt",
        queries.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/list.txt"), "{err}");
}

/// A C2 name published later may have been reached behind an innocent one (`app.example CNAME c2.example`,
/// CDN cloaking): the query log keeps what each answer pointed at, and `hunt` finds the machine through it.
#[test]
fn hunt_finds_a_c2_name_reached_behind_a_cname() {
    let dir = tempdir("hunt-chain");
    let up = Upstream::start();
    let queries = dir.join("queries.log");
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{}\"]\n\
         [log]\nqueries = \"{}\"\n",
        up.addr,
        queries.display()
    );
    let c = C2sink::start(&cfg, &[]);
    // Forwarded, then answered from the cache: both lines keep the chain.
    for _ in 0..2 {
        assert_eq!(
            rcode_and_answers(&c.udp("127.0.0.2", "app.cname-ok.test", 1)),
            (0, 2)
        );
    }
    c.udp("127.0.0.3", "www.other.test", 1);
    c.stop();
    let lines = json_lines(&queries);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["chain"], serde_json::json!(["www.example.test"]));
    assert!(lines[2].get("chain").is_none(), "{}", lines[2]);

    let list = dir.join("published-later.txt");
    let h = hunt_json(&list, "www.example.test\n", &queries);
    assert_eq!(h["hits"], 2, "{h}");
    let clients = h["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{h}");
    assert_eq!(clients[0]["ips"], serde_json::json!(["127.0.0.2"]));
    let name = &clients[0]["names"][0];
    assert_eq!(name["qname"], "app.cname-ok.test");
    assert_eq!(name["via"], serde_json::json!(["www.example.test"]));
    assert_eq!(name["rule"], "www.example.test");
    assert_eq!(name["outcomes"], serde_json::json!(["cached", "forwarded"]));
    let (_, table, _) = run(&[
        "hunt",
        "--list",
        list.to_str().unwrap(),
        queries.to_str().unwrap(),
    ]);
    assert!(
        table.contains("app.cname-ok.test via www.example.test"),
        "{table}"
    );
}

/// A query blocked by its answer (`app.cname-ok.test CNAME www.example.test`, the target listed) keeps the
/// chain in the query log as a forwarded one does: a hunt of the query log alone finds the machine, and
/// says which name of the answer it was.
#[test]
fn a_query_blocked_by_its_answer_keeps_its_chain_for_hunt() {
    let dir = tempdir("hunt-blocked-chain");
    let up = Upstream::start();
    let queries = dir.join("queries.log");
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n[upstream]\nservers = [\"{}\"]\n\
         [[blocklists]]\nname = \"c2\"\npath = \"list.txt\"\n[log]\nqueries = \"{}\"\n",
        up.addr,
        queries.display()
    );
    let c = C2sink::start(&cfg, &[("list.txt", "www.example.test\n")]);
    // The answer from upstream, then the same answer from the cache: both blocked by its CNAME target
    // (the sinkhole's one 0.0.0.0, not the upstream's CNAME and A).
    for _ in 0..2 {
        assert_eq!(
            rcode_and_answers(&c.udp("127.0.0.4", "app.cname-ok.test", 1)),
            (0, 1)
        );
    }
    c.stop();
    let lines = json_lines(&queries);
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["outcome"], "blocked", "{l}");
        assert_eq!(l["chain"], serde_json::json!(["www.example.test"]), "{l}");
    }
    let h = hunt_json(&dir.join("iocs.txt"), "www.example.test\n", &queries);
    assert_eq!(h["hits"], 2, "{h}");
    let name = &h["clients"][0]["names"][0];
    assert_eq!(name["qname"], "app.cname-ok.test");
    assert_eq!(name["via"], serde_json::json!(["www.example.test"]));
    assert_eq!(name["outcomes"], serde_json::json!(["blocked"]));
}

/// Writes `list` with `names` and runs `c2sink hunt --format json` on `log`, which must find something.
fn hunt_json(list: &std::path::Path, names: &str, log: &std::path::Path) -> serde_json::Value {
    std::fs::write(list, names).unwrap();
    let (code, out, err) = run(&[
        "hunt",
        "--list",
        list.to_str().unwrap(),
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}
