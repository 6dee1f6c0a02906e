#!/usr/bin/env bash
# bench/crosscheck.sh: c2sink against Unbound on a zone and a query mix the main bench never uses, with
# c2sink on its SHIPPED config (config/c2sink.toml: client attribution, metrics, list watching, events to
# stdout), only its addresses moved to loopback. It guards the bench against being tuned to its own mix:
# issue 7 is checked by "an independent fixed-rate run of dnsperf ... with another query mix and another zone".
#
# Zone corp.example. (and 42.100.in-addr.arpa.): names 3-5 labels deep, A, AAAA (a third of them NODATA), MX,
# 200-400 byte TXT, SRV, PTR, two-step CNAME chains, a wildcard, NXDOMAIN; queries in mixed case. Blocked
# names: the 3CX list's domains as d, x.d and x.y.d in six types. Load: CLIENTS dnsperf client sockets at
# QPS in all (EDNS on, as today's stubs send it; EDNS_FLAGS="-D" adds the DO bit), servers pinned to
# SERVER_CPUS, ROUNDS alternating rounds (each server fresh and warmed), CPU per query from schedstat.
#
# Env (defaults): ROUNDS=4 SECS=4 QPS=30000 MISS_QPS=10000 CLIENTS=3 EDNS_FLAGS=-e
#   WORKLOADS="blocked cached mixed miss"  SERVER_CPUS=1 DNSPERF_CPUS=0 UPSTREAM_CPUS=0
#   C2SINK_BIN= (default: cargo build --release)  SKIP_INSTALL=0  OUT=bench/out/cross
# Output: one table (medians of the rounds, the band of the per-round ratios); CSV in $OUT/results.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH")"
export OUT="${OUT:-$BENCH/out/cross}"
source "$BENCH/lib.sh"
ROUNDS=${ROUNDS:-4} SECS=${SECS:-4} QPS=${QPS:-30000} MISS_QPS=${MISS_QPS:-10000} CLIENTS=${CLIENTS:-3}
EDNS_FLAGS=${EDNS_FLAGS--e} WORKLOADS=${WORKLOADS:-"blocked cached mixed miss"}
SERVER_CPUS=${SERVER_CPUS-1} DNSPERF_CPUS=${DNSPERF_CPUS-0} UPSTREAM_CPUS=${UPSTREAM_CPUS-0}
UP_IP=127.0.0.12 UP_PORT=5320 UB_IP=127.0.0.13 UB_PORT=5321 C2_IP=127.0.0.15 C2_PORT=5323 ADMIN=127.0.0.15:9163
export PATH="$PATH:/usr/sbin:/sbin"
[[ "$(nproc)" -ge 2 ]] || { SERVER_CPUS="" DNSPERF_CPUS="" UPSTREAM_CPUS=""; }
[[ "$EDNS_FLAGS" =~ ^(-e|-D|)$ ]] || die "EDNS_FLAGS must be -e, -D or empty"
[[ "${SKIP_INSTALL:-0}" == 1 ]] || "$BENCH/install.sh" >&2
if [[ -z "${C2SINK_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  C2SINK_BIN="$ROOT/target/release/c2sink"
fi
[[ -x "$C2SINK_BIN" ]] || die "no c2sink binary at $C2SINK_BIN"
CONF="$OUT/conf" Q="$OUT/queries"
mkdir -p "$CONF" "$Q" "$OUT/run" "$OUT/results"
OUT="$(cd "$OUT" && pwd)" CONF="$OUT/conf" Q="$OUT/queries"

# ---- data: zones, lists, query files (deterministic) --------------------------------------------
grep -v '^[[:space:]]*#' "$ROOT/blocklists/3cx.txt" | tr -d '\r' | awk 'NF {print tolower($1)}' > "$CONF/c2.txt"
export CONF Q UP_IP
python3 - <<'PY'
import os, random
conf, q, up = os.environ["CONF"], os.environ["Q"], os.environ["UP_IP"]
r = random.Random(2023)
def write(p, lines):
    with open(p + ".tmp", "w") as f: f.write("\n".join(lines) + "\n")
    os.replace(p + ".tmp", p)
depts = ["eng", "ops", "sales", "hr", "lab", "finance"]
hosts, nodata, mx, txt, srv = [], [], [], [], []
z = ["$ORIGIN corp.example.", "$TTL 3600", "@ SOA ns1 dnsadmin 7 7200 900 1209600 300", "@ NS ns1",
     f"ns1 A {up}", "*.dyn A 10.99.0.1", "*.dyn AAAA 2001:db8:99::1"]
for i in range(3000):
    d = depts[i % len(depts)]
    name = f"ws{i:04d}.{d}" if i % 3 else f"srv{i:04d}.site{i % 7}.{d}"
    z.append(f"{name} A 10.{i % 200}.{i // 200}.{i % 250 + 1}")
    if i % 3 == 0: z.append(f"{name} AAAA 2001:db8:{i:x}::{i % 97 + 1:x}")
    else: nodata.append(name)
    hosts.append(name)
    if i % 10 == 0:
        z += [f"{name} MX 5 mx1.{d}", f"{name} MX 15 mx2.{d}"]; mx.append(name)
    if i % 15 == 0:
        body = "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(r.randrange(200, 400)))
        z.append(f'{name} TXT "{body[:200]}" "{body[200:]}"'); txt.append(name)
for d in depts:
    z += [f"mx1.{d} A 10.250.{depts.index(d)}.1", f"mx2.{d} A 10.250.{depts.index(d)}.2"]
    for k in range(20):
        z.append(f"_ldap._tcp.s{k}.{d} SRV 0 {k} 389 {hosts[k * 7 + depts.index(d)]}"); srv.append(f"_ldap._tcp.s{k}.{d}")
chains = []
for i in range(400):
    z += [f"app{i:03d}.web CNAME lb{i % 80:02d}.web", f"lb{i % 80:02d}.web CNAME {hosts[(i * 13) % 3000]}"] if i < 80 else \
         [f"app{i:03d}.web CNAME lb{i % 80:02d}.web"]
    chains.append(f"app{i:03d}.web")
write(f"{conf}/corp.example.zone", z)
rz = ["$ORIGIN 42.100.in-addr.arpa.", "$TTL 3600", "@ SOA ns1.corp.example. dnsadmin.corp.example. 7 7200 900 1209600 300",
      "@ NS ns1.corp.example."]
ptr = []
for i in range(1000):
    rz.append(f"{i % 250 + 1}.{i // 250} PTR {hosts[i]}.corp.example."); ptr.append(f"{i % 250 + 1}.{i // 250}.42.100.in-addr.arpa")
write(f"{conf}/42.100.in-addr.arpa.zone", rz)

def case(n): return "".join(c.upper() if r.random() < 0.3 else c for c in n)
def fq(n): return f"{n}.corp.example"
c = [f"{case(fq(r.choice(hosts)))} A" for _ in range(3000)]
c += [f"{fq(r.choice(hosts))} AAAA" for _ in range(1500)] + [f"{fq(r.choice(nodata))} AAAA" for _ in range(700)]
c += [f"{fq(r.choice(mx))} MX" for _ in range(600)] + [f"{fq(r.choice(txt))} TXT" for _ in range(400)]
c += [f"{fq(r.choice(srv))} SRV" for _ in range(500)] + [f"{r.choice(ptr)} PTR" for _ in range(800)]
c += [f"{case(fq(r.choice(chains)))} A" for _ in range(1200)] + [f"h{r.randrange(900)}.dyn.corp.example AAAA" for _ in range(600)]
c += [f"gone{r.randrange(700)}.{r.choice(depts)}.corp.example A" for _ in range(700)]
r.shuffle(c); write(f"{q}/cached.txt", c)
c2 = [l.strip() for l in open(f"{conf}/c2.txt") if l.strip()]
types = ["A", "AAAA", "HTTPS", "TXT", "MX", "SRV"]
b = [f"{case(n)} {t}" for d in c2 for n in (d, f"cdn.{d}", f"img.eu.{d}") for t in types]
r.shuffle(b); write(f"{q}/blocked.txt", b)
m = [c[i % len(c)] for i in range(9500)] + [b[(i * 7) % len(b)] for i in range(500)]
r.shuffle(m); write(f"{q}/mixed.txt", m)
write(f"{q}/miss.txt", [f"u{i:06d}.t{i % 13}.dyn.corp.example A" for i in range(1_000_000)])
PY

nsd_conf "$UP_IP" "$UP_PORT" "$CONF" "$OUT/run" corp.example. 42.100.in-addr.arpa. > "$CONF/nsd.conf"
# Unbound as an admin would set it up to forward and block: defaults otherwise (no minimal-responses tuning)
unbound_conf "$UB_IP" "$UB_PORT" "$UP_IP" "$UP_PORT" "$OUT/run" 1 "$CONF/c2.txt" \
  'local-zone: "example." nodefault' 'local-zone: "100.in-addr.arpa." nodefault' > "$CONF/unbound.conf"
# c2sink: the shipped config, addresses moved to loopback and paths made absolute; nothing else changed
sed -e "s#^listen = \[.*#listen = [\"${C2_IP}:${C2_PORT}\"]#" \
    -e "s#^servers = \[.*#servers = [\"${UP_IP}:${UP_PORT}\"]#" \
    -e "s#^path = \"\.\./blocklists/#path = \"${ROOT}/blocklists/#" \
    -e "s#^listen = \"127\.0\.0\.1:9153\"#listen = \"${ADMIN}\"#" "$ROOT/config/c2sink.toml" > "$CONF/c2sink.toml"
for want in "listen = \[\"${C2_IP}:${C2_PORT}\"\]" "servers = \[\"${UP_IP}:${UP_PORT}\"\]" "listen = \"${ADMIN}\"" \
            "path = \"${ROOT}/blocklists/3cx.txt\""; do
  grep -q "^$want" "$CONF/c2sink.toml" || die "config/c2sink.toml changed shape: no line '$want' after rewriting"
done
if grep -vE '^\s*(#|$)' "$CONF/c2sink.toml" | grep -E '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' | grep -vE '"?(127\.|0\.0\.0\.0)' \
   | grep -v '^mode\|^address' >&2; then die "the rewritten c2sink config still names a non-loopback address (above)"; fi

# ---- runs ---------------------------------------------------------------------------------------
PIDS="$OUT/run/cross.pids"; : > "$PIDS"
trap 'rc=$?; stop_all; exit $rc' EXIT
trap 'exit 130' INT TERM
wait_name() { # name pid ip port: like wait_dns, on this zone
  local i; for ((i = 0; i < 100; i++)); do
    alive "$2" || { tail -n 20 "$OUT/run/$1.out" >&2; die "$1 exited during startup"; }
    dig +tries=1 +time=1 -p "$4" "@$3" ns1.corp.example A 2>/dev/null | grep -q 'status: NOERROR' && return 0
    sleep 0.2; done; die "$1 did not answer on $3:$4"; }
launch() { # name ip port cpus cmd...
  local name=$1 ip=$2 port=$3 cpus=$4; shift 4
  port_in_use "$ip" "$port" && die "$ip:$port is already in use"
  pin_prefix "$cpus"; "${PIN[@]}" "$@" </dev/null >"$OUT/run/$name.out" 2>&1 &
  echo "$name $! $(basename "$1")" >> "$PIDS"; wait_name "$name" "$!" "$ip" "$port"; log "$name pid $! on $ip:$port"; }
launch nsd "$UP_IP" "$UP_PORT" "$UPSTREAM_CPUS" "$(command -v nsd)" -d -c "$CONF/nsd.conf"
NSD_PIDS=$(tree_of "$(pid_of nsd)" nsd)
addr() { [[ $1 == c2sink ]] && echo "$C2_IP $C2_PORT" || echo "$UB_IP $UB_PORT"; }
CSV="$OUT/results/cross-$(date +%Y%m%d-%H%M%S).csv"
MISS_AT=0
for ((round = 1; round <= ROUNDS; round++)); do
  order="c2sink unbound"; (( round % 2 == 0 )) && order="unbound c2sink"
  for s in $order; do
    read -r ip port < <(addr "$s")
    if [[ $s == c2sink ]]; then launch c2sink "$ip" "$port" "$SERVER_CPUS" "$C2SINK_BIN" serve --config "$CONF/c2sink.toml"
    else launch unbound "$ip" "$port" "$SERVER_CPUS" "$(command -v unbound)" -d -c "$CONF/unbound.conf"; fi
    for f in cached cached blocked; do  # warm: every forwarded name cached, the blocked ones seen once
      taskset -c "${DNSPERF_CPUS:-0}" dnsperf $EDNS_FLAGS -s "$ip" -p "$port" -d "$Q/$f.txt" -n 1 -q 50 -t 2 >/dev/null 2>&1 || die "warm-up of $s failed"
    done
  done
  sleep 0.5
  for wl in $WORKLOADS; do
    for s in $order; do
      read -r ip port < <(addr "$s")
      qf="$Q/$wl.txt" qps=$QPS
      if [[ $wl == miss ]]; then  # fresh names each run: a window of the big file no server was sent before
        qps=$MISS_QPS; n=$(( MISS_QPS * (SECS + 1) )); sed -n "$((MISS_AT + 1)),$((MISS_AT + n))p" "$Q/miss.txt" > "$OUT/run/miss-now.txt"
        MISS_AT=$((MISS_AT + n)); qf="$OUT/run/miss-now.txt"
      fi
      line=$(SERVER_PIDS="$(pid_of "$s")" UPSTREAM_PIDS="$NSD_PIDS" QPS="$qps" CLIENTS="$CLIENTS" LATENCY=1 \
        DNSPERF_CPUS="$DNSPERF_CPUS" DNSPERF_FLAGS="$EDNS_FLAGS" CSV="$CSV" LABEL="$s,$wl,r$round" \
        "$BENCH/measure.sh" "$ip" "$port" "$qf" "$SECS") || die "measurement $s/$wl failed"
      log "round $round: $s $wl: $line"
    done
  done
  stop c2sink; stop unbound
done
python3 - "$CSV" <<'PY'
import csv, sys, statistics as st
rows = list(csv.DictReader(open(sys.argv[1])))
cell = {}
for r in rows: cell.setdefault((r["server"], r["workload"]), {})[r["mode"]] = r
print(f"\ncrosscheck: c2sink (shipped config) / Unbound, {sys.argv[1]}")
print("| workload | c2sink CPU µs/q | Unbound CPU µs/q | CPU ratio (band) | p99 ms c2sink / Unbound | p99 ratio (band) | lost c2sink / Unbound |")
print("|---|---:|---:|---:|---:|---:|---:|")
for wl in dict.fromkeys(r["workload"] for r in rows):
    c, u = cell.get(("c2sink", wl), {}), cell.get(("unbound", wl), {})
    rounds = sorted(set(c) & set(u))
    if not rounds: continue
    f = lambda d, k: [float(d[x][k]) for x in rounds]
    cr = [a / b for a, b in zip(f(c, "cpu_us_per_q"), f(u, "cpu_us_per_q")) if b > 0]
    pr = [a / b for a, b in zip(f(c, "p99_ms"), f(u, "p99_ms")) if b > 0]
    lost = lambda d: sum(int(d[x]["lost"]) for x in rounds)
    print(f"| {wl} | {st.median(f(c, 'cpu_us_per_q')):.2f} | {st.median(f(u, 'cpu_us_per_q')):.2f} | "
          f"{st.median(f(c, 'cpu_us_per_q')) / st.median(f(u, 'cpu_us_per_q')):.2f} ({min(cr):.2f}-{max(cr):.2f}) | "
          f"{st.median(f(c, 'p99_ms')):.3f} / {st.median(f(u, 'p99_ms')):.3f} | "
          f"{st.median(f(c, 'p99_ms')) / st.median(f(u, 'p99_ms')):.2f} ({min(pr):.2f}-{max(pr):.2f}) | {lost(c)} / {lost(u)} |")
PY
