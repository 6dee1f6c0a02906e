#!/usr/bin/env python3
"""Prints the bench table (markdown) from the CSV rows written by measure.sh.

Each (server, workload, mode) cell is the median of its runs (one per round); runs where other processes used
more than --other-max % of a core are left out when the cell has quieter runs, and the cell is marked '*' when it
has none. Lost queries are summed over the runs.
"""
import argparse
import csv
import os
import statistics
from collections import defaultdict

ORDER = ["c2sink", "c2sink-1m", "c2sink-base", "unbound", "unbound-log", "dnsmasq"]
WORKLOADS = ["blocked", "cached", "mixed", "variety", "miss"]


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--other-max", type=float, default=25)
    ap.add_argument("--fixed-qps", default="30000")
    ap.add_argument("--miss-qps", default="10000")
    ap.add_argument("--paired", help="CSV of run.sh's PAIRED phase (both servers measured in the same seconds)")
    ap.add_argument("--paired-qps", default="15000")
    ap.add_argument("--paired-slice-us", default="0", help="the slice the partners that are not c2sink were given")
    ap.add_argument("--turns-qps", default="30000")
    ap.add_argument("--turns-secs", default="1")
    a = ap.parse_args()

    runs = defaultdict(list)
    if not os.path.exists(a.csv):  # ROUNDS=0: the side-by-side runs only
        if a.paired:
            paired(a)
        return
    with open(a.csv) as f:
        for r in csv.DictReader(f):
            runs[(r["server"], r["workload"], r["mode"])].append(r)

    def summary(rows):
        quiet = [r for r in rows if (num(r["other_cpu_pct"]) or 0) <= a.other_max] or rows
        out = {}
        for col in rows[0]:
            vals = [num(r[col]) for r in quiet if num(r[col]) is not None]
            out[col] = statistics.median(vals) if vals else None
        out["lost"] = sum(num(r["lost"]) or 0 for r in rows)
        out["runs"] = len(rows)
        return out

    best = {k: summary(v) for k, v in runs.items()}

    def round_ratios(other, base, w, m, col):
        """Ratios of the k-th run of `other` to the k-th run of `base` (the same round): the noise band."""
        xs = [num(r[col]) for r in runs.get((other, w, m), [])]
        ys = [num(r[col]) for r in runs.get((base, w, m), [])]
        return [x / y for x, y in zip(xs, ys) if x is not None and y]

    servers = [s for s in ORDER if any(k[0] == s for k in best)]
    servers += sorted({k[0] for k in best} - set(servers))
    workloads = [w for w in WORKLOADS if any(k[1] == w for k in best)]

    def cell(s, w, m, col, fmt="{:.2f}"):
        r = best.get((s, w, m))
        if r is None or r[col] is None:
            return "-"
        noisy = "*" if (r["other_cpu_pct"] or 0) > a.other_max else ""
        return fmt.format(r[col]) + noisy

    def val(s, w, m, col):
        r = best.get((s, w, m))
        return None if r is None else r[col]

    def dnsperf_bound(s, w):
        """The saturation run measured dnsperf, not the server: dnsperf had all its core, the server had idle time."""
        r = best.get((s, w, "sat"))
        return r is not None and (r["dnsperf_cpu_pct"] or 0) >= 95 and (r["server_cpu_pct"] or 100) < 95

    def rss(s, w):
        """Memory after the fill (a full cache) where there was one, else after the saturation run."""
        return val(s, w, "fill", "rss_kb") or val(s, w, "sat", "rss_kb") or val(s, w, "fixed", "rss_kb")

    print()
    print(f"| server | workload | QPS saturated | CPU µs/query (user part) at fixed load | p50 ms | p99 ms "
          f"| lost fixed / sat | RSS MB | other CPU % fixed / sat | runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in servers:
        for w in workloads:
            if not any((s, w, m) in best for m in ("fixed", "sat")):
                continue
            lost = " / ".join(cell(s, w, m, "lost", "{:.0f}") for m in ("fixed", "sat"))
            other = " / ".join(cell(s, w, m, "other_cpu_pct", "{:.0f}") for m in ("fixed", "sat"))
            mem = rss(s, w)
            n_runs = max(val(s, w, m, "runs") or 0 for m in ("fixed", "sat"))
            load = a.miss_qps if w == "miss" else a.fixed_qps
            bound = "†" if dnsperf_bound(s, w) else ""
            print(f"| {s} | {w} | {cell(s, w, 'sat', 'qps', '{:.0f}')}{bound} "
                  f"| {cell(s, w, 'fixed', 'cpu_us_per_q')} ({cell(s, w, 'fixed', 'user_us_per_q')}) @{int(load) // 1000}k "
                  f"| {cell(s, w, 'fixed', 'p50_ms', '{:.3f}')} | {cell(s, w, 'fixed', 'p99_ms', '{:.3f}')} "
                  f"| {lost} | {mem / 1024:.1f} | {other} | {n_runs} |" if mem else
                  f"| {s} | {w} | - | - | - | - | {lost} | - | {other} | {n_runs} |")

    def ratio(x, y):
        return None if x is None or y in (None, 0) else x / y

    def fmt(r, goal=None, higher_better=False, spread=()):
        if r is None:
            return "-"
        ok = "" if goal is None else (" ok" if (r >= goal if higher_better else r <= goal) else " MISS")
        band = f" ({min(spread):.2f}-{max(spread):.2f})" if len(spread) > 1 else ""
        return f"{r:.2f}{ok}{band}"

    for base, other, title, goals in (
        ("unbound", "c2sink", "c2sink / Unbound (goal: QPS >= 1.0, misses >= 1.2; CPU/query, p99, RSS <= 1.0)", True),
        ("unbound-log", "c2sink", "c2sink / Unbound logging each blocked query too (log-local-actions: yes), like for like with c2sink's block events", None),
        ("c2sink", "c2sink-1m", "c2sink with 1M list / c2sink with 3CX list (goal: within 5 %)", False),
        ("c2sink-base", "c2sink", "c2sink / c2sink-base (this build against the one compared with)", None),
        ("c2sink", "c2sink-hickory", "c2sink's pipeline on hickory-server / on c2sink's own socket loops", None),
        ("floor", "c2sink", "c2sink / do-nothing floor (stretch goal: CPU per query within 10 %, i.e. <= 1.10)", "floor"),
        ("floor", "unbound", "Unbound / do-nothing floor (for scale)", None),
    ):
        if base not in servers or other not in servers:
            continue
        print()
        print(f"{title}:")
        print()
        print("| workload | QPS saturated | CPU µs/query | p99 | RSS (after misses: full 100k cache) |")
        print("|---|---:|---:|---:|---:|")
        for w in workloads:
            q = ratio(val(other, w, "sat", "qps"), val(base, w, "sat", "qps"))
            c = ratio(val(other, w, "fixed", "cpu_us_per_q"), val(base, w, "fixed", "cpu_us_per_q"))
            p = ratio(val(other, w, "fixed", "p99_ms"), val(base, w, "fixed", "p99_ms"))
            qs, cs, ps = (round_ratios(other, base, w, m, col)
                          for m, col in (("sat", "qps"), ("fixed", "cpu_us_per_q"), ("fixed", "p99_ms")))
            per_core = dnsperf_bound(other, w) and dnsperf_bound(base, w)
            if per_core:  # both QPS figures are dnsperf's limit: compare what each server did per CPU-second
                q = ratio(val(base, w, "sat", "cpu_us_per_q"), val(other, w, "sat", "cpu_us_per_q"))
                qs = round_ratios(base, other, w, "sat", "cpu_us_per_q")
            # memory is compared where the goal defines it: after the cache-miss runs (a warm, full cache)
            m = ratio(rss(other, w), rss(base, w)) if w == "miss" else None
            if base in ("floor", "unbound-log") and not any((base, w, m) in best for m in ("fixed", "sat")):
                continue  # not run on this workload (the floor: misses; unbound-log: all but blocked)
            if goals == "floor":
                row = [fmt(q, spread=qs), fmt(c, 1.10, spread=cs), fmt(p, spread=ps), fmt(m)]
            elif goals is None:
                row = [fmt(q, spread=qs), fmt(c, spread=cs), fmt(p, spread=ps), fmt(m)]
            elif goals:
                row = [fmt(q, 1.2 if w == "miss" else 1.0, True, qs), fmt(c, 1.0, spread=cs),
                       fmt(p, 1.0, spread=ps), fmt(m, 1.0)]
            else:
                row = [fmt(q, 0.95, True, qs), fmt(c, 1.05, spread=cs), fmt(p, spread=ps), fmt(m)]
            if per_core:
                row[0] += " †"
            print(f"| {w} | " + " | ".join(row) + " |")
    print()
    print("Ratios: of the medians; in brackets the lowest and highest ratio of one round's runs (the noise band).")
    print("QPS saturated: server pinned to one core, dnsperf -c 1 -q 100 on the other; ~150k is dnsperf's own limit.")
    print("† dnsperf-bound: dnsperf used >= 95 % of its core while the server used < 95 % of its own, so the QPS is")
    print("the load generator's limit, not the server's. Where both servers of a ratio were, the ratio is per core")
    print("instead: queries per CPU-second of each server in those runs (the inverse of its CPU per query there).")
    print("CPU µs/query: server CPU time (utime+stime, in ns from /proc/PID/task/*/schedstat) over a fixed-rate")
    print("dnsperf -Q run / queries answered; in brackets the utime part (user space, from /proc/PID/stat); the rest")
    print("is the kernel's network, scheduling and wake-up work.")
    print("floor: run at the fixed load only (saturation, RSS and misses are not compared with it).")
    print("RSS: after the fill (round 1: names no run asked before, so that the 100k-entry cache is full) where it ran,")
    print("else after the saturation run. Each cell: median over its runs (rounds); lost queries: summed.")
    print(f"'*' = every run of the cell had other processes using more than {a.other_max:.0f} % of a core (noisy).")
    if a.paired:
        paired(a)


def paired(a):
    """The tables of run.sh's PAIRED and TURNS phases: per run, c2sink's and another server's CPU per query and
    p99, from the same seconds (side by side) or from two runs a second apart (in turns), so that one run's ratio
    carries little of the machine's swing; each cell is the median of the runs' ratios."""
    runs = defaultdict(list)
    tails = defaultdict(list)
    medians = defaultdict(list)
    with open(a.paired) as f:
        for r in csv.DictReader(f):
            key = (r.get("mode") or "side", r["partner"], r["workload"])
            runs[key].append((float(r["c2sink_ns_per_q"]), float(r["partner_ns_per_q"])))
            c99, p99 = num(r.get("c2sink_p99_us") or ""), num(r.get("partner_p99_us") or "")
            if c99 and p99:
                tails[key].append((c99, p99))
            c50, p50 = num(r.get("c2sink_p50_us") or ""), num(r.get("partner_p50_us") or "")
            if c50 and p50:
                medians[key].append((c50, p50))
    for mode in ("side", "turns"):
        keys = sorted((k for k in runs if k[0] == mode), key=lambda k: (k[1], WORKLOADS.index(k[2])))
        if not keys:
            continue
        print()
        if mode == "side":
            print(f"Side by side (PAIRED): c2sink and one other server pinned to the same core at once, {a.paired_qps} qps each,")
            print("CPU per query compared within each run; median of the runs' ratios (lowest-highest), the µs and ms are")
            print("medians.")
            if a.paired_slice_us != "0":
                print(f"Servers other than c2sink run with a {a.paired_slice_us} µs scheduler slice, as c2sink's query threads ask for")
                print("(PAIRED_SLICE_US=0: as they run alone, where each of c2sink's wake-ups preempts them):")
            else:
                print("Other servers run as they do alone (PAIRED_SLICE_US=0): c2sink's short-slice query threads preempt them:")
        else:
            print(f"In turns (TURNS): c2sink and one other server pinned to the same core, only one of them sent {a.turns_qps} qps")
            print(f"at a time for {a.turns_secs} s, which one first alternating; each pair of runs is compared; median of the pairs'")
            print("ratios (lowest-highest), the µs and ms are medians:")
        print()
        print("| ratio | workload | CPU per query | c2sink µs | other µs | p99 | c2sink p99 ms | other p99 ms "
              "| p99 ratio < 1 | p50 | runs |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key in keys:
            _, partner, w = key
            rows = runs[key]
            variant = partner.startswith("c2sink")  # c2sink with another list or build: it over c2sink

            def ratios(pairs):
                return [(p / c) if variant else (c / p) for c, p in pairs if c > 0 and p > 0]

            rs = ratios(rows)
            name = f"{partner} / c2sink" if variant else f"c2sink / {partner}"
            goal = 1.05 if partner == "c2sink-1m" else (1.0 if partner == "unbound" else None)
            m = statistics.median(rs)
            mark = "" if goal is None else (" ok" if m <= goal else " MISS")
            tail = tails.get(key, [])
            if tail:
                ts = ratios(tail)
                t = statistics.median(ts)
                tmark = "" if goal is None else (" ok" if t <= goal else " MISS")
                p99 = (f"{t:.2f}{tmark} ({min(ts):.2f}-{max(ts):.2f}) | {statistics.median(c for c, _ in tail) / 1000:.3f} | "
                       f"{statistics.median(p for _, p in tail) / 1000:.3f} | {sum(x < 1 for x in ts)} of {len(ts)}")
            else:
                p99 = "- | - | - | -"
            mid = ratios(medians.get(key, []))
            p50 = f"{statistics.median(mid):.2f}" if mid else "-"
            print(f"| {name} | {w} | {m:.3f}{mark} ({min(rs):.3f}-{max(rs):.3f}) | "
                  f"{statistics.median(c for c, _ in rows) / 1000:.2f} | {statistics.median(p for _, p in rows) / 1000:.2f} | "
                  f"{p99} | {p50} | {len(rows)} |")
        print()
        print("p50: the median of the runs' ratios of the two servers' median latency, for information (no goal).")
        if mode == "side":
            print("Sharing the core costs each server more per query than running alone (the µs here are higher than in the")
            print("table above), so compare ratios, not µs, with the fixed-load table; goals as above (1M list within 5 %).")
            print("p99: each server's 99th-percentile latency over the same seconds (dnsperf -v), compared run by run: a stall")
            print("of the machine delays both. Each waits for the other's work on the shared core, so the ms are higher than alone.")
        else:
            print("Each server runs alone, as in the rounds, but the pairs' runs are a second apart, so a slow spell of the")
            print("machine falls on both of a pair more often than on rounds minutes apart; goals as above.")


if __name__ == "__main__":
    main()
